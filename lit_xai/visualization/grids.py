"""Captioned uint8 grids under a legend strip: explanations (input | heatmap | overlay), concepts, timelines."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from ._canvas import _BG, _GAP, _MARGIN, _MUTED, _finish, _from_pil, _hstack, _separator, _to_pil, _vstack
from .colors import (
    MASK_RGB,
    _apply_colormap,
    _as_batch,
    heatmap_to_rgb,
    negative_share,
    overlay,
    to_float01,
    visible_share,
)
from .text import _font, _labels_row, _line_height, _text_block, _text_width

__all__ = [
    "NEAR_BLANK",
    "NEAR_ZERO",
    "concept_grid",
    "concept_label",
    "explanation_grid",
    "legend_strip",
    "magnitude_label",
    "near_zero_maps",
    "timeline_grid",
]

#: a map whose visible pixels (:func:`~lit_xai.visualization.visible_share`) stay below this share is marked
#: "nearly blank" in the grids, so an empty-looking tile is read as "no relevance found", not as a rendering failure
NEAR_BLANK = 0.02


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


#: a map whose largest |R| is below this share of the largest |R| of the maps shown beside it (or exactly 0) is
#: "~0 everywhere": a per-map scale would blow its noise up into a picture that looks like a real map
NEAR_ZERO = 1e-6


def near_zero_maps(maps: torch.Tensor, rel: float = NEAR_ZERO) -> torch.Tensor:
    """Bool ``(N,)``: which of the ``(N, h, w)`` maps are ~0 everywhere (max |R| exactly 0, or at most ``rel`` of
    the largest max |R| of all ``N`` maps).

    >>> near_zero_maps(torch.stack([torch.ones(2, 2), torch.full((2, 2), 1e-9), torch.zeros(2, 2)])).tolist()
    [False, True, True]
    """
    peak = maps.detach().float().abs().flatten(1).amax(1)
    top = float(peak.max()) if peak.numel() else 0.0
    return (peak == 0) | (peak <= rel * top)


def magnitude_label(maps: torch.Tensor, shared: bool = False) -> str:
    """How a panel's maps are scaled, for its label: ``"per-map scale, max |R| 0.031"`` or ``"shared scale, ..."``.

    >>> magnitude_label(torch.full((1, 2, 2), 0.5))
    'per-map scale, max |R| 0.5'
    """
    peak = float(maps.detach().float().abs().max()) if maps.numel() else 0.0
    return f"{'shared' if shared else 'per-map'} scale, max |R| {peak:.2g}"


def _short(value: float) -> str:
    """A magnitude in at most 6 characters (a tile's label): ``0.034``, ``0.0034``, ``3e-05``, ``12``."""
    return f"{value:.2g}" if value == 0 or 1e-3 <= abs(value) < 1e3 else f"{value:.0e}"


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


#: tiles narrower than this are not made to fit a card: the grid's type grows instead (:func:`fit_text_px`)
MIN_FIT_TILE = 40


def fit_text_px(width: int, fit_width: int | None, text_px: int = 11) -> int:
    """Font size (px, in the picture) at which ``text_px`` type still shows at ``text_px`` when a grid ``width`` pixels
    wide (plus its margins) is scaled to ``fit_width`` (TensorBoard's IMAGES card scales every picture to its width).

    >>> fit_text_px(342, 350), fit_text_px(692, 350)  # 4 px margins each side
    (11, 22)
    """
    if fit_width is None or width + 2 * _MARGIN <= fit_width:
        return text_px
    return math.ceil(text_px * (width + 2 * _MARGIN) / fit_width)


def _fit_tile(hw: tuple[int, int], columns: int, avail: int) -> tuple[int, int]:
    """``hw`` narrowed (aspect kept, not below :data:`MIN_FIT_TILE`) so ``columns`` tiles and their gaps fit
    ``avail`` pixels."""
    tile_w = (avail - 2 * _MARGIN - (columns - 1) * _GAP) // columns
    if tile_w >= hw[1]:
        return hw
    tile_w = max(MIN_FIT_TILE, tile_w)
    return max(1, round(tile_w * hw[0] / hw[1])), tile_w


def legend_strip(
    width: int,
    method: str,
    *,
    signed: bool = True,
    note: str = "",
    percentile: float = 99.5,
    outline_label: str | None = None,
    text_px: int = 11,
) -> torch.Tensor:
    """The legend every grid starts with, uint8 ``(3, H, width)``: method, a colour bar and how maps are scaled.

    Args:
        width: strip width in pixels (the grid's width).
        method: what produced the maps, e.g. ``"LRP (EpsilonPlusFlat)"``; may include the explained class.
        signed: diverging bar (blue = negative, white = 0, red = positive) or a one-sided bar (white = 0 to red).
        note: one more sentence, e.g. ``"explained class: predicted"`` or the columns' meaning.
        percentile: the scaling percentile stated in the legend.
        outline_label: if given, a swatch in the mask-outline colour with this text (e.g. ``"artifact mask"``).
        text_px: font size of its text (the title one larger): a grid wider than the dashboard's card is shown
            shrunk, so its type is drawn larger (:func:`fit_text_px`).

    Example:
        >>> strip = legend_strip(344, "LRP", note="explained class: predicted")
        >>> strip.dtype, strip.shape[0], strip.shape[2]
        (torch.uint8, 3, 344)
    """
    if width < 40:
        raise ValueError(f"a legend strip needs at least 40 pixels of width, got {width}")
    font, title_font = _font(text_px), _font(text_px + 1)
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
        f"s = per-map scale (symmetric, {percentile:g}th percentile of |R| of each map)"
        if signed
        else f"s = per-map scale ({percentile:g}th percentile of each map)"
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
    groups: Sequence[tuple[str, int]] | None = None,
) -> torch.Tensor:
    """Rows ``input | heatmap | overlay`` under a legend strip, one per image, as uint8 ``(3, H, W)``.

    Captions wrap onto as many lines as they need (at most four, then an ellipsis): they never run past their row.
    With ``masks`` the artifact region is outlined on the input and overlay tiles. With ``signed`` and
    ``report_negative`` each caption ends with the map's share of negative relevance (:func:`negative_share`).
    A nearly blank map (visible colour on fewer than :data:`NEAR_BLANK` of its pixels) is labelled so on its tile
    and in its caption.

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
        groups: ``(heading, number of rows)`` in row order: each group starts with its heading, and a group with
            no rows shows ``"<heading>: none this epoch"`` instead of silently missing; the counts sum to ``N``.

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
    if groups is not None and sum(int(c) for _, c in groups) != n:
        raise ValueError(f"groups must count the {n} rows, got {[c for _, c in groups]}")
    hw = _tile_hw(img.shape[-2], img.shape[-1], tile)
    imgs = _resize_images(img, hw)
    zero = near_zero_maps(h)
    # a ~0 map is drawn as zero (neutral), not blown up to full colour by its own per-map scale
    heat = torch.where(zero[:, None, None], torch.zeros((), dtype=h.dtype), _resize_maps(h, hw))
    rgb = heatmap_to_rgb(heat, percentile)
    visible = visible_share(h, percentile)
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
    starts = _group_starts(groups, n)
    for i in range(n + 1):
        for heading, count in starts.get(i, []):
            if count == 0:
                parts.append(_text_block(f"{heading}: none this epoch", row_w, _font(12), background=(240, 240, 240)))
            else:
                parts.append(_text_block(heading, row_w, _font(12), fill=(0, 0, 0), background=(232, 236, 244)))
        if i == n:
            break
        text = str(captions[i] or "")
        blank = float(visible[i]) < NEAR_BLANK and not bool(zero[i])
        if bool(zero[i]):
            text = f"{text} | map ~0 everywhere" if text else "map ~0 everywhere"
        elif blank:
            text = f"{text} | nearly blank map ({_pct(visible[i])} of pixels visible)" if text else "nearly blank map"
        if signed and report_negative and not bool(zero[i]):
            share = f"neg.\u00a0relevance\u00a0{_pct(neg[i])}"
            text = f"{text} | {share}" if text else share
        text = f"{text} | {magnitude_label(h[i : i + 1])}" if text else magnitude_label(h[i : i + 1])
        parts.append(_text_block(text, row_w, font, max_lines=4))
        heat_tile = _to_pil(rgb[i])
        if bool(zero[i]):
            heat_tile = _mark_blank(heat_tile, "map ~0 everywhere")
        elif blank:
            heat_tile = _mark_blank(heat_tile)
        parts.append(_hstack([_to_pil(imgs[i]), heat_tile, _to_pil(over[i])]))
        if i < n - 1:
            parts.append(_separator(row_w))
    return _finish(_vstack(parts, width=row_w))


def _group_starts(groups: Sequence[tuple[str, int]] | None, n: int) -> dict[int, list[tuple[str, int]]]:
    """Row index -> the group headings drawn before it (empty groups sit where their rows would be)."""
    starts: dict[int, list[tuple[str, int]]] = {}
    row = 0
    for heading, count in groups or []:
        starts.setdefault(min(row, n), []).append((str(heading), int(count)))
        row += int(count)
    return starts


def _mark_blank(tile: Image.Image, text: str = "nearly blank") -> Image.Image:
    """The tile with a label (``"nearly blank"``, ``"map ~0 everywhere"``) across its middle: an empty-looking tile is
    a finding, not a bug."""
    out = tile.copy()
    font = _font(11 if tile.width >= 64 else 9)
    block = _text_block(text, tile.width, font, fill=(120, 0, 0), background=(255, 236, 200), center=True)
    out.paste(block, (0, max(0, (tile.height - block.height) // 2)))
    return out


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
    fit_width: int | None = None,
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
        fit_width: the width (px) the picture is shown at (e.g. TensorBoard's IMAGES card): tiles narrow to fit it,
            down to :data:`MIN_FIT_TILE`, beyond which the type grows (:func:`fit_text_px`) so it stays readable.

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
    if fit_width is not None:
        hw = _fit_tile(hw, k + 1, fit_width)
    imgs = _resize_images(img, hw)
    row_w = (k + 1) * hw[1] + k * _GAP
    text_px = fit_text_px(row_w, fit_width)
    font = _font(text_px)
    parts: list[Image.Image] = []
    if legend:
        if layer and f" at {layer}" in method:  # "CRP top-4 at net.layer3" -> "CRP top-4 concepts at net.layer3"
            title = method.replace(f" at {layer}", f" concepts at {layer}", 1)
        else:
            title = f"{method} concepts" + (f" of layer {layer}" if layer and layer not in method else "")
        note = (
            "columns: input, then the top concepts (channel id and its share of the layer's relevance); "
            "concept maps smoothed, per-map scale (each on its own), drawn over the greyed input"
        )
        if references is not None:
            note += "; below: the reference crop that activates each concept most"
        parts.append(_to_pil(legend_strip(row_w, title, note=note, percentile=percentile, text_px=text_px)))
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
    images01: torch.Tensor | None = None,
    masks: torch.Tensor | None = None,
    fit_width: int | None = None,
) -> torch.Tensor:
    """Heatmaps over training: probes as rows, epochs as columns (after an input column); uint8 ``(3, H, W)``.

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
        images01: ``(N, 1|3, H, W)`` probe images in ``[0, 1]``: drawn as a first column ``input``.
        masks: ``(N, H, W)`` bool artifact masks outlined on the input column (needs ``images01``).
        fit_width: the width (px) the picture is shown at (e.g. TensorBoard's IMAGES card): the label column and
            the tiles narrow to fit it (tiles down to :data:`MIN_FIT_TILE`), beyond which the type grows
            (:func:`fit_text_px`) so it stays readable.

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
    if images01 is not None and images01.shape[0] != n:
        raise ValueError(f"images01 must hold the {n} probes of the rows, got shape {tuple(images01.shape)}")
    if masks is not None and (images01 is None or masks.ndim != 3 or masks.shape[0] != n):
        raise ValueError(f"masks must be (N, H, W) bool with N = {n} and come with images01")
    hw = _tile_hw(frames[0].shape[-2], frames[0].shape[-1], tile)
    columns = len(frames) + (images01 is not None)
    font = _font(11)
    widest = max((_text_width(str(lbl), font) for lbl in row_labels), default=0) + 6
    label_w = int(min(max(widest, 60), max(140, 2 * hw[1])))
    text_px = 11

    def grid_width() -> int:  # the label column and the tile columns, with their gaps (margins not included)
        return label_w + _GAP + columns * (hw[1] + _GAP) - _GAP

    if fit_width is not None and grid_width() + 2 * _MARGIN > fit_width:
        # the probes' labels wrap onto more lines, also after an arrow ("#204 melanoma→" / "melanoma")
        row_labels = [str(label).replace("\u2192", "\u2192 ") for label in row_labels]

        def longest_word(size: int) -> int:  # a label wraps at spaces: its longest word must fit the column
            words = (w for label in row_labels for w in label.split())
            return max((_text_width(w, _font(size)) for w in words), default=0) + 6

        label_w = min(label_w, max(60, longest_word(11), fit_width // 4))
        hw = _fit_tile(hw, columns, fit_width - label_w - _GAP)
        text_px = fit_text_px(grid_width(), fit_width)
        # still wider than the card (many epochs): larger type, as large as the columns' own labels still fit
        heads = [w for c in [*column_labels, "input"] for w in f"{c} · 0.000".split()]
        while text_px > 11 and max(_text_width(w, _font(text_px)) for w in heads) > hw[1] - 4:
            text_px -= 1
        if text_px != 11:
            label_w = max(round(label_w * text_px / 11), longest_word(text_px))
            font = _font(text_px)
    # ~0 maps judged against every map of the grid (all frames of all probes): per-map scaling would blow them up
    zero = near_zero_maps(torch.cat([f.detach().cpu() for f in frames])).reshape(len(frames), n)
    tiles = [
        heatmap_to_rgb(torch.where(z[:, None, None], 0.0, _resize_maps(f.detach().float().cpu(), hw)), percentile)
        for f, z in zip(frames, zero)
    ]
    column_labels = [f"{c} · {_short(float(f.detach().abs().max()))}" for c, f in zip(column_labels, frames)]
    if images01 is not None:
        inputs = _resize_images(to_float01(images01), hw)
        if masks is not None:
            inputs = _paint(inputs, _outline(masks.detach().cpu(), hw, thickness=1), MASK_RGB)
        tiles, column_labels = [inputs, *tiles], ["input", *column_labels]
    width = grid_width()
    parts: list[Image.Image] = []
    if legend:
        note = "rows: probes; columns: " + ("the input, then " if images01 is not None else "") + "epochs"
        note += "; per-map scale (each map on its own; the number under an epoch: that column's largest |R|)"
        parts.append(
            _to_pil(
                legend_strip(
                    width,
                    method or "relevance over training",
                    signed=signed,
                    note=note,
                    percentile=percentile,
                    outline_label="artifact mask" if masks is not None else None,
                    text_px=text_px,
                )
            )
        )
    head = _labels_row(column_labels, [hw[1]] * len(tiles), font, fill=_MUTED)
    parts.append(_hstack([Image.new("RGB", (label_w, head.height), _BG), head]))
    for i in range(n):
        label = _text_block(str(row_labels[i]), label_w, font, min_height=hw[0])
        first = len(tiles) - len(frames)  # the input column, when there is one, is no map
        cells = _hstack(
            [
                _mark_blank(_to_pil(t[i]), "map ~0 everywhere")
                if k >= first and bool(zero[k - first, i])
                else _to_pil(t[i])
                for k, t in enumerate(tiles)
            ]
        )
        parts.append(_hstack([label, cells]))
    return _finish(_vstack(parts, gap=_GAP, width=width))
