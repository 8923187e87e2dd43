"""The verdict picture: one image that tells the story of a run at a glance, sized for a dashboard thumbnail.

A coloured banner with the verdict sentence; below it the causal effect over epochs with its interval band, the
alert threshold and the alert epoch, and beside the chart one artifact probe: its input and newest map with the
artifact region outlined, the share of the map's positive relevance inside that region, and the evidence in words.
The chart is the evidence of every measured epoch (the interval as a band, as in CUSTOM SCALARS' Margin charts); the
report tabulates it. The callbacks log the picture under a tag that sorts first in TensorBoard (``XAI/0_verdict``).

TensorBoard shrinks a picture to its card unless "show actual image size" is ticked: the IMAGES dashboard to the card
width (:data:`IMAGES_CARD_WIDTH`), the TIME SERIES dashboard into a :data:`CARD_WIDTH` x :data:`CARD_HEIGHT` box. So
the picture is as wide as that box for its height (never taller, or TIME SERIES would shrink it further) and its type
is sized for the box, not for the picture: every font is at least :data:`MIN_TEXT_PX` x picture width /
:data:`CARD_WIDTH`, which shows it at :data:`MIN_TEXT_PX` pixels or more in both dashboards.
For a discovered ("unnamed") artifact a strip of its member thumbnails with its mask outlined, and the
mask alone, follows under the chart (:func:`candidate_strip`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from PIL import Image, ImageFont

from ._canvas import _GAP, _finish, _hstack, _to_pil, _vstack
from .charts import line_plot
from .colors import MASK_RGB, overlay, to_float01
from .grids import _outline, _paint, _resize_images, _resize_maps, _tile_hw
from .text import _font, _labels_row, _line_height, _text_block

__all__ = ["CARD_HEIGHT", "CARD_WIDTH", "IMAGES_CARD_WIDTH", "MIN_TEXT_PX", "CandidateStrip", "ProbeStrip",
           "VerdictFonts", "candidate_strip",
           "displayed_scale", "relevance_share", "verdict_fonts", "verdict_picture"]

#: the box (CSS px) TensorBoard's TIME SERIES dashboard fits a picture into, at a 1280 px wide window with its
#: settings pane open (the default): 319 x 215; a taller picture is shrunk to 215 px of height. Measured with headless
#: Chromium by ``python scripts/tensorboard_shots.py RUN_DIR`` (``shown`` x ``shownH`` of the verdict's <img>:
#: a 648 x 428 picture showed 319 x 215, a 648 x 1184 one 118 x 215).
CARD_WIDTH = 319
CARD_HEIGHT = 215
#: the IMAGES dashboard's card width at the same window: every picture is scaled to 350 px wide, any height
IMAGES_CARD_WIDTH = 350
#: the smallest type as shown in that card, in pixels
MIN_TEXT_PX = 12


@dataclass(frozen=True)
class VerdictFonts:
    """The font sizes (px, in the picture) of the verdict picture's parts."""

    headline: int
    body: int
    chart: int

    @property
    def smallest(self) -> int:
        return min(self.headline, self.body, self.chart)


def displayed_scale(width: int, height: int) -> float:
    """The factor TensorBoard shows a ``width`` x ``height`` picture at by default: the smaller of the TIME SERIES
    box's (:data:`CARD_WIDTH` x :data:`CARD_HEIGHT`) and the IMAGES card's (:data:`IMAGES_CARD_WIDTH`).

    >>> round(displayed_scale(648, 428), 3), round(displayed_scale(648, 1184), 3)
    (0.492, 0.182)
    """
    return min(CARD_WIDTH / width, CARD_HEIGHT / height, IMAGES_CARD_WIDTH / width)


def verdict_fonts(width: int, card_width: int = CARD_WIDTH, min_px: int = MIN_TEXT_PX) -> VerdictFonts:
    """Font sizes for a picture ``width`` pixels wide (its final width, margins included) shown ``card_width`` wide:
    the smallest type shows at ``min_px`` or more, the headline a tenth larger.

    >>> verdict_fonts(648)
    VerdictFonts(headline=28, body=25, chart=25)
    """
    scale = card_width / width
    body = math.ceil(min_px / scale)
    return VerdictFonts(headline=math.ceil(1.1 * body), body=body, chart=body)


def relevance_share(heat: torch.Tensor, mask: torch.Tensor) -> float:
    """The share of a map's positive relevance inside ``mask`` (resized to the map), NaN without positive relevance.

    >>> heat = torch.zeros(4, 4); heat[0, 0] = 3.0; heat[3, 3] = 1.0
    >>> mask = torch.zeros(4, 4, dtype=torch.bool); mask[0, 0] = True
    >>> relevance_share(heat, mask)
    0.75
    """
    h = heat.detach().float().cpu()
    if h.ndim != 2:
        raise ValueError(f"relevance_share needs one (h, w) map, got shape {tuple(h.shape)}")
    m = mask.detach().float().cpu()
    if m.shape != h.shape:
        m = F.interpolate(m[None, None], size=tuple(h.shape), mode="bilinear", align_corners=False)[0, 0]
    inside = m >= 0.5
    positive = h.clamp(min=0)
    total = float(positive.sum())
    return float(positive[inside].sum()) / total if total > 0 else math.nan


#: banner colours: an alert (light red), a rule met but no alert yet (amber), no alert (light green)
_ALERT_BG, _WATCH_BG, _CLEAR_BG = (255, 222, 218), (255, 238, 200), (222, 244, 224)


@dataclass
class CandidateStrip:
    """A discovered artifact's members and its mask, for :func:`verdict_picture` (an "unnamed artifact" verdict).

    Args:
        images01: ``(M, C, H, W)`` member images in ``[0, 1]`` (the first few members; all are in the report).
        mask: ``(H, W)`` bool: where the members' relevance concentrates (the template region the detector,
            the inserter and the remover use), outlined on every member and shown alone on the members' median.
        caption: what the strip is, e.g. ``"members of unnamed artifact 1 of class 'melanoma' (12 images)"``.
        ids: optional dataset id of each member, written under its thumbnail.
    """

    images01: torch.Tensor
    mask: torch.Tensor
    caption: str = ""
    ids: Sequence[int] | None = None

    def __post_init__(self) -> None:
        if self.images01.ndim != 4 or len(self.images01) == 0:
            raise ValueError(f"CandidateStrip needs (M, C, H, W) member images, got {tuple(self.images01.shape)}")
        if tuple(self.mask.shape) != tuple(self.images01.shape[-2:]):
            raise ValueError(
                f"CandidateStrip mask {tuple(self.mask.shape)} must match the images {tuple(self.images01.shape[-2:])}"
            )
        if self.ids is not None and len(self.ids) != len(self.images01):
            raise ValueError(f"CandidateStrip: {len(self.ids)} ids for {len(self.images01)} member images")


def candidate_strip(strip: CandidateStrip, width: int, tile: int = 82, font_size: int = 14) -> Image.Image:
    """One row: the caption, then as many member thumbnails as fit (mask outlined) and, last, the mask alone
    (tinted on the members' median image, i.e. the template the detector compares with).

    Example:
        >>> images = torch.rand(4, 3, 32, 32); mask = torch.zeros(32, 32, dtype=torch.bool); mask[:8, :8] = True
        >>> candidate_strip(CandidateStrip(images, mask, "members"), 480).width
        480
    """
    image = to_float01(strip.images01)
    hw = _tile_hw(image.shape[-2], image.shape[-1], tile)
    fit = max(1, (width + _GAP) // (hw[1] + _GAP) - 1)  # the last tile is the mask
    members = _resize_images(image[:fit], hw)
    border = _outline(strip.mask.detach().cpu()[None], hw, thickness=1)
    members = _paint(members, border.expand(len(members), -1, -1), MASK_RGB)
    median = _resize_images(image.median(0).values[None], hw)
    inside = F.interpolate(strip.mask.detach().float().cpu()[None, None], size=hw, mode="nearest")[0, 0] > 0
    tint = torch.tensor(MASK_RGB, dtype=torch.float32)[:, None, None] / 255
    mask_tile = torch.where(inside[None], 0.5 * median[0] + 0.5 * tint, 0.35 * median[0] + 0.65)
    font = _font(font_size)
    ids = list(strip.ids)[:fit] if strip.ids is not None else [None] * len(members)
    labels = [f"#{i}" if i is not None else f"member {k + 1}" for k, i in enumerate(ids)] + ["mask"]
    tiles = [_to_pil(m) for m in members] + [_to_pil(mask_tile)]
    parts: list[Image.Image] = []
    if strip.caption:
        parts.append(_text_block(strip.caption, width, font, fill=(30, 30, 30), max_lines=3))
    parts.append(_labels_row(labels, [hw[1]] * len(labels), font))
    parts.append(_hstack(tiles))
    return _vstack(parts, width=width)


@dataclass
class ProbeStrip:
    """One probe's explanation across epochs, for :func:`verdict_picture`.

    Args:
        image01: ``(C, H, W)`` the probe in ``[0, 1]``.
        maps: one ``(h, w)`` relevance map per entry of ``epochs``.
        epochs: the epoch of each map.
        mask: optional ``(H, W)`` bool artifact mask, outlined on the input and the map; the share of the map's
            positive relevance inside it is printed.
        caption: what the probe is, e.g. ``"val #12 (melanoma) with a ring; LRP for 'melanoma'"``.
    """

    image01: torch.Tensor
    maps: Sequence[torch.Tensor]
    epochs: Sequence[int]
    mask: torch.Tensor | None = None
    caption: str = ""

    def __post_init__(self) -> None:
        if len(self.maps) != len(self.epochs):
            raise ValueError(f"ProbeStrip needs one map per epoch: {len(self.maps)} maps, {len(self.epochs)} epochs")


def verdict_picture(
    headline: str,
    epochs: Sequence[int],
    effects: dict[str, Sequence[float]],
    *,
    detail: str = "",
    intervals: dict[str, tuple[Sequence[float], Sequence[float]]] | None = None,
    threshold: float | None = None,
    alert_epoch: int | None = None,
    probe: ProbeStrip | None = None,
    title: str = "effect beyond a sham edit, 95 % interval",
    ylabel: str = "effect on P(class)",
    width: int = 640,
    watch: bool = False,
    region: str = "artifact",
    candidate: CandidateStrip | None = None,
) -> torch.Tensor:
    """The verdict of a run as one uint8 ``(3, H, W)`` picture, readable in a TensorBoard card at its default size.

    Layout: a banner (red with an alert, amber while the rule is met but patience runs, green without) holding the
    ``headline``; below it, the effect chart over epochs done (every measured epoch, its interval as a band, the
    threshold and the alert epoch) and beside it the probe's input and newest map with the artifact region outlined,
    the share of the map's positive relevance inside it, the strongest newest effect with its interval and the
    ``detail``, as far as they fit. The picture is as wide as TIME SERIES' card box for its height (landscape,
    :data:`CARD_WIDTH` : :data:`CARD_HEIGHT`) and its type is sized by :func:`verdict_fonts` so that it shows at
    :data:`MIN_TEXT_PX` or more in TIME SERIES and IMAGES alike.

    Args:
        headline: the verdict, e.g. ``"SHORTCUT after 2 epochs: the model relies on the ring for 'melanoma'"``.
        epochs: x values of ``effects`` (measured epochs).
        effects: ``{test name: effect per epoch}`` (NaN where a test did not run).
        detail: the evidence behind the headline, in smaller type.
        intervals: ``{test name: (low per epoch, high per epoch)}``, drawn as bands.
        threshold: the alert threshold, drawn as a dashed line.
        alert_epoch: the epoch the alert fired (a red marker on the chart and the probe strip); None = no alert,
            which also turns the banner green instead of red.
        probe: one probe's maps across epochs (:class:`ProbeStrip`); the newest is shown.
        title, ylabel: the chart's title and y label.
        width: picture width in pixels (before the 4-pixel margin); the fonts grow with it.
        watch: the rule is met but the alert has not fired yet (patience): an amber banner instead of green.
        region: what the mask outlines, for the labels (e.g. ``"ring"``).
        candidate: for a discovered ("unnamed") artifact, its member thumbnails and mask (:class:`CandidateStrip`),
            drawn in a row under the chart (:func:`candidate_strip`).

    Example:
        >>> img = verdict_picture("no alert", [0, 1, 2], {"insertion": [0.0, 0.1, 0.05]}, threshold=0.15)
        >>> img.dtype, img.shape[0], img.shape[2]
        (torch.uint8, 3, 648)
    """
    if width < 480:
        raise ValueError(f"verdict_picture needs at least 480 pixels of width, got {width}")
    full_w = width + 2 * 4  # the final picture has a 4-pixel margin on each side
    fonts = verdict_fonts(full_w)
    # never taller than TIME SERIES' box for this width: a taller picture would be shrunk below the type's size
    full_h = int(full_w * CARD_HEIGHT / CARD_WIDTH)
    alert = alert_epoch is not None
    background = _ALERT_BG if alert else _WATCH_BG if watch else _CLEAR_BG
    headline_font = _font(fonts.headline)
    banner = _text_block(headline, width, headline_font, fill=(0, 0, 0), background=background, pad=6, max_lines=2)
    body_h = full_h - 2 * 4 - banner.height - 3 * _GAP
    has_probe = probe is not None and len(probe.maps) > 0
    side_w = int(0.37 * width) if has_probe else 0
    row: list[Image.Image] = []
    if effects and len(epochs):
        # x = epochs done (epoch e is the model after e + 1 epochs): the step of TensorBoard's slider and charts
        chart = line_plot(
            effects,
            x=[e + 1 for e in epochs],
            bands=intervals,
            hlines=[(threshold, f"threshold {threshold:g}")] if threshold is not None else (),
            vlines=[(alert_epoch + 1, "alert")] if alert else (),
            xlabel="epochs done",
            ylabel=f"{ylabel}, {title.split(', ')[-1].replace('interval', 'CI')}" if ", " in title else ylabel,
            width=width - side_w - (2 * _GAP if has_probe else 0),
            height=max(body_h, 8 * fonts.chart),
            font_size=fonts.chart + 1,
        )
        row.append(_to_pil(chart))
    sure = _strongest(epochs, effects, intervals or {}, title)
    if has_probe:
        row.append(_side(probe, sure, detail, side_w, max(body_h, 8 * fonts.chart), fonts, region))
    elif detail:
        row.append(_text_block(detail, width - sum(r.width for r in row), _font(fonts.body), fill=(30, 30, 30)))
    parts: list[Image.Image] = [banner]
    if row:
        parts.append(_hstack(row, gap=2 * _GAP))
    elif detail:
        parts.append(_text_block(detail, width, _font(fonts.body), fill=(30, 30, 30)))
    if candidate is not None:
        # the verdict's type and thumbnails as large as its probe tiles, so the strip reads at card size too
        parts.append(candidate_strip(candidate, width, tile=2 * fonts.body * 3, font_size=fonts.body))
    return _finish(_vstack(parts, gap=3 * _GAP, width=width))


def _strongest(
    epochs: Sequence[int], effects: dict[str, Sequence[float]], intervals: dict[str, tuple[Sequence[float],
    Sequence[float]]], title: str,
) -> str:
    """How sure, in one phrase: the newest measurement of the test whose interval sits highest, e.g.
    ``"insertion: 0.95 [0.94, 0.96]"`` (the interval of the chart's label); empty without one."""
    best = None
    for name, values in effects.items():
        for i in range(len(values) - 1, -1, -1):
            value = float(values[i])
            if not math.isfinite(value):
                continue
            lo_hi = intervals.get(name)
            lo = float(lo_hi[0][i]) if lo_hi is not None else math.nan
            hi = float(lo_hi[1][i]) if lo_hi is not None else math.nan
            key = lo if math.isfinite(lo) else value
            if best is None or key > best[0]:
                best = (key, name, value, lo, hi, int(epochs[i]) + 1)
            break
    if best is None:
        return ""
    _, name, value, lo, hi, _ = best
    ci = f" [{lo:.2f}, {hi:.2f}]" if math.isfinite(lo) and math.isfinite(hi) else ""
    return f"{name}: {value:.2f}{ci}"


def _side(
    probe: ProbeStrip, sure: str, detail: str, width: int, height: int, fonts: VerdictFonts, region: str
) -> Image.Image:
    """Beside the chart: the probe's input and newest map with the artifact region outlined (green), the share of
    the map's positive relevance inside the region, the strongest evidence, then the detail, cut to the height."""
    font = _font(fonts.body)
    tile = (width - _GAP) // 2
    image = to_float01(probe.image01)
    hw = (tile, tile)
    img = _resize_images(image, hw)
    newest = probe.maps[-1].detach().float().cpu()
    over = overlay(img, _resize_maps(newest[None], hw))
    words = f"{int(probe.epochs[-1]) + 1} epochs done, each map on its own scale"
    if probe.mask is not None:
        border = _outline(probe.mask.detach().cpu()[None], hw, thickness=max(1, tile // 60))
        img, over = _paint(img, border, MASK_RGB), _paint(over, border, MASK_RGB)
        share = relevance_share(newest, probe.mask)
        area = float(probe.mask.float().mean())
        words = (
            f"{'no + relevance' if math.isnan(share) else f'{100 * share:.0f} % of + relevance'} in the {region} "
            f"({100 * area:.0f} % of the image)"
        )
    labels = _labels_row_multi(["input", f"{int(probe.epochs[-1]) + 1} done"], [tile, tile], font)
    parts = [labels, _hstack([_to_pil(img[0]), _to_pil(over[0])])]
    used = sum(p.height for p in parts)
    lh = _line_height(font)
    lines_left = max(1, (height - used - 4) // lh)
    texts = ((words, (0, 0, 0)), (sure, (150, 0, 0)), (detail, (60, 60, 60)), (probe.caption, (90, 90, 90)))
    for text, fill in texts:
        if text and lines_left > 0:
            block = _text_block(text, width, font, fill=fill, max_lines=min(3, lines_left))
            parts.append(block)
            lines_left -= max(1, (block.height - 4) // lh)
    return _vstack(parts, width=width)


def _labels_row_multi(labels: Sequence[str], widths: Sequence[int], font: ImageFont.FreeTypeFont) -> Image.Image:
    """Centred labels, one block per tile, top-aligned; a newline in a label starts its second line."""
    blocks = [
        _vstack([_text_block(line, w, font, max_lines=1, center=True) for line in text.split("\n")], width=w)
        for text, w in zip(labels, widths)
    ]
    height = max(b.height for b in blocks)
    padded = []
    for b in blocks:
        canvas = Image.new("RGB", (b.width, height), (255, 255, 255))
        canvas.paste(b, (0, 0))
        padded.append(canvas)
    return _hstack(padded)
