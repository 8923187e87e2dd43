"""The verdict picture: one image that tells the story of a run at a glance, sized for a dashboard thumbnail.

A coloured banner with the verdict sentence, the causal effect per epoch with its interval, the alert threshold and
the alert epoch, the same evidence as a small table (effect and interval per measured epoch), and one artifact
probe's explanation across epochs: its input and maps with the artifact region outlined, each map labelled with the
share of its positive relevance inside that region. The callbacks log it under a tag that sorts first in TensorBoard
(``XAI/0_verdict``).

TensorBoard shrinks a picture to its card (unless "show actual image size" is ticked), so the type is sized for the
card, not for the picture: every font is at least :data:`MIN_TEXT_PX` x picture width / :data:`CARD_WIDTH`, which
shows it at :data:`MIN_TEXT_PX` pixels or more in the card.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import math

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from ._canvas import _GAP, _finish, _hstack, _to_pil, _vstack
from .charts import line_plot
from .colors import MASK_RGB, overlay, to_float01
from .grids import _outline, _paint, _resize_images, _resize_maps, _tile_hw
from .text import _font, _line_height, _text_block, _text_width

__all__ = ["CARD_WIDTH", "MIN_TEXT_PX", "ProbeStrip", "VerdictFonts", "relevance_share", "verdict_fonts",
           "verdict_picture"]

#: the width (CSS px) TensorBoard shows a picture at in its cards, at a 1280 px wide window: TIME SERIES cards 319 px
#: (the settings pane open, its default), IMAGES cards 350 px; the smaller one. Measured with headless Chromium by
#: ``python scripts/tensorboard_shots.py RUN_DIR`` (the ``shown`` width of the verdict's <img>) on TensorBoard 2.x.
CARD_WIDTH = 319
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


def verdict_fonts(width: int, card_width: int = CARD_WIDTH, min_px: int = MIN_TEXT_PX) -> VerdictFonts:
    """Font sizes for a picture ``width`` pixels wide (its final width, margins included) shown ``card_width`` wide:
    the smallest type shows at ``min_px`` or more, the headline a quarter larger.

    >>> verdict_fonts(648)
    VerdictFonts(headline=32, body=25, chart=25)
    """
    scale = card_width / width
    body = math.ceil(min_px / scale)
    return VerdictFonts(headline=math.ceil(1.25 * body), body=body, chart=body)


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
class ProbeStrip:
    """One probe's explanation across epochs, for :func:`verdict_picture`.

    Args:
        image01: ``(C, H, W)`` the probe in ``[0, 1]``.
        maps: one ``(h, w)`` relevance map per entry of ``epochs``.
        epochs: the epoch of each map.
        mask: optional ``(H, W)`` bool artifact mask, outlined on the input and every overlay.
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


def _pick(epochs: Sequence[int], keep: int, must: Sequence[int]) -> list[int]:
    """Indices of at most ``keep`` epochs, evenly spread, always with the first, the last and ``must``."""
    n = len(epochs)
    if n <= keep:
        return list(range(n))
    chosen = {0, n - 1} | {i for i, e in enumerate(epochs) if e in set(must)}
    step = (n - 1) / max(1, keep - 1)
    for k in range(keep):
        if len(chosen) >= keep:
            break
        chosen.add(round(k * step))
    return sorted(chosen)[:keep] if len(chosen) > keep else sorted(chosen)


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
    max_frames: int = 3,
    watch: bool = False,
    max_rows: int = 6,
    region: str = "artifact",
) -> torch.Tensor:
    """The verdict of a run as one uint8 ``(3, H, W)`` picture, readable in a TensorBoard card at its default size.

    Layout, top to bottom, each part as wide as the picture: a banner (red with an alert, amber while the rule is met
    but patience runs, green without) holding the ``headline`` and the ``detail``; the effect chart over epochs done
    with its interval bands, the threshold and the alert epoch; a table of the same evidence, one row per measured
    epoch (at most ``max_rows``: first, alert and last always); the probe's input and maps with the artifact region
    outlined and the share of positive relevance inside it. Type is sized by :func:`verdict_fonts` for the card
    width TensorBoard shows the picture at (:data:`CARD_WIDTH`).

    Args:
        headline: the verdict, e.g. ``"SHORTCUT since epoch 1: the model relies on the ring for 'melanoma'"``.
        epochs: x values of ``effects`` (measured epochs).
        effects: ``{test name: effect per epoch}`` (NaN where a test did not run).
        detail: the evidence behind the headline, in smaller type.
        intervals: ``{test name: (low per epoch, high per epoch)}``, drawn as bands.
        threshold: the alert threshold, drawn as a dashed line.
        alert_epoch: the epoch the alert fired (a red marker on the chart and the probe strip); None = no alert,
            which also turns the banner green instead of red.
        probe: one probe's maps across epochs (:class:`ProbeStrip`); at most ``max_frames`` evenly spread epochs,
            always the first, the last and the alert epoch.
        title, ylabel: the chart's title and y label.
        width: picture width in pixels (before the 4-pixel margin); the fonts grow with it.
        max_frames: most epochs shown for the probe.
        watch: the rule is met but the alert has not fired yet (patience): an amber banner instead of green.
        max_rows: most epochs in the evidence table.
        region: what the mask outlines, for the labels (e.g. ``"ring"``).

    Example:
        >>> img = verdict_picture("no alert", [0, 1, 2], {"insertion": [0.0, 0.1, 0.05]}, threshold=0.15)
        >>> img.dtype, img.shape[0], img.shape[2]
        (torch.uint8, 3, 648)
    """
    if width < 480:
        raise ValueError(f"verdict_picture needs at least 480 pixels of width, got {width}")
    fonts = verdict_fonts(width + 2 * 4)  # the final picture has a 4-pixel margin on each side
    alert = alert_epoch is not None
    background = _ALERT_BG if alert else _WATCH_BG if watch else _CLEAR_BG
    banner = [_text_block(headline, width, _font(fonts.headline), fill=(0, 0, 0), background=background, pad=6)]
    if detail:
        banner.append(_text_block(detail, width, _font(fonts.body), fill=(30, 30, 30), background=background, pad=6))
    parts: list[Image.Image] = [_vstack(banner, width=width)]
    if effects and len(epochs):
        # x = epochs done (epoch e is the model after e + 1 epochs): the step of TensorBoard's slider and charts
        chart = line_plot(
            effects,
            x=[e + 1 for e in epochs],
            bands=intervals,
            hlines=[(threshold, f"threshold {threshold:g}")] if threshold is not None else (),
            vlines=[(alert_epoch + 1, f"alert (epoch {alert_epoch})")] if alert else (),
            title=title,
            xlabel="x: epochs done (epoch e = e + 1 done)",
            ylabel=ylabel,
            width=width,
            height=max(300, 16 * fonts.chart),
            font_size=fonts.chart + 1,
        )
        parts.append(_to_pil(chart))
        parts.append(_evidence_table(epochs, effects, intervals or {}, threshold, alert_epoch, width, fonts, max_rows))
    if probe is not None and len(probe.maps) > 0:
        parts.append(_panel(probe, alert_epoch, max_frames, width, fonts, region))
    return _finish(_vstack(parts, gap=3 * _GAP, width=width))


def _cell(value: float, low: float, high: float) -> str:
    if not math.isfinite(value):
        return "–"
    if math.isfinite(low) and math.isfinite(high):
        return f"{value:.2f} [{low:.2f}, {high:.2f}]"
    return f"{value:.2f}"


def _evidence_table(
    epochs: Sequence[int],
    effects: dict[str, Sequence[float]],
    intervals: dict[str, tuple[Sequence[float], Sequence[float]]],
    threshold: float | None,
    alert_epoch: int | None,
    width: int,
    fonts: VerdictFonts,
    max_rows: int,
) -> Image.Image:
    """The evidence per measured epoch as a table: epochs done, each test's effect [interval]; the alert row in red,
    rows whose lower bound clears the threshold marked."""
    font = _font(fonts.body)
    lh = _line_height(font)
    keep = _pick(list(epochs), max_rows, [alert_epoch] if alert_epoch is not None else [])
    tests = list(effects)
    header = ["done"] + [f"{t} [CI]" for t in tests] + ([f"CI > {threshold:g}"] if threshold is not None else [])
    rows = []
    for i in keep:
        cells = [str(int(epochs[i]) + 1)]
        clears = False
        for t in tests:
            lo_hi = intervals.get(t)
            lo = float(lo_hi[0][i]) if lo_hi is not None else math.nan
            hi = float(lo_hi[1][i]) if lo_hi is not None else math.nan
            cells.append(_cell(float(effects[t][i]), lo, hi))
            clears = clears or (threshold is not None and math.isfinite(lo) and lo > threshold)
        if threshold is not None:
            cells.append("yes" if clears else "no")
        rows.append((cells, epochs[i] == alert_epoch))
    widths = [max(_text_width(r[j], font) for r in [header] + [c for c, _ in rows]) for j in range(len(header))]
    spare = max(0, width - sum(widths)) // max(1, len(header))
    col_x = [0]
    for w in widths[:-1]:
        col_x.append(col_x[-1] + w + spare)
    img = Image.new("RGB", (width, (len(rows) + 1) * lh + 4), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    for j, text in enumerate(header):
        draw.text((col_x[j] + 2, 0), text, fill=(60, 60, 60), font=font)
    draw.line((0, lh, width, lh), fill=(170, 170, 170))
    for k, (cells, is_alert) in enumerate(rows):
        y = (k + 1) * lh + 2
        if is_alert:
            draw.rectangle((0, y - 1, width - 1, y + lh - 2), fill=_ALERT_BG)
        for j, text in enumerate(cells):
            draw.text((col_x[j] + 2, y), text, fill=(200, 0, 0) if is_alert else (20, 20, 20), font=font)
    return img


def _panel(
    probe: ProbeStrip, alert_epoch: int | None, max_frames: int, width: int, fonts: VerdictFonts, region: str
) -> Image.Image:
    """The probe panel: its caption, then input (artifact region outlined) and its maps over epochs, each labelled
    with the epochs done and the share of its positive relevance inside the region."""
    keep = _pick(list(probe.epochs), max_frames, [alert_epoch] if alert_epoch is not None else [])
    per_row = min(4, len(keep) + 1)
    tile = (width - (per_row - 1) * _GAP) // per_row
    image = to_float01(probe.image01)
    hw = _tile_hw(image.shape[-2], image.shape[-1], tile)
    hw = (hw[0], min(hw[1], tile))
    img = _resize_images(image, hw)
    maps = torch.stack([_resize_maps(probe.maps[i].detach().float().cpu()[None], hw)[0] for i in keep])
    overs = overlay(img.expand(len(keep), -1, -1, -1), maps)
    font = _font(fonts.body)
    shares = [math.nan] * len(keep)
    if probe.mask is not None:
        border = _outline(probe.mask.detach().cpu()[None], hw, thickness=max(1, tile // 80))
        img = _paint(img, border, MASK_RGB)
        overs = _paint(overs, border.expand(len(keep), -1, -1), MASK_RGB)
        shares = [relevance_share(probe.maps[i], probe.mask) for i in keep]
    labels = ["input"]
    for i, share in zip(keep, shares):
        done = f"{int(probe.epochs[i]) + 1} {'alert' if probe.epochs[i] == alert_epoch else 'done'}"
        labels.append(done if math.isnan(share) else f"{done}\n{100 * share:.0f} % in {region}")
    tiles = [_to_pil(img[0]), *[_to_pil(o) for o in overs]]
    parts: list[Image.Image] = []
    caption = probe.caption
    if probe.mask is not None:
        area = float(probe.mask.float().mean())
        caption += (
            f"{'. ' if caption else ''}green: the {region} ({100 * area:.0f} % of the image); % = share of the map's "
            f"positive relevance inside it. Each map on its own scale"
        )
    if caption:
        parts.append(_text_block(caption, width, font, fill=(30, 30, 30), max_lines=4))
    for k in range(0, len(tiles), per_row):
        chunk = labels[k : k + per_row]
        parts.append(_labels_row_multi(chunk, [hw[1]] * len(chunk), font))
        parts.append(_hstack(tiles[k : k + per_row]))
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
