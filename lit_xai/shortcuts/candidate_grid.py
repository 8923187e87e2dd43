"""A picture of discovered candidates that a person can judge in seconds.

One block per candidate: a caption (class, rank, score against the threshold, size and share of the class, the
score's terms) over a row of members, each shown as the image above its relevance overlay, and, at the end of the
row, the members' mean relevance next to the rest of the class's (where the group looks that the others do not).
Colours and the legend come from :mod:`lit_xai.visualization` (public names only).

Example:
    >>> import torch
    >>> from lit_xai.shortcuts.discovery import Candidate
    >>> cand = Candidate(class_index=1, members=[7, 8], score=2.5, size=2, fraction=0.5, rows=[0, 1])
    >>> img = render_candidates([cand], torch.rand(4, 3, 32, 32), torch.randn(4, 32, 32), labels=[1, 1, 1, 0])
    >>> img.dtype, img.ndim, img.shape[2]
    (dtype('uint8'), 3, 3)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from ..visualization import caption_lines, channel_note, heatmap_to_rgb, legend_strip, overlay, to_float01
from .discovery import SUSPICIOUS_THRESHOLD, Candidate
from .spray import spray_features

__all__ = ["render_candidates"]

_BG = (255, 255, 255)
_INK = (20, 20, 20)
_MUTED = (90, 90, 90)
_ALERT = (190, 20, 20)
_GAP = 2


def _pil(tiles: torch.Tensor) -> list[Image.Image]:
    """``(N, 3, h, w)`` float [0, 1] -> PIL images."""
    arr = (tiles.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return [Image.fromarray(a) for a in arr]


def _text(lines: Sequence[str], width: int, font: ImageFont.ImageFont, fill: tuple[int, int, int]) -> Image.Image:
    lh = (font.getbbox("Ag")[3] - font.getbbox("Ag")[1]) + 3
    block = Image.new("RGB", (width, len(lines) * lh + 4), _BG)
    draw = ImageDraw.Draw(block)
    for i, line in enumerate(lines):
        draw.text((2, 2 + i * lh), line, fill=fill, font=font)
    return block


def render_candidates(
    candidates: Sequence[Candidate],
    images01: torch.Tensor,
    heatmaps: torch.Tensor,
    *,
    labels: torch.Tensor | Sequence[int] | None = None,
    class_names: Sequence[str] | None = None,
    per_candidate: int = 6,
    tile: int = 64,
    threshold: float = SUSPICIOUS_THRESHOLD,
    method: str = "LRP",
) -> np.ndarray:
    """Render candidates as an RGB uint8 image ``(H, W, 3)``: per candidate a caption and a row of members.

    Args:
        candidates: from :func:`lit_xai.shortcuts.discover_candidates` (their ``rows`` index the arrays below).
        images01: ``(N, 1|3, H, W)`` images in [0, 1] (or uint8), the rows given to the discovery.
        heatmaps: ``(N, H, W)`` the maps that were clustered.
        labels: ``(N,)`` classes: with them the last tiles compare the members' mean map with the rest of the class.
        class_names: names for captions (default ``"class <i>"``).
        per_candidate: members shown per candidate (the first ones by row; all are in ``candidate.members``).
        tile: tile side in pixels.
        threshold: the score threshold named in the captions.
        method: what made the maps, for the legend.
    """
    if not candidates:
        raise ValueError("no candidates to render; discover_candidates returned none (too few maps per class?)")
    if tile < 16:
        raise ValueError(f"tile must be at least 16 pixels, got {tile}")
    img = to_float01(images01)
    heat = heatmaps.detach().float().cpu()
    if heat.ndim == 4:
        heat = heat.sum(1)
    if heat.shape[0] != img.shape[0]:
        raise ValueError(f"got {img.shape[0]} images but {heat.shape[0]} heatmaps")
    lab = None if labels is None else torch.as_tensor(np.asarray(labels)).long()
    pooled = torch.from_numpy(spray_features(heat, (16, 16))).float().view(-1, 16, 16)
    font = ImageFont.load_default()
    cols = per_candidate + (2 if lab is not None else 1)
    width = cols * tile + (cols - 1) * _GAP
    note = (
        "rows: candidate groups (explanations of one class clustered without labels); tiles: member image above its "
        "relevance (per-map scale); last tiles: the group's mean |R| (16x16 cells, each map summing to 1) vs the "
        "rest of the class's, shared scale"
    ) + (f"; {channel_note(int(images01.shape[1]))}" if channel_note(int(images01.shape[1])) else "")
    parts: list[Image.Image] = [Image.fromarray(legend_strip(width, method, note=note).permute(1, 2, 0).numpy())]
    for cand in candidates:
        cls = class_names[cand.class_index] if class_names else f"class {cand.class_index}"
        verdict = "SUSPICIOUS" if cand.score >= threshold else "below threshold"
        t = cand.terms
        head = (
            f"{cls} | candidate {cand.rank + 1} | score {cand.score:.2f} ({verdict}, threshold {threshold:g}) | "
            f"{cand.size} images ({100 * cand.fraction:.0f} % of the class)"
        )
        detail = " | ".join(
            f"{k} {t[k]:.2f}" for k in ("distinct", "specificity", "location", "tightness", "outside_roi") if k in t
        )
        lines = caption_lines(head, width - 4, font) + caption_lines(detail, width - 4, font)
        parts.append(_text(lines, width, font, _ALERT if cand.score >= threshold else _INK))
        rows = torch.as_tensor(cand.rows[:per_candidate], dtype=torch.long)
        ims = F.interpolate(img[rows], size=(tile, tile), mode="bilinear", align_corners=False, antialias=True)
        maps = F.interpolate(heat[rows][:, None], size=(tile, tile), mode="area")[:, 0]
        tops, bottoms = _pil(ims), _pil(overlay(ims, maps))
        # where the group looks vs the rest of the class: pooled, normalised |R| (what was clustered), one scale
        member = torch.zeros(len(heat), dtype=torch.bool)
        member[torch.as_tensor(cand.rows, dtype=torch.long)] = True
        means = [pooled[member].mean(0)]
        if lab is not None:
            rest = (~member) & (lab == cand.class_index)
            means.append(pooled[rest].mean(0) if rest.any() else torch.zeros_like(means[0]))
        big = F.interpolate(torch.stack(means)[:, None], size=(tile, tile), mode="nearest")[:, 0]
        extra_top = _pil(heatmap_to_rgb(big, percentile=100.0, per_image=False))
        row = Image.new("RGB", (width, 2 * tile + _GAP + 14), _BG)
        for j, (a, b) in enumerate(zip(tops, bottoms)):
            x0 = j * (tile + _GAP)
            row.paste(a, (x0, 0))
            row.paste(b, (x0, tile + _GAP))
            ImageDraw.Draw(row).text((x0 + 1, 2 * tile + _GAP), f"#{cand.members[j]}", fill=_MUTED, font=font)
        for j, (tile_img, name) in enumerate(zip(extra_top, ("group mean", "rest mean"))):
            x0 = (per_candidate + j) * (tile + _GAP)
            row.paste(tile_img, (x0, (tile + _GAP) // 2))
            ImageDraw.Draw(row).text((x0 + 1, 2 * tile + _GAP), name, fill=_MUTED, font=font)
        parts.append(row)
        sep = Image.new("RGB", (width, 5), _BG)
        ImageDraw.Draw(sep).line((0, 2, width, 2), fill=(205, 205, 205))
        parts.append(sep)
    margin = 4
    canvas = Image.new("RGB", (width + 2 * margin, sum(p.height for p in parts) + 2 * margin), _BG)
    y = margin
    for p in parts:
        canvas.paste(p, (margin, y))
        y += p.height
    return np.asarray(canvas).copy()
