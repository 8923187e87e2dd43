"""The one renderer: signed relevance to RGB, overlays, legends, captioned uint8 grids, line plots and tables.

Everything is torch in, torch out, channels first. Relevance is signed, so colours are centred on zero: a symmetric
scale per image (a high percentile of ``|heat|``, robust to the few extreme pixels LRP produces) maps ``-s..s`` onto
a diverging colour map whose middle is the neutral colour. Min-max normalisation (``make_grid(normalize=True)``)
would move zero to an arbitrary colour and is avoided. ``zennit.image.imgify`` is not used: it fails with pillow 13.

Example:
    >>> import torch
    >>> images, heat = torch.rand(2, 3, 32, 32), torch.randn(2, 32, 32)
    >>> grid = explanation_grid(images, heat, ["true 1 | pred 0", "true 0 | pred 0"], method="LRP", tile=48)
    >>> grid.dtype, grid.shape[0]
    (torch.uint8, 3)
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

__all__ = [
    "COLORMAPS",
    "MASK_RGB",
    "NEGATIVE_RGB",
    "PALETTE",
    "POSITIVE_RGB",
    "caption_lines",
    "concept_grid",
    "concept_label",
    "dimmed",
    "draw_text",
    "explanation_grid",
    "heatmap_to_rgb",
    "legend_strip",
    "line_plot",
    "negative_share",
    "overlay",
    "symmetric_scale",
    "table_image",
    "timeline_grid",
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


def _to_pil(image: torch.Tensor) -> Image.Image:
    arr = image.detach().cpu()
    arr = arr if arr.dtype == torch.uint8 else (arr.float().clamp(0, 1) * 255).round().to(torch.uint8)
    return Image.fromarray(arr.permute(1, 2, 0).numpy())


def _from_pil(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1).contiguous()


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


# ---------------------------------------------------------------------------------------------------------------
# the one grid builder: tiles, text blocks and a legend strip stacked on a white canvas

_GAP = 2  # pixels between tiles
_MARGIN = 4  # pixels around the whole grid
_BG = (255, 255, 255)
_INK = (20, 20, 20)
_MUTED = (90, 90, 90)


def _tile_hw(height: int, width: int, tile: int) -> tuple[int, int]:
    """Tile size with the image's aspect ratio: ``tile`` pixels high, width scaled (within 1/4..4 x ``tile``)."""
    if tile < 8:
        raise ValueError(f"tile must be at least 8 pixels, got {tile}")
    return tile, int(min(4 * tile, max(tile // 4, round(tile * width / height))))


def _resize_images(images01: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    if tuple(images01.shape[-2:]) == hw:
        return images01
    return F.interpolate(images01, size=hw, mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)


def _resize_maps(maps: torch.Tensor, hw: tuple[int, int], smooth: float = 0.0) -> torch.Tensor:
    """``(N, h, w)`` maps to ``hw``: area averaging when shrinking (keeps the relevance of many pixels instead of
    sampling a few), bilinear when enlarging; then an optional Gaussian blur of ``smooth`` pixels sigma, which
    turns scattered pixel relevance into visible blobs."""
    m = maps.float()[:, None]
    if tuple(m.shape[-2:]) != hw:
        shrink = m.shape[-2] >= hw[0] and m.shape[-1] >= hw[1]
        m = F.adaptive_avg_pool2d(m, hw) if shrink else F.interpolate(m, size=hw, mode="bilinear", align_corners=False)
    if smooth > 0:
        radius = max(1, int(round(2.5 * smooth)))
        x = torch.arange(-radius, radius + 1, dtype=torch.float32)
        kernel = torch.exp(-0.5 * (x / smooth) ** 2)
        kernel = kernel / kernel.sum()
        m = F.pad(m, (radius, radius, radius, radius), mode="replicate")
        m = F.conv2d(m, kernel.view(1, 1, 1, -1))
        m = F.conv2d(m, kernel.view(1, 1, -1, 1))
    return m[:, 0]


def _outline(masks: torch.Tensor, hw: tuple[int, int], thickness: int = 2) -> torch.Tensor:
    """Contour pixels (bool ``(N, h, w)``) of binary masks resized to ``hw``: the mask minus its erosion."""
    m = F.interpolate(masks.float()[:, None], size=hw, mode="bilinear", align_corners=False) >= 0.5
    m = m.float()
    border = m
    for _ in range(thickness):  # erode step by step; the removed rings form the contour
        border = -F.max_pool2d(-border, 3, stride=1, padding=1)
    return (m - border)[:, 0] > 0


def _paint(tiles: torch.Tensor, where: torch.Tensor, rgb: tuple[int, int, int]) -> torch.Tensor:
    out = tiles.clone()
    colour = torch.tensor(rgb, dtype=torch.float32)[:, None] / 255
    for i in range(len(out)):
        out[i][:, where[i]] = colour
    return out


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


def _labels_row(
    labels: Sequence[str],
    widths: Sequence[int],
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
    fill: tuple[int, int, int] = _INK,
) -> Image.Image:
    blocks = [_text_block(t, w, font, max_lines=2, center=True, fill=fill) for t, w in zip(labels, widths)]
    return _hstack(blocks)


def _pct(share: float) -> str:
    share = 100 * float(share)
    if 0 < abs(share) < 1:
        return "<1\u00a0%"
    return f"{share:.0f}\u00a0%" if abs(share) >= 9.5 else f"{share:.1f}\u00a0%"


def concept_label(channel: int, share: float | None = None) -> str:
    """The column label of a concept: ``"ch 12 · 34 %"`` (share of the layer's relevance), or ``"ch 12"``.

    No-break spaces (``"\u00a0"``) keep ``"ch 12"`` and ``"34 %"`` together when a narrow tile wraps the label.
    """
    return f"ch\u00a0{int(channel)}" + ("" if share is None else f" · {_pct(share)}")


def legend_strip(
    width: int,
    method: str,
    *,
    signed: bool = True,
    note: str = "",
    percentile: float = 99.5,
    outline_label: str | None = None,
) -> torch.Tensor:
    """The legend every grid starts with, uint8 ``(3, H, width)``: method, a colour bar and how maps are scaled.

    Args:
        width: strip width in pixels (the grid's width).
        method: what produced the maps, e.g. ``"LRP (EpsilonPlusFlat)"``; may include the explained class.
        signed: diverging bar (blue = negative, white = 0, red = positive) or a one-sided bar (white = 0 to red).
        note: one more sentence, e.g. ``"explained class: predicted"`` or the columns' meaning.
        percentile: the scaling percentile stated in the legend.
        outline_label: if given, a swatch in the mask-outline colour with this text (e.g. ``"artifact mask"``).

    Example:
        >>> strip = legend_strip(344, "LRP", note="explained class: predicted")
        >>> strip.dtype, strip.shape[0], strip.shape[2]
        (torch.uint8, 3, 344)
    """
    if width < 40:
        raise ValueError(f"a legend strip needs at least 40 pixels of width, got {width}")
    font, title_font = _font(11), _font(12)
    inner = width - 4
    parts = [_text_block(method or "relevance", width, title_font, fill=(0, 0, 0))]
    # colour bar: the heatmap colour map itself, sampled left to right
    bar_w, bar_h = max(20, min(inner, 240)), 10
    values = torch.linspace(-1 if signed else 0, 1, bar_w).expand(bar_h, bar_w)
    bar = _to_pil(_apply_colormap(values[None], "bwr")[0])
    row = Image.new("RGB", (width, bar_h + 2), _BG)
    row.paste(bar, (2, 1))
    ImageDraw.Draw(row).rectangle((1, 0, 2 + bar_w, bar_h + 1), outline=(120, 120, 120))
    parts.append(row)
    ticks = ("\u2212s", "0", "+s") if signed else ("0", "s")
    tick_row = Image.new("RGB", (width, _line_height(font)), _BG)
    draw = ImageDraw.Draw(tick_row)
    for j, t in enumerate(ticks):
        x = 2 + round(j * (bar_w - 1) / (len(ticks) - 1)) - _text_width(t, font) // 2
        draw.text((min(max(2, x), 2 + bar_w - _text_width(t, font)), 0), t, fill=_MUTED, font=font)
    parts.append(tick_row)
    meaning = "blue = negative, white = 0, red = positive relevance" if signed else "white = 0, red = high relevance"
    scale = (
        f"s = per-image symmetric scale, {percentile:g}th percentile of |R|"
        if signed
        else f"s = per-image scale, {percentile:g}th percentile"
    )
    parts.append(_text_block(f"{meaning}; {scale}", width, font, fill=_MUTED))
    if outline_label:
        swatch = Image.new("RGB", (14, _line_height(font)), _BG)
        ImageDraw.Draw(swatch).rectangle((1, 3, 12, _line_height(font) - 4), outline=MASK_RGB, width=2)
        parts.append(_hstack([swatch, _text_block(f"outline = {outline_label}", width - 16, font, fill=_MUTED)]))
    if note:
        parts.append(_text_block(note, width, font, fill=_MUTED))
    parts.append(_separator(width))
    return _from_pil(_vstack(parts, width=width))


def explanation_grid(
    images01: torch.Tensor,
    maps: torch.Tensor,
    captions: Sequence[str],
    *,
    tile: int = 112,
    method: str = "",
    legend: bool = True,
    masks: torch.Tensor | None = None,
    signed: bool = True,
    note: str = "",
    percentile: float = 99.5,
    report_negative: bool = True,
) -> torch.Tensor:
    """Rows ``input | heatmap | overlay`` under a legend strip, one per image, as uint8 ``(3, H, W)``.

    Captions wrap onto as many lines as they need (at most four, then an ellipsis): they never run past their row.
    With ``masks`` the artifact region is outlined on the input and overlay tiles. With ``signed`` and
    ``report_negative`` each caption ends with the map's share of negative relevance (:func:`negative_share`).

    Args:
        images01: ``(N, 1|3, H, W)`` images in ``[0, 1]`` (or uint8).
        maps: ``(N, h, w)`` relevance; resized to the tiles (area average when shrinking).
        captions: one text per row, e.g. ``"#12 true melanoma | pred nevus (p=0.93)"``.
        tile: tile height in pixels (width follows the images' aspect ratio).
        method: legend title, e.g. ``"LRP (EpsilonPlusFlat), explained: predicted class"``.
        legend: draw the legend strip on top.
        masks: ``(N, H, W)`` bool artifact masks to outline, or ``None``.
        signed: relevance with both signs (LRP) or non-negative maps (Grad-CAM): changes the legend.
        note: an extra legend line.
        percentile: per-image symmetric scaling, see :func:`symmetric_scale`.
        report_negative: append ``"neg. relevance x %"`` to each caption (signed maps only).

    Example:
        >>> grid = explanation_grid(torch.rand(2, 3, 32, 32), torch.randn(2, 32, 32), ["a", "b"], tile=48)
        >>> grid.dtype, grid.shape[0]
        (torch.uint8, 3)
    """
    img = to_float01(images01)
    n = img.shape[0]
    h = _as_batch(maps)
    if h.shape[0] != n:
        raise ValueError(f"got {n} images but {h.shape[0]} maps; pass one (H, W) map per image")
    if len(captions) != n:
        raise ValueError(f"need one caption per row ({n}), got {len(captions)}")
    if masks is not None and (masks.ndim != 3 or masks.shape[0] != n):
        raise ValueError(f"masks must be (N, H, W) bool with N = {n}, got shape {tuple(masks.shape)}")
    hw = _tile_hw(img.shape[-2], img.shape[-1], tile)
    imgs = _resize_images(img, hw)
    heat = _resize_maps(h, hw)
    rgb = heatmap_to_rgb(heat, percentile)
    over = overlay(imgs, heat, percentile=percentile)
    if masks is not None:
        border = _outline(masks.detach().cpu(), hw)
        imgs, over = _paint(imgs, border, MASK_RGB), _paint(over, border, MASK_RGB)
    neg = negative_share(h)
    font = _font(11)
    row_w = 3 * hw[1] + 2 * _GAP
    parts: list[Image.Image] = []
    if legend:
        cols = "columns: input | heatmap | overlay (colour opacity grows with |R|, image greyed)"
        legend_note = f"{note}; {cols}" if note else cols
        parts.append(
            _to_pil(
                legend_strip(
                    row_w,
                    method,
                    signed=signed,
                    note=legend_note,
                    percentile=percentile,
                    outline_label="artifact mask" if masks is not None else None,
                )
            )
        )
    parts.append(_labels_row(["input", "heatmap", "overlay"], [hw[1]] * 3, font, fill=_MUTED))
    for i in range(n):
        text = str(captions[i] or "")
        if signed and report_negative:
            share = f"neg.\u00a0relevance\u00a0{_pct(neg[i])}"
            text = f"{text} | {share}" if text else share
        parts.append(_text_block(text, row_w, font, max_lines=4))
        parts.append(_hstack([_to_pil(imgs[i]), _to_pil(rgb[i]), _to_pil(over[i])]))
        if i < n - 1:
            parts.append(_separator(row_w))
    return _finish(_vstack(parts, width=row_w))


def _reference_tile(ref: torch.Tensor | None, hw: tuple[int, int], channel: int) -> Image.Image:
    """A reference crop resized to ``hw``, or a labelled grey placeholder (never a blank tile)."""
    if ref is not None and ref.numel() > 0:
        r = ref if ref.ndim == 4 else ref.unsqueeze(0)
        return _to_pil(_resize_images(to_float01(r[:1]), hw)[0])
    tile = Image.new("RGB", (hw[1], hw[0]), (215, 215, 215))
    block = _text_block(f"no reference for ch {channel}", hw[1], _font(10), background=(215, 215, 215), center=True)
    tile.paste(block.crop((0, 0, hw[1], min(block.height, hw[0]))), (0, max(0, (hw[0] - block.height) // 2)))
    return tile


def concept_grid(
    images01: torch.Tensor,
    concept_maps: torch.Tensor,
    channels: torch.Tensor,
    captions: Sequence[str],
    *,
    shares: torch.Tensor | None = None,
    references: dict[int, torch.Tensor] | None = None,
    tile: int = 80,
    layer: str = "",
    method: str = "CRP",
    legend: bool = True,
    percentile: float = 99.5,
) -> torch.Tensor:
    """Per probe a row ``input | concept 1..K`` (each column labelled ``ch <id> · <share>``), then the concepts'
    reference crops labelled with their channel; uint8 ``(3, H, W)``.

    Concept maps are made visible: averaged down to the tile, smoothed (pixel-level relevance otherwise shows as
    faint dots), scaled per map and painted red/blue over the dimmed input.

    Args:
        images01: ``(N, 1|3, H, W)`` probe images in ``[0, 1]``.
        concept_maps: ``(N, K, h, w)`` conditional heatmaps, one per top concept.
        channels: ``(N, K)`` channel ids of the concepts.
        captions: one text per probe.
        shares: ``(N, K)`` each concept's share of the layer's relevance (``0.34`` is shown as ``34 %``).
        references: ``{channel: (3, s, s) or (R, 3, s, s)}`` reference crops; a missing one is a labelled
            placeholder.
        tile: tile height in pixels.
        layer: the concept layer's name, for the legend.
        method: legend title.
        legend: draw the legend strip on top.
        percentile: per-map symmetric scaling.

    Example:
        >>> grid = concept_grid(torch.rand(1, 3, 32, 32), torch.randn(1, 2, 32, 32), torch.tensor([[3, 7]]), ["a"])
        >>> grid.dtype
        torch.uint8
    """
    img = to_float01(images01)
    n = img.shape[0]
    if concept_maps.ndim != 4 or concept_maps.shape[0] != n:
        raise ValueError(f"concept_maps must be (N, K, h, w) with N = {n}, got shape {tuple(concept_maps.shape)}")
    k = concept_maps.shape[1]
    if tuple(channels.shape) != (n, k):
        raise ValueError(f"channels must be (N, K) = {(n, k)} like concept_maps, got {tuple(channels.shape)}")
    if shares is not None and tuple(shares.shape) != (n, k):
        raise ValueError(f"shares must be (N, K) = {(n, k)}, got {tuple(shares.shape)}")
    if len(captions) != n:
        raise ValueError(f"need one caption per probe ({n}), got {len(captions)}")
    hw = _tile_hw(img.shape[-2], img.shape[-1], tile)
    imgs = _resize_images(img, hw)
    font = _font(11)
    row_w = (k + 1) * hw[1] + k * _GAP
    parts: list[Image.Image] = []
    if legend:
        title = f"{method} concepts" + (f" of layer {layer}" if layer else "")
        note = (
            "columns: input, then the top concepts (channel id and its share of the layer's relevance); "
            "concept maps smoothed and scaled each on its own, drawn over the greyed input"
        )
        if references is not None:
            note += "; below: the reference crop that activates each concept most"
        parts.append(_to_pil(legend_strip(row_w, title, note=note, percentile=percentile)))
    for i in range(n):
        heat = _resize_maps(concept_maps[i].detach().cpu(), hw, smooth=max(1.0, hw[0] / 48))
        overs = overlay(imgs[i : i + 1].expand(k, -1, -1, -1), heat, percentile=percentile)
        ids = [int(c) for c in channels[i].tolist()]
        labels = [concept_label(c, None if shares is None else float(shares[i, j])) for j, c in enumerate(ids)]
        parts.append(_text_block(str(captions[i] or ""), row_w, font, max_lines=4))
        parts.append(_labels_row(["input", *labels], [hw[1]] * (k + 1), font))
        parts.append(_hstack([_to_pil(imgs[i]), *[_to_pil(o) for o in overs]]))
        if references is not None:
            head = _text_block(
                "reference crops" if hw[1] >= 64 else "refs",
                hw[1],
                font,
                fill=_MUTED,
                center=True,
                min_height=hw[0],
                background=(240, 240, 240),
            )
            refs = [_reference_tile(references.get(c), hw, c) for c in ids]
            parts.append(_labels_row(["", *[f"ref. ch {c}" for c in ids]], [hw[1]] * (k + 1), font, fill=_MUTED))
            parts.append(_hstack([head, *refs]))
        if i < n - 1:
            parts.append(_separator(row_w, 9))
    return _finish(_vstack(parts, width=row_w))


def timeline_grid(
    frames: Sequence[torch.Tensor],
    column_labels: Sequence[str],
    row_labels: Sequence[str],
    *,
    tile: int = 56,
    legend: bool = True,
    method: str = "",
    signed: bool = True,
    percentile: float = 99.5,
) -> torch.Tensor:
    """Heatmaps over training: probes as rows, epochs as columns; uint8 ``(3, H, W)``.

    Args:
        frames: one ``(N, h, w)`` tensor of maps per column (epoch), all with the same ``N``.
        column_labels: one label per frame, e.g. ``"epoch 3"``.
        row_labels: one label per probe, e.g. ``"#12 melanoma -> nevus [ruler]"``; wrapped in a left column wide
            enough for them (rows grow taller rather than clipping).
        tile: tile height in pixels.
        legend: draw the legend strip on top.
        method: legend title.
        signed: legend for signed relevance or for non-negative maps.
        percentile: per-map symmetric scaling.

    Example:
        >>> frames = [torch.randn(2, 16, 16) for _ in range(3)]
        >>> timeline_grid(frames, ["e1", "e2", "e3"], ["a", "b"]).dtype
        torch.uint8
    """
    if not frames:
        raise ValueError("timeline_grid needs at least one frame")
    if len(column_labels) != len(frames):
        raise ValueError(f"need one column label per frame ({len(frames)}), got {len(column_labels)}")
    n = frames[0].shape[0]
    for t, f in enumerate(frames):
        if f.ndim != 3 or f.shape[0] != n:
            raise ValueError(f"frame {t} must be (N, h, w) with N = {n}, got shape {tuple(f.shape)}")
    if len(row_labels) != n:
        raise ValueError(f"need one row label per probe ({n}), got {len(row_labels)}")
    hw = _tile_hw(frames[0].shape[-2], frames[0].shape[-1], tile)
    font = _font(11)
    widest = max((_text_width(str(lbl), font) for lbl in row_labels), default=0) + 6
    label_w = int(min(max(widest, 60), max(140, 2 * hw[1])))
    tiles = [heatmap_to_rgb(_resize_maps(f.detach().cpu(), hw), percentile) for f in frames]
    body_w = len(frames) * hw[1] + (len(frames) - 1) * _GAP
    width = label_w + _GAP + body_w
    parts: list[Image.Image] = []
    if legend:
        note = "rows: probes; columns: epochs; each map scaled on its own"
        parts.append(
            _to_pil(
                legend_strip(
                    width, method or "relevance over training", signed=signed, note=note, percentile=percentile
                )
            )
        )
    head = _labels_row([str(c) for c in column_labels], [hw[1]] * len(frames), font, fill=_MUTED)
    parts.append(_hstack([Image.new("RGB", (label_w, head.height), _BG), head]))
    for i in range(n):
        label = _text_block(str(row_labels[i]), label_w, font, min_height=hw[0])
        cells = _hstack([_to_pil(t[i]) for t in tiles])
        parts.append(_hstack([label, cells]))
    return _finish(_vstack(parts, gap=_GAP, width=width))


# ---------------------------------------------------------------------------------------------------------------
# line plots and tables (PIL only): curves and summaries for TensorBoard's image tab, W&B and MLflow alike

#: distinct, colour-blind friendly line colours (Tableau 10)
PALETTE: tuple[tuple[int, int, int], ...] = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
)


def _nice_ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    """Round tick positions (1, 2, 2.5, 5 x 10^k steps) covering ``[lo, hi]``."""
    if not np.isfinite(lo) or not np.isfinite(hi):
        return [0.0]
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, target)
    mag = 10 ** np.floor(np.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = np.ceil(lo / step - 1e-9) * step
    ticks = []
    t = first
    while t <= hi + 1e-9 * step:
        ticks.append(0.0 if abs(t) < step * 1e-9 else float(t))
        t += step
    return ticks


def _tick_label(value: float, ticks: Sequence[float]) -> str:
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else abs(value) or 1.0
    if max(abs(t) for t in ticks) >= 1e5 or step < 1e-3:
        return f"{value:.2g}"
    decimals = max(0, int(-np.floor(np.log10(step) + 1e-9)))
    if decimals == 0 and not float(step).is_integer():
        decimals = 1
    return f"{value:.{decimals + (1 if step * 10**decimals % 1 else 0)}f}"


def _wrap_flow(items: Sequence[int], width: int, gap: int) -> list[list[int]]:
    """Greedy flow layout: item indices per line so that the summed widths (plus gaps) fit ``width``."""
    lines: list[list[int]] = [[]]
    used = 0
    for i, w in enumerate(items):
        if lines[-1] and used + gap + w > width:
            lines.append([])
            used = 0
        used += (gap if lines[-1] else 0) + w
        lines[-1].append(i)
    return lines


def line_plot(
    curves: dict[str, Sequence[float]],
    x: Sequence[float] | None = None,
    *,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    width: int = 480,
    height: int = 320,
) -> torch.Tensor:
    """A line chart as uint8 ``(3, height, width)``: axes with round ticks, one colour per curve, a legend below.

    Drawn with PIL only (no matplotlib), so a callback can log it through any image sink. Non-finite values
    (``nan``, ``inf``) break a curve instead of spoiling the axis range.

    Args:
        curves: ``{name: y values}``; without ``x`` each curve is drawn against ``0, 1, 2, ...``.
        x: shared x values; every curve must then have ``len(x)`` values.
        title, xlabel, ylabel: text above the plot, under the x axis and above the y axis.
        width, height: the picture size in pixels.

    Example:
        >>> img = line_plot({"lrp": [0.1, 0.3, 0.2], "gradcam": [0.2, 0.1, 0.4]}, x=[1, 2, 3], title="drift")
        >>> img.dtype, tuple(img.shape)
        (torch.uint8, (3, 320, 480))
    """
    if not curves:
        raise ValueError("line_plot needs at least one curve, e.g. line_plot({'drift': [0.1, 0.2]})")
    if width < 160 or height < 120:
        raise ValueError(f"line_plot needs at least 160 x 120 pixels to fit axes and labels, got {width} x {height}")
    series: list[tuple[str, np.ndarray, np.ndarray]] = []
    for name, ys in curves.items():
        y = np.asarray([float(v) for v in ys], dtype=np.float64)
        if x is None:
            xs = np.arange(len(y), dtype=np.float64)
        else:
            xs = np.asarray([float(v) for v in x], dtype=np.float64)
            if len(xs) != len(y):
                raise ValueError(f"curve {name!r} has {len(y)} values but x has {len(xs)}; give one y per x")
        series.append((str(name), xs, y))

    font, small = _font(12), _font(11)
    lh, slh = _line_height(font), _line_height(small)
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)

    finite_x = np.concatenate([s[1][np.isfinite(s[1]) & np.isfinite(s[2])] for s in series])
    finite_y = np.concatenate([s[2][np.isfinite(s[1]) & np.isfinite(s[2])] for s in series])
    if finite_y.size == 0:
        x_lo, x_hi, y_lo, y_hi = 0.0, 1.0, 0.0, 1.0
    else:
        x_lo, x_hi = float(finite_x.min()), float(finite_x.max())
        y_lo, y_hi = float(finite_y.min()), float(finite_y.max())
    if x_hi <= x_lo:
        x_lo, x_hi = x_lo - 0.5, x_hi + 0.5
    if y_hi <= y_lo:  # constant curves: a band around the value
        pad = abs(y_lo) * 0.1 or 0.5
        y_lo, y_hi = y_lo - pad, y_hi + pad
    else:
        pad = (y_hi - y_lo) * 0.05
        y_lo, y_hi = y_lo - pad, y_hi + pad
    xt, yt = _nice_ticks(x_lo, x_hi), _nice_ticks(y_lo, y_hi)
    # extend the axes to the outer ticks so the grid lines frame the data
    y_lo, y_hi = min(y_lo, yt[0]), max(y_hi, yt[-1])
    yt_labels = [_tick_label(t, yt) for t in yt]
    xt_labels = [_tick_label(t, xt) for t in xt]

    # legend entries (swatch + name) flow under the plot, wrapping onto as many lines as needed
    swatch, gap = 18, 14
    names = [_ellipsize(n, width - 20 - swatch - 4, small) for n, _, _ in series]
    entry_w = [swatch + 4 + _text_width(n, small) for n in names]
    legend_lines = _wrap_flow(entry_w, width - 20, gap)

    top = 6 + (lh + 4 if title else 0) + (slh if ylabel else 0) + slh // 2
    left = 8 + max(_text_width(s, small) for s in yt_labels) + 6
    bottom = height - (6 + len(legend_lines) * slh + 4 + (slh if xlabel else 0) + slh + 6)
    right = width - 6 - _text_width(xt_labels[-1], small) // 2
    if bottom - top < 40:
        raise ValueError(f"{len(series)} legend entries leave no room for the plot at height {height}; raise height")

    def px(v: float) -> float:
        return left + (v - x_lo) / (x_hi - x_lo) * (right - left)

    def py(v: float) -> float:
        return bottom - (v - y_lo) / (y_hi - y_lo) * (bottom - top)

    if title:
        title = _ellipsize(title, width - 12, font)
        draw.text(((width - _text_width(title, font)) // 2, 4), title, fill=(0, 0, 0), font=font)
    if ylabel:
        draw.text((4, top - slh - slh // 2 + 2), _ellipsize(ylabel, width - 8, small), fill=(60, 60, 60), font=small)
    for t, s in zip(yt, yt_labels):
        y = py(t)
        draw.line((left, y, right, y), fill=(228, 228, 228))
        draw.line((left - 4, y, left, y), fill=(0, 0, 0))
        draw.text((left - 6 - _text_width(s, small), y - slh // 2), s, fill=(40, 40, 40), font=small)
    for t, s in zip(xt, xt_labels):
        x0 = px(t)
        draw.line((x0, top, x0, bottom), fill=(238, 238, 238))
        draw.line((x0, bottom, x0, bottom + 4), fill=(0, 0, 0))
        tx = min(max(0, x0 - _text_width(s, small) / 2), width - _text_width(s, small) - 3)
        draw.text((tx, bottom + 5), s, fill=(40, 40, 40), font=small)
    draw.rectangle((left, top, right, bottom), outline=(0, 0, 0))
    if xlabel:
        xlabel = _ellipsize(xlabel, width - 8, small)
        lx = min(max(4, (left + right - _text_width(xlabel, small)) // 2), width - 4 - _text_width(xlabel, small))
        draw.text((lx, bottom + 5 + slh), xlabel, fill=(60, 60, 60), font=small)

    for k, (_, xs, ys) in enumerate(series):
        colour = PALETTE[k % len(PALETTE)]
        ok = np.isfinite(xs) & np.isfinite(ys)
        points = [(px(a), py(b)) if good else None for a, b, good in zip(xs, ys, ok)]
        run: list[tuple[float, float]] = []
        for p in points + [None]:
            if p is None:
                if len(run) > 1:
                    draw.line(run, fill=colour, width=2, joint="curve")
                for q in run if len(xs) <= 40 else run[:1] if len(run) == 1 else []:
                    # markers: single points stay visible, short series read as samples; long series stay clean
                    draw.ellipse((q[0] - 2.5, q[1] - 2.5, q[0] + 2.5, q[1] + 2.5), fill=colour)
                run = []
            else:
                run.append(p)

    ly = height - 6 - len(legend_lines) * slh
    for line in legend_lines:
        lx = 10
        for i in line:
            colour = PALETTE[i % len(PALETTE)]
            draw.line((lx, ly + slh // 2, lx + swatch, ly + slh // 2), fill=colour, width=3)
            draw.text((lx + swatch + 4, ly), names[i], fill=(0, 0, 0), font=small)
            lx += entry_w[i] + gap
        ly += slh
    return _from_pil(img)


def table_image(header: Sequence[str], rows: Sequence[Sequence[str]], *, title: str = "") -> torch.Tensor:
    """A table as uint8 ``(3, H, W)``; every column is as wide as its widest cell, so no text is ever clipped.

    Cells may hold several lines (``"\\n"``). Rows alternate a light shade for reading across.

    Example:
        >>> img = table_image(["method", "drift"], [["lrp", "0.12"], ["gradcam", "0.30"]], title="epoch 3")
        >>> img.dtype, img.shape[0]
        (torch.uint8, 3)
    """
    header = [str(h) for h in header]
    if not header:
        raise ValueError("table_image needs a header with at least one column")
    body = [[str(c) for c in r] for r in rows]
    for i, r in enumerate(body):
        if len(r) != len(header):
            raise ValueError(f"row {i} has {len(r)} cells but the header has {len(header)}: {r}")
    font, bold = _font(12), _font(12)
    lh = _line_height(font)
    pad_x, pad_y = 8, 3
    table = [header, *body]
    col_w = [
        max(_text_width(line, font) for r in table for line in r[j].split("\n")) + 2 * pad_x for j in range(len(header))
    ]
    row_h = [max(len(c.split("\n")) for c in r) * lh + 2 * pad_y for r in table]
    title_h = lh + 6 if title else 0
    width = max(sum(col_w), _text_width(title, font) + 2 * pad_x) + 1
    height = title_h + sum(row_h) + 1
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    if title:
        draw.text((pad_x, 3), title, fill=(0, 0, 0), font=font)
    y = title_h
    for i, (r, h) in enumerate(zip(table, row_h)):
        fill = (225, 228, 235) if i == 0 else ((246, 246, 246) if i % 2 == 0 else (255, 255, 255))
        draw.rectangle((0, y, sum(col_w), y + h), fill=fill)
        x = 0
        for j, cell in enumerate(r):
            for k, line in enumerate(cell.split("\n")):
                draw.text((x + pad_x, y + pad_y + k * lh), line, fill=(0, 0, 0), font=bold if i == 0 else font)
            x += col_w[j]
        y += h
        if i == 0:
            draw.line((0, y, sum(col_w), y), fill=(90, 90, 90))
    x = 0
    for w in col_w[:-1]:  # light column rules
        x += w
        draw.line((x, title_h, x, height - 1), fill=(200, 200, 200))
    draw.rectangle((0, title_h, sum(col_w), height - 1), outline=(90, 90, 90))
    return _from_pil(img)
