"""The verdict picture: one image that tells the story of a run at a glance, sized for a dashboard thumbnail.

A coloured banner with the verdict sentence, the causal effect per epoch with its interval, the alert threshold and
the alert epoch, and one artifact probe's explanation across epochs (its input with the artifact outlined); for a
discovered ("unnamed") artifact, a strip of its member thumbnails with its mask outlined, and the mask alone. The
callbacks log it under a tag that sorts first in TensorBoard (``XAI/0_verdict``); every part is drawn with large
type so it stays readable when the dashboard shrinks the picture to a card about 350 pixels wide.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from PIL import Image

from ._canvas import _GAP, _finish, _hstack, _to_pil, _vstack
from .charts import line_plot
from .colors import MASK_RGB, overlay, to_float01
from .grids import _outline, _paint, _resize_images, _resize_maps, _tile_hw
from .text import _font, _labels_row, _text_block

__all__ = ["CandidateStrip", "ProbeStrip", "candidate_strip", "verdict_picture"]

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


def candidate_strip(strip: CandidateStrip, width: int, tile: int = 82) -> Image.Image:
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
    font = _font(14)
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
    max_frames: int = 5,
    watch: bool = False,
    candidate: CandidateStrip | None = None,
) -> torch.Tensor:
    """The verdict of a run as one landscape uint8 ``(3, H, W)`` picture, readable at dashboard thumbnail size.

    Layout: a banner (red with an alert, green without) holding the ``headline`` in large type and the ``detail``
    under it; below, the effect chart on the left and the probe's maps across epochs on the right. TensorBoard's
    TIME SERIES cards fit pictures into about 370 x 230 pixels, so the picture is about 1.6 times as wide as high
    and its smallest type is 14 px at the default ``width``.

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
        width: picture width in pixels.
        max_frames: most epochs shown for the probe.
        watch: the rule is met but the alert has not fired yet (patience): an amber banner instead of green.
        candidate: for a discovered ("unnamed") artifact, its member thumbnails and mask (:class:`CandidateStrip`),
            drawn in a row under the chart (:func:`candidate_strip`).

    Example:
        >>> img = verdict_picture("no alert", [0, 1, 2], {"insertion": [0.0, 0.1, 0.05]}, threshold=0.15)
        >>> img.dtype, img.shape[0], img.shape[2]
        (torch.uint8, 3, 648)
    """
    if width < 480:
        raise ValueError(f"verdict_picture needs at least 480 pixels of width, got {width}")
    alert = alert_epoch is not None
    background = _ALERT_BG if alert else _WATCH_BG if watch else _CLEAR_BG
    banner = [_text_block(headline, width, _font(24), fill=(0, 0, 0), background=background, pad=6)]
    if detail:
        banner.append(_text_block(detail, width, _font(16), fill=(30, 30, 30), background=background, pad=6))
    parts: list[Image.Image] = [_vstack(banner, width=width)]
    has_probe = probe is not None and len(probe.maps) > 0
    chart_w = width - (_PANEL_W + 2 * _GAP if has_probe else 0)
    row: list[Image.Image] = []
    if effects and len(epochs):
        # x = epochs done (epoch e is the model after e + 1 epochs): the step of TensorBoard's slider and charts
        chart = line_plot(
            effects,
            x=[e + 1 for e in epochs],
            bands=intervals,
            hlines=[(threshold, f"threshold {threshold:g}")] if threshold is not None else (),
            vlines=[(alert_epoch + 1, f"alert: epoch {alert_epoch}")] if alert else (),
            title=title,
            xlabel="epochs done (= TensorBoard step; epoch e is e + 1 done)",
            ylabel=ylabel,
            width=chart_w,
            height=290,
            font_size=15,
        )
        row.append(_to_pil(chart))
    if has_probe:
        row.append(_panel(probe, alert_epoch, max_frames))
    if row:
        parts.append(_hstack(row, gap=2 * _GAP))
    if candidate is not None:
        parts.append(candidate_strip(candidate, width))
    return _finish(_vstack(parts, gap=_GAP, width=width))


#: width of the probe panel beside the chart: 3 tiles of 82 px
_PANEL_W = 3 * 82 + 2 * _GAP


def _panel(probe: ProbeStrip, alert_epoch: int | None, max_frames: int) -> Image.Image:
    """The probe panel: its caption, then input (artifact outlined) and its maps over epochs, three per row."""
    keep = _pick(list(probe.epochs), max_frames, [alert_epoch] if alert_epoch is not None else [])
    image = to_float01(probe.image01)
    hw = _tile_hw(image.shape[-2], image.shape[-1], 82)
    hw = (hw[0], min(hw[1], 82))
    img = _resize_images(image, hw)
    maps = torch.stack([_resize_maps(probe.maps[i].detach().float().cpu()[None], hw)[0] for i in keep])
    overs = overlay(img.expand(len(keep), -1, -1, -1), maps)
    if probe.mask is not None:
        border = _outline(probe.mask.detach().cpu()[None], hw, thickness=1)
        img = _paint(img, border, MASK_RGB)
        overs = _paint(overs, border.expand(len(keep), -1, -1), MASK_RGB)
    font = _font(14)
    labels = ["input"] + [f"ep {probe.epochs[i]}" + (" alert" if probe.epochs[i] == alert_epoch else "") for i in keep]
    tiles = [_to_pil(img[0]), *[_to_pil(o) for o in overs]]
    parts: list[Image.Image] = []
    if probe.caption:
        parts.append(_text_block(probe.caption, _PANEL_W, font, fill=(30, 30, 30), max_lines=3))
    for k in range(0, len(tiles), 3):
        parts.append(_labels_row(labels[k : k + 3], [hw[1]] * len(labels[k : k + 3]), font))
        parts.append(_hstack(tiles[k : k + 3]))
    return _vstack(parts, width=_PANEL_W)
