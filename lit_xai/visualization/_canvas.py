"""The white canvas every picture is built on: PIL <-> uint8 CHW tensors and stacking of parts with gaps."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

__all__: list[str] = []

_GAP = 2  # pixels between tiles
_MARGIN = 4  # pixels around the whole grid
_BG = (255, 255, 255)
_INK = (20, 20, 20)
_MUTED = (90, 90, 90)


def _to_pil(image: torch.Tensor) -> Image.Image:
    arr = image.detach().cpu()
    arr = arr if arr.dtype == torch.uint8 else (arr.float().clamp(0, 1) * 255).round().to(torch.uint8)
    return Image.fromarray(arr.permute(1, 2, 0).numpy())


def _from_pil(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1).contiguous()


def _hstack(parts: Sequence[Image.Image], gap: int = _GAP) -> Image.Image:
    width = sum(p.width for p in parts) + gap * (len(parts) - 1)
    out = Image.new("RGB", (width, max(p.height for p in parts)), _BG)
    x = 0
    for p in parts:
        out.paste(p, (x, 0))
        x += p.width + gap
    return out


def _vstack(parts: Sequence[Image.Image], gap: int = 0, width: int | None = None) -> Image.Image:
    width = width if width is not None else max(p.width for p in parts)
    out = Image.new("RGB", (width, sum(p.height for p in parts) + gap * (len(parts) - 1)), _BG)
    y = 0
    for p in parts:
        out.paste(p, (0, y))
        y += p.height + gap
    return out


def _separator(width: int, height: int = 5) -> Image.Image:
    sep = Image.new("RGB", (width, height), _BG)
    ImageDraw.Draw(sep).line((0, height // 2, width, height // 2), fill=(205, 205, 205))
    return sep


def _finish(body: Image.Image) -> torch.Tensor:
    canvas = Image.new("RGB", (body.width + 2 * _MARGIN, body.height + 2 * _MARGIN), _BG)
    canvas.paste(body, (_MARGIN, _MARGIN))
    return _from_pil(canvas)
