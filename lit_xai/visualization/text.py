"""Text layout: the fonts, measuring, wrapping captions into a width (never clipped), text boxes and labels."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ._canvas import _BG, _INK, _hstack

__all__ = ["caption_lines", "draw_text"]

@functools.lru_cache(maxsize=16)
def _font(size: int = 11) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """DejaVu Sans (wide Unicode coverage: arrows, dashes, minus) when installed, else pillow's bundled font."""
    for name in _FONT_FILES:
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # pillow < 10.1 has no size argument
        return ImageFont.load_default()


#: font files tried in order (pillow looks them up in the system font folders)
_FONT_FILES = ("DejaVuSansCondensed.ttf", "DejaVuSans.ttf")


def _text_width(text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont) -> int:
    return int(np.ceil(font.getlength(text))) if text else 0


def _line_height(font: ImageFont.ImageFont | ImageFont.FreeTypeFont) -> int:
    ascent, descent = font.getmetrics() if hasattr(font, "getmetrics") else (10, 2)
    return int(ascent + descent + 2)


def _ellipsize(text: str, width_px: int, font: ImageFont.ImageFont | ImageFont.FreeTypeFont) -> str:
    """``text`` shortened with an ellipsis so that it is at most ``width_px`` wide."""
    if _text_width(text, font) <= width_px:
        return text
    lo, hi = 0, len(text)
    while lo < hi:  # longest prefix that fits together with the ellipsis
        mid = (lo + hi + 1) // 2
        if _text_width(text[:mid].rstrip() + "…", font) <= width_px:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo].rstrip() + "…" if lo or _text_width("…", font) <= width_px else ""


def caption_lines(
    text: str,
    width_px: int,
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont | None = None,
    max_lines: int | None = None,
) -> list[str]:
    """Wrap ``text`` into lines at most ``width_px`` wide: the one caption function of every grid.

    Words wrap at plain spaces (a no-break space, ``"\\u00a0"``, holds a unit like ``"34 %"`` together); a word
    wider than the line is cut with an ellipsis; explicit ``"\\n"`` starts a new line. With ``max_lines`` the last
    kept line ends with an ellipsis when text had to be dropped, so a caption never runs past its box.

    Example:
        >>> caption_lines("true melanoma | pred nevus | p=0.93", 90, _font(11))
        ['true melanoma |', 'pred nevus |', 'p=0.93']
    """
    font = font if font is not None else _font(11)
    if width_px <= 0:
        raise ValueError(f"width_px must be positive, got {width_px}")
    lines: list[str] = []
    for paragraph in str(text).split("\n"):
        words = [w for w in paragraph.split(" ") if w]  # only plain spaces break: NBSP ("\u00a0") keeps "34 %" whole
        current = ""
        for word in words:
            candidate = f"{current} {word}" if current else word
            if _text_width(candidate, font) <= width_px:
                current = candidate
                continue
            if current:
                lines.append(current)
            current = word if _text_width(word, font) <= width_px else _ellipsize(word, width_px, font)
        lines.append(current)
    while len(lines) > 1 and not lines[-1]:
        lines.pop()
    if max_lines is not None and len(lines) > max_lines:
        kept = lines[:max_lines]
        kept[-1] = _ellipsize(kept[-1] + " …", width_px, font) if kept[-1] else "…"
        if not kept[-1].endswith("…"):
            kept[-1] = _ellipsize(kept[-1] + "…", width_px, font)
        lines = kept
    return lines


def draw_text(
    image: torch.Tensor,
    text: str,
    xy: tuple[int, int] = (1, 1),
    color: tuple[int, int, int] = (255, 255, 255),
    background: tuple[int, int, int] | None = (0, 0, 0),
    size: int = 10,
) -> torch.Tensor:
    """Render ``text`` with PIL's default font onto one image ``(3, H, W)`` (float ``[0, 1]`` or uint8).

    A filled background box keeps captions readable on any image. Returns a new tensor of the input's dtype.
    """
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be (3, H, W), got shape {tuple(image.shape)}")
    if not text:
        return image.clone()
    is_uint8 = image.dtype == torch.uint8
    arr = image.detach().cpu()
    arr = arr if is_uint8 else (arr.float().clamp(0, 1) * 255).round().to(torch.uint8)
    pil = Image.fromarray(arr.permute(1, 2, 0).numpy())
    draw = ImageDraw.Draw(pil)
    font = _font(size)
    if background is not None:
        box = draw.textbbox(xy, text, font=font)
        draw.rectangle((box[0] - 1, box[1] - 1, box[2] + 1, box[3] + 1), fill=background)
    draw.text(xy, text, fill=color, font=font)
    out = torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1)
    return out if is_uint8 else out.float() / 255.0


def _text_block(
    text: str,
    width: int,
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
    *,
    max_lines: int | None = None,
    min_height: int = 0,
    fill: tuple[int, int, int] = _INK,
    background: tuple[int, int, int] = _BG,
    center: bool = False,
    pad: int = 2,
) -> Image.Image:
    """Wrapped text in a box exactly ``width`` wide (lines from :func:`caption_lines`, so nothing is clipped)."""
    lines = caption_lines(text, max(1, width - 2 * pad), font, max_lines) if text else []
    lh = _line_height(font)
    block = Image.new("RGB", (width, max(min_height, len(lines) * lh + (2 * pad if lines else 0))), background)
    draw = ImageDraw.Draw(block)
    for i, line in enumerate(lines):
        x = (width - _text_width(line, font)) // 2 if center else pad
        draw.text((x, pad + i * lh), line, fill=fill, font=font)
    return block


def _labels_row(
    labels: Sequence[str],
    widths: Sequence[int],
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
    fill: tuple[int, int, int] = _INK,
) -> Image.Image:
    blocks = [_text_block(t, w, font, max_lines=2, center=True, fill=fill) for t, w in zip(labels, widths)]
    return _hstack(blocks)
