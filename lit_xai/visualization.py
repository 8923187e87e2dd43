"""Heatmaps to pictures: signed relevance to RGB, overlays, captioned uint8 grids for TensorBoard.

Everything is torch in, torch out, channels first. Relevance is signed, so colours are centred on zero: a symmetric
scale per image (a high percentile of ``|heat|``, robust to the few extreme pixels LRP produces) maps ``-s..s`` onto
a diverging colour map whose middle is the neutral colour. Min-max normalisation (``make_grid(normalize=True)``)
would move zero to an arbitrary colour and is avoided. ``zennit.image.imgify`` is not used: it fails with pillow 13.

Example:
    >>> import torch
    >>> images, heat = torch.rand(2, 3, 32, 32), torch.randn(2, 32, 32)
    >>> grid = make_grid_uint8([images, heatmap_to_rgb(heat), overlay(images, heat)], captions=["a", "b"])
    >>> grid.dtype, grid.shape[0]
    (torch.uint8, 3)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

__all__ = [
    "COLORMAPS",
    "draw_text",
    "explanation_grid",
    "heatmap_to_rgb",
    "make_grid_uint8",
    "overlay",
    "symmetric_scale",
    "to_float01",
]

#: diverging colour maps as (position in [-1, 1], RGB) nodes; position 0 is the neutral colour
COLORMAPS: dict[str, tuple[tuple[float, tuple[float, float, float]], ...]] = {
    # white at zero, blue negative, red positive
    "bwr": ((-1.0, (0.0, 0.0, 1.0)), (0.0, (1.0, 1.0, 1.0)), (1.0, (1.0, 0.0, 0.0))),
    # zennit's 'coldnhot': black at zero, cyan..blue negative, red..yellow..white positive
    "coldnhot": (
        (-1.0, (0.0, 1.0, 1.0)),
        (-0.5, (0.0, 0.0, 1.0)),
        (0.0, (0.0, 0.0, 0.0)),
        (1 / 3, (1.0, 0.0, 0.0)),
        (2 / 3, (1.0, 1.0, 0.0)),
        (1.0, (1.0, 1.0, 1.0)),
    ),
}


def _as_batch(heat: torch.Tensor) -> torch.Tensor:
    if heat.ndim == 2:
        heat = heat.unsqueeze(0)
    if heat.ndim != 3:
        raise ValueError(f"heatmaps must be (N, H, W) or (H, W), got shape {tuple(heat.shape)}")
    return heat.detach().float().cpu()


def symmetric_scale(heat: torch.Tensor, percentile: float = 99.5, per_image: bool = True) -> torch.Tensor:
    """Scale ``s`` (shape ``(N,)``) such that ``heat / s`` in ``[-1, 1]`` clips only the top ``100 - percentile`` %.

    It is the ``percentile`` of ``|heat|`` (per image, or over the batch with ``per_image=False``, so maps stay
    comparable). All-zero maps get ``s = 1`` so they render neutral instead of dividing by zero.
    """
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must lie in (0, 100], got {percentile}")
    mags = _as_batch(heat).abs().reshape(heat.shape[0] if heat.ndim == 3 else 1, -1)
    if not per_image:
        mags = mags.reshape(1, -1)
    # kthvalue instead of torch.quantile: no input-size limit, exact order statistic
    k = max(1, min(mags.shape[1], int(np.ceil(percentile / 100 * mags.shape[1]))))
    scale = mags.kthvalue(k, dim=1).values
    scale = torch.where(scale > 0, scale, mags.amax(1))  # sparse maps: fall back to the maximum
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    n = heat.shape[0] if heat.ndim == 3 else 1
    return scale.expand(n).clone()


def _apply_colormap(values: torch.Tensor, cmap: str) -> torch.Tensor:
    """``values`` in ``[-1, 1]`` of shape ``(N, H, W)`` to RGB ``(N, 3, H, W)`` by piecewise-linear interpolation."""
    try:
        nodes = COLORMAPS[cmap]
    except KeyError:
        raise ValueError(f"unknown colour map {cmap!r}; choose one of: {', '.join(sorted(COLORMAPS))}") from None
    pos = torch.tensor([p for p, _ in nodes])
    rgb = torch.tensor([c for _, c in nodes])
    v = values.clamp(-1, 1)
    idx = torch.bucketize(v, pos[1:-1])  # segment index 0..len-2
    lo, hi = pos[idx], pos[idx + 1]
    frac = ((v - lo) / (hi - lo)).unsqueeze(-1)
    out = rgb[idx] * (1 - frac) + rgb[idx + 1] * frac
    return out.permute(0, 3, 1, 2).contiguous()


def heatmap_to_rgb(
    heat: torch.Tensor, percentile: float = 99.5, cmap: str = "bwr", per_image: bool = True
) -> torch.Tensor:
    """Signed heatmaps ``(N, H, W)`` to RGB ``(N, 3, H, W)`` float in ``[0, 1]``, zero at the neutral colour.

    Args:
        heat: signed relevance (LRP/CRP) or non-negative maps (Grad-CAM), ``(N, H, W)`` or ``(H, W)``.
        percentile: symmetric clipping: ``|heat|`` above this percentile saturates (robust to outliers).
        cmap: ``"bwr"`` (white at zero; positive red, negative blue) or ``"coldnhot"`` (black at zero).
        per_image: scale each map on its own (default) or the batch jointly.
    """
    h = _as_batch(heat)
    scale = symmetric_scale(h, percentile, per_image)
    return _apply_colormap(h / scale[:, None, None], cmap)


def to_float01(images: torch.Tensor) -> torch.Tensor:
    """Images ``(N, C, H, W)`` as float ``[0, 1]`` with 3 channels (uint8 is divided by 255, grey is repeated)."""
    if images.ndim == 3:
        images = images.unsqueeze(0)
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be (N, 1|3, H, W), got shape {tuple(images.shape)}")
    x = images.detach().cpu()
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return x.clamp(0, 1)


def overlay(
    images01: torch.Tensor, heat: torch.Tensor, alpha: float = 0.7, percentile: float = 99.5, cmap: str = "bwr"
) -> torch.Tensor:
    """Blend heatmap colours onto images ``[0, 1]``; opacity grows with ``|relevance|``, so irrelevant pixels keep
    the image unchanged whatever the colour map's neutral colour is.

    Returns:
        ``(N, 3, H, W)`` float in ``[0, 1]``.
    """
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    img = to_float01(images01)
    h = _as_batch(heat)
    if h.shape[0] != img.shape[0] or h.shape[-2:] != img.shape[-2:]:
        raise ValueError(f"heatmaps {tuple(h.shape)} do not match images {tuple(img.shape)}")
    v = (h / symmetric_scale(h, percentile)[:, None, None]).clamp(-1, 1)
    weight = alpha * v.abs().unsqueeze(1)
    return (img * (1 - weight) + _apply_colormap(v, cmap) * weight).clamp(0, 1)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # pillow < 10.1 has no size argument
        return ImageFont.load_default()


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


def make_grid_uint8(
    columns: Sequence[torch.Tensor],
    captions: Sequence[str | None] | None = None,
    padding: int = 2,
    pad_value: int = 255,
    text_size: int = 10,
) -> torch.Tensor:
    """A uint8 ``(3, H, W)`` grid for ``SummaryWriter.add_image``: one row per image, one column per tensor.

    Args:
        columns: tensors ``(N, 1|3, h, w)`` (float ``[0, 1]`` or uint8), e.g. ``[images, heatmap_rgb, overlays]``;
            all with the same ``N``, ``h`` and ``w``.
        captions: optional text per row (e.g. ``"true 1 | pred 0 | p=0.93"``), drawn at the row's top left (the
            text may run across the row's tiles, never onto another row).
        padding: pixels between tiles; ``pad_value`` their grey level.
        text_size: caption font size in pixels.
    """
    if not columns:
        raise ValueError("need at least one column")
    cols = [to_float01(c) for c in columns]
    n, _, h, w = cols[0].shape
    for c in cols:
        if c.shape != (n, 3, h, w):
            raise ValueError(f"all columns must have shape (N, C, H, W) = {(n, h, w)}, got {tuple(c.shape)}")
    if captions is not None and len(captions) != n:
        raise ValueError(f"need one caption per row ({n}), got {len(captions)}")
    grid = torch.full(
        (3, n * h + (n + 1) * padding, len(cols) * w + (len(cols) + 1) * padding), pad_value, dtype=torch.uint8
    )
    for i in range(n):
        top = padding + i * (h + padding)
        for j, col in enumerate(cols):
            left = padding + j * (w + padding)
            grid[:, top : top + h, left : left + w] = (col[i] * 255).round().to(torch.uint8)
        if captions is not None and captions[i]:
            # drawn across the row's band, so captions longer than one tile stay readable; clipped to the band
            band = grid[:, top : top + h, padding : -padding or None]
            grid[:, top : top + h, padding : -padding or None] = draw_text(band, str(captions[i]), size=text_size)
    return grid


def explanation_grid(
    images01: torch.Tensor,
    heat: torch.Tensor,
    captions: Sequence[str | None] | None = None,
    alpha: float = 0.7,
    percentile: float = 99.5,
    cmap: str = "bwr",
) -> torch.Tensor:
    """The standard panel ``input | heatmap | overlay`` per image as a uint8 ``(3, H, W)`` grid."""
    img = to_float01(images01)
    return make_grid_uint8(
        [img, heatmap_to_rgb(heat, percentile, cmap), overlay(img, heat, alpha, percentile, cmap)], captions
    )
