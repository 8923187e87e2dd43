"""Seeded inserters of artifacts that no registered detector knows: a bright square tag and burnt-in text.

They play the unknown artifact in the tests and benchmarks of label-free discovery
(:func:`lit_xai.shortcuts.discover_candidates`): a hospital tag or a burnt-in annotation sits at (nearly) the same
place on every image of one scanner, so it is what an explanation clustering can find without being told. Both follow
the inserter contract of :mod:`lit_xai.artifacts.inserters`: ``(images01, generator) -> (images01, masks)``.

Example:
    >>> import torch
    >>> out, masks = insert_square_tag(torch.zeros(2, 3, 32, 32), torch.Generator().manual_seed(0))
    >>> bool(out[0][:, masks[0]].min() > 0.9), int(masks[0].sum()) >= 16
    (True, True)
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

__all__ = ["insert_burnt_text", "insert_square_tag"]


def _check(images: torch.Tensor) -> None:
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be (N, 1|3, H, W) in [0, 1], got {tuple(images.shape)}")


def insert_square_tag(
    images: torch.Tensor,
    generator: torch.Generator | None = None,
    side: float = 0.16,
    corner: tuple[float, float] = (0.1, 0.1),
    jitter: float = 0.05,
    brightness_range: tuple[float, float] = (0.92, 1.0),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stamp a bright square tag near one fixed place (a scanner's label), with a seeded small jitter.

    Args:
        images: ``(N, C, H, W)`` in [0, 1].
        side: tag side as a fraction of the shorter image side.
        corner: (top, left) of the tag as fractions of the image size.
        jitter: uniform shift of the position, up to this fraction of the size in each direction.
        brightness_range: the tag's grey level.

    Returns:
        ``(tagged images, masks)``, masks ``(N, H, W)`` bool, True on the tag.
    """
    _check(images)
    n, _, h, w = images.shape
    out = images.clone()
    masks = torch.zeros(n, h, w, dtype=torch.bool)
    s = max(2, round(side * min(h, w)))
    for i in range(n):
        dy, dx = ((2 * torch.rand(2, generator=generator) - 1) * jitter).tolist()
        y0 = int(np.clip(round((corner[0] + dy) * h), 0, h - s))
        x0 = int(np.clip(round((corner[1] + dx) * w), 0, w - s))
        low, high = brightness_range
        level = low + (high - low) * float(torch.rand((), generator=generator))
        out[i, :, y0 : y0 + s, x0 : x0 + s] = level
        masks[i, y0 : y0 + s, x0 : x0 + s] = True
    return out, masks


@functools.lru_cache(maxsize=1)
def _font() -> ImageFont.ImageFont:
    return ImageFont.load_default()


def insert_burnt_text(
    images: torch.Tensor,
    generator: torch.Generator | None = None,
    texts: tuple[str, ...] = ("L", "R", "AP", "PA"),
    corner: tuple[float, float] = (0.72, 0.06),
    jitter: float = 0.04,
    brightness_range: tuple[float, float] = (0.9, 1.0),
    scale: float = 0.28,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Burn short white text (e.g. ``"L"``, ``"AP"``) into the images near one corner, as scanners do.

    The text is drawn with PIL's default font at a height of about ``scale`` of the image, then thresholded, so it
    looks like a hard, saturated overlay. Each image gets a seeded text, position jitter and grey level.

    Args:
        images: ``(N, C, H, W)`` in [0, 1].
        texts: the strings to choose from.
        corner: (top, left) of the text box as fractions of the image size.
        jitter: uniform shift of the position, up to this fraction of the size.
        brightness_range: the text's grey level.
        scale: text height as a fraction of the image height.

    Returns:
        ``(images with text, masks)``, masks ``(N, H, W)`` bool, True on the text's strokes.

    Example:
        >>> import torch
        >>> out, masks = insert_burnt_text(torch.zeros(1, 1, 48, 48), torch.Generator().manual_seed(0))
        >>> bool(masks.any()), bool(out[0, 0][masks[0]].min() >= 0.9)
        (True, True)
    """
    _check(images)
    if not texts:
        raise ValueError("texts must name at least one string to burn in")
    n, _, h, w = images.shape
    out = images.clone()
    masks = torch.zeros(n, h, w, dtype=torch.bool)
    target_h = max(5, round(scale * h))
    for i in range(n):
        text = texts[int(torch.randint(len(texts), (), generator=generator))]
        dy, dx = ((2 * torch.rand(2, generator=generator) - 1) * jitter).tolist()
        low, high = brightness_range
        level = low + (high - low) * float(torch.rand((), generator=generator))
        glyph = _text_mask(text, target_h)
        gh, gw = glyph.shape
        gw, gh = min(gw, w), min(gh, h)
        y0 = int(np.clip(round((corner[0] + dy) * h), 0, h - gh))
        x0 = int(np.clip(round((corner[1] + dx) * w), 0, w - gw))
        m = torch.zeros(h, w, dtype=torch.bool)
        m[y0 : y0 + gh, x0 : x0 + gw] = torch.from_numpy(glyph[:gh, :gw])
        out[i][:, m] = level
        masks[i] = m
    return out, masks


@functools.lru_cache(maxsize=64)
def _text_mask(text: str, height: int) -> np.ndarray:
    """Bool glyph mask of ``text`` about ``height`` pixels high (default bitmap font, upscaled, thresholded)."""
    font = _font()
    box = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), text, font=font)
    tw, th = max(1, box[2] - box[0]), max(1, box[3] - box[1])
    canvas = Image.new("L", (tw + 2, th + 2), 0)
    ImageDraw.Draw(canvas).text((1 - box[0], 1 - box[1]), text, fill=255, font=font)
    factor = height / canvas.height
    big = canvas.resize((max(1, round(canvas.width * factor)), height), Image.Resampling.BILINEAR)
    return np.asarray(big) > 96
