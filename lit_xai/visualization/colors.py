"""Colours: signed relevance to RGB on a diverging map centred on zero, overlays, dimming, line colours.

Relevance is signed, so colours are centred on zero: a symmetric scale per image (a high percentile of ``|heat|``,
robust to the few extreme pixels LRP produces) maps ``-s..s`` onto a diverging colour map whose middle is the
neutral colour. Min-max normalisation (``make_grid(normalize=True)``) would move zero to an arbitrary colour and is
avoided. ``zennit.image.imgify`` is not used: it fails with pillow 13.
"""

from __future__ import annotations

import numpy as np
import torch

from .axes import PALETTE  # the series colours live with the chart core (one palette for PNG and SVG)

__all__ = [
    "COLORMAPS",
    "MASK_RGB",
    "NEGATIVE_RGB",
    "PALETTE",
    "POSITIVE_RGB",
    "channel_note",
    "dimmed",
    "heatmap_to_rgb",
    "negative_share",
    "overlay",
    "symmetric_scale",
    "to_float01",
    "visible_share",
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


#: overlay colours for positive and negative relevance (saturated, so they stay readable at low opacity)
POSITIVE_RGB: tuple[float, float, float] = (0.95, 0.05, 0.05)
NEGATIVE_RGB: tuple[float, float, float] = (0.05, 0.35, 1.0)
#: outline colour of artifact masks (green: neither relevance colour nor a usual skin/X-ray tone)
MASK_RGB: tuple[int, int, int] = (0, 220, 60)


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
    """Images ``(N, C, H, W)`` as float ``[0, 1]`` with 3 channels (uint8 is divided by 255, grey is repeated).

    Any channel count renders (:func:`channel_note` says how, for a legend): 1 is grey, 3 is RGB, more than 3 shows
    the first three channels as RGB, 2 shows their mean as grey.

    Example:
        >>> to_float01(torch.rand(2, 4, 8, 8)).shape, to_float01(torch.rand(2, 2, 8, 8)).shape
        (torch.Size([2, 3, 8, 8]), torch.Size([2, 3, 8, 8]))
    """
    if images.ndim == 3:
        images = images.unsqueeze(0)
    if images.ndim != 4 or images.shape[1] < 1:
        raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
    x = images.detach().cpu()
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    if x.shape[1] == 2:
        x = x.mean(1, keepdim=True)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return x[:, :3].clamp(0, 1)


def channel_note(channels: int) -> str:
    """How :func:`to_float01` shows images of ``channels`` channels; empty for grey and RGB.

    Example:
        >>> channel_note(4)
        'images have 4 channels: the first three are shown as RGB'
    """
    if channels in (1, 3):
        return ""
    if channels == 2:
        return "images have 2 channels: their mean is shown as grey"
    return f"images have {channels} channels: the first three are shown as RGB"


def overlay(
    images01: torch.Tensor,
    heat: torch.Tensor,
    alpha: float = 0.85,
    percentile: float = 99.5,
    *,
    gamma: float = 0.7,
    dim: bool = True,
    positive: tuple[float, float, float] = POSITIVE_RGB,
    negative: tuple[float, float, float] = NEGATIVE_RGB,
) -> torch.Tensor:
    """Paint relevance onto images: red where positive, blue where negative, opacity growing with ``|relevance|``.

    Relevance on dark image regions is what a plain blend hides (dark red on black). So by default the image is
    first turned into a *dimmed greyscale* (black becomes dark grey, white light grey), and the opacity is
    ``alpha * |v| ** gamma`` with ``v = heat / s`` (``s`` from :func:`symmetric_scale`): ``gamma < 1`` lifts weak
    relevance so it stays visible, saturated colours keep the sign readable. Pixels without relevance keep the
    (dimmed) image.

    Args:
        images01: ``(N, 1|3, H, W)`` images in ``[0, 1]`` (or uint8).
        heat: ``(N, H, W)`` signed relevance.
        alpha: opacity at saturated relevance.
        percentile: symmetric scale per image, see :func:`symmetric_scale`.
        gamma: opacity curve; 1 is linear.
        dim: draw over the dimmed greyscale image (default) or over the original colours.
        positive, negative: RGB in ``[0, 1]`` for the two signs.

    Returns:
        ``(N, 3, H, W)`` float in ``[0, 1]``.

    Example:
        >>> out = overlay(torch.zeros(1, 3, 8, 8), torch.ones(1, 8, 8))  # relevance on a black image
        >>> bool(out[0, 0].mean() > 0.5)  # shows clearly red
        True
    """
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    if gamma <= 0:
        raise ValueError(f"gamma must be positive, got {gamma}")
    img = to_float01(images01)
    h = _as_batch(heat)
    if h.shape[0] != img.shape[0] or h.shape[-2:] != img.shape[-2:]:
        raise ValueError(f"heatmaps {tuple(h.shape)} do not match images {tuple(img.shape)}")
    base = dimmed(img) if dim else img
    v = (h / symmetric_scale(h, percentile)[:, None, None]).clamp(-1, 1)
    weight = (alpha * v.abs().pow(gamma)).unsqueeze(1)
    colour = torch.where(
        (v >= 0).unsqueeze(1), torch.tensor(positive)[None, :, None, None], torch.tensor(negative)[None, :, None, None]
    )
    return (base * (1 - weight) + colour * weight).clamp(0, 1)


def dimmed(images01: torch.Tensor, low: float = 0.22, high: float = 0.85) -> torch.Tensor:
    """Images as greyscale mapped onto ``[low, high]``: a quiet background on which red and blue stay visible
    both in black and in white regions."""
    img = to_float01(images01)
    grey = (0.299 * img[:, 0] + 0.587 * img[:, 1] + 0.114 * img[:, 2]).unsqueeze(1)
    return (low + (high - low) * grey).expand(-1, 3, -1, -1).contiguous()


def visible_share(heat: torch.Tensor, percentile: float = 99.5, level: float = 0.1) -> torch.Tensor:
    """Share ``(N,)`` of each map's pixels drawn with visible colour: ``|heat| >= level * s`` with the display scale
    ``s`` of :func:`symmetric_scale`. A map below a few percent is *nearly blank* (an all-zero map scores 0).

    Example:
        >>> heat = torch.zeros(2, 10, 10)
        >>> heat[0] = 1.0
        >>> heat[1, 0, 0] = 1.0
        >>> visible_share(heat)
        tensor([1.0000, 0.0100])
    """
    h = _as_batch(heat)
    scale = symmetric_scale(h, percentile)
    visible = (h.abs() >= level * scale[:, None, None]) & (h != 0)
    return visible.flatten(1).float().mean(1)


def negative_share(maps: torch.Tensor) -> torch.Tensor:
    """Share of negative relevance per map, ``sum(max(-R, 0)) / sum(|R|)``, shape ``(N,)``; 0 for all-zero maps.

    Example:
        >>> negative_share(torch.tensor([[[1.0, -3.0]], [[0.0, 0.0]]]))
        tensor([0.7500, 0.0000])
    """
    h = _as_batch(maps).double()
    total = h.abs().flatten(1).sum(1)
    neg = (-h).clamp(min=0).flatten(1).sum(1)
    return torch.where(total > 0, neg / total.clamp(min=1e-300), torch.zeros_like(total)).float()
