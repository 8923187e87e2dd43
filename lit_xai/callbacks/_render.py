"""Grid layouts the callbacks log to TensorBoard (uint8 CHW images)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from ..visualization import heatmap_to_rgb, overlay

__all__ = ["explanation_grid", "timeline_grid", "concept_grid", "caption_strip", "to_uint8"]

CAPTION_H = 14


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Float [0, 1] -> uint8 (TensorBoard skips its own rescaling for uint8)."""
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def _resize(x: torch.Tensor, tile: int) -> torch.Tensor:
    if x.shape[-1] == tile and x.shape[-2] == tile:
        return x
    return F.interpolate(x, size=(tile, tile), mode="bilinear", align_corners=False).clamp(0, 1)


def caption_strip(text: str, width: int, height: int = CAPTION_H) -> torch.Tensor:
    """A dark strip ``(3, height, width)`` float in [0, 1] with ``text`` drawn in PIL's default font."""
    strip = Image.new("RGB", (width, height), (20, 20, 20))
    ImageDraw.Draw(strip).text((3, 1), text, fill=(235, 235, 235))
    return torch.from_numpy(np.asarray(strip).copy()).permute(2, 0, 1).float() / 255.0


def _row(tiles: Sequence[torch.Tensor], caption: str, pad: int = 2) -> torch.Tensor:
    body = torch.cat([F.pad(t, (pad, pad, pad, pad), value=1.0) for t in tiles], dim=2)
    return torch.cat([caption_strip(caption, body.shape[2]), body], dim=1)


def explanation_grid(
    images01: torch.Tensor, heatmaps: torch.Tensor, captions: Sequence[str], tile: int = 112, alpha: float = 0.6
) -> torch.Tensor:
    """Rows ``input | heatmap | overlay`` with a caption strip per probe; returns uint8 ``(3, H, W)``."""
    imgs = _resize(images01.float().cpu(), tile)
    heat = F.interpolate(heatmaps.float().cpu()[:, None], size=(tile, tile), mode="bilinear", align_corners=False)[:, 0]
    rgb = heatmap_to_rgb(heat)
    over = overlay(imgs, heat, alpha=alpha)
    rows = [_row([imgs[i], rgb[i], over[i]], captions[i]) for i in range(len(imgs))]
    return to_uint8(torch.cat(rows, dim=1))


def timeline_grid(
    frames: Sequence[torch.Tensor], labels: Sequence[str], row_captions: Sequence[str], tile: int = 64
) -> torch.Tensor:
    """Probes as rows, epochs as columns: ``frames[t]`` is ``(N, h, w)`` heatmaps of epoch ``labels[t]``."""
    columns = []
    for frame, label in zip(frames, labels):
        heat = F.interpolate(frame.float()[:, None], size=(tile, tile), mode="bilinear", align_corners=False)[:, 0]
        rgb = F.pad(heatmap_to_rgb(heat), (1, 1, 1, 1), value=1.0)
        body = torch.cat(list(rgb), dim=1)
        columns.append(torch.cat([caption_strip(label, body.shape[2]), body], dim=1))
    grid = torch.cat(columns, dim=2)
    left = torch.cat([caption_strip("", 44)] + [caption_strip(c, 44, tile + 2) for c in row_captions], dim=1)
    return to_uint8(torch.cat([left, grid], dim=2))


def concept_grid(
    images01: torch.Tensor,
    concept_maps: torch.Tensor,
    channels: torch.Tensor,
    captions: Sequence[str],
    references: dict[int, torch.Tensor] | None = None,
    tile: int = 80,
    alpha: float = 0.6,
) -> torch.Tensor:
    """Per probe: input, then one overlay per top concept (caption: channel ids), then the concepts' references.

    Args:
        concept_maps: ``(N, K, H, W)`` conditional heatmaps.
        channels: ``(N, K)`` channel ids.
        references: optional ``{channel: (R, 3, h, w) float [0, 1]}`` reference tiles (relevance maximisation).
    """
    imgs = _resize(images01.float().cpu(), tile)
    n, k = channels.shape
    rows = []
    for i in range(n):
        heat = F.interpolate(
            concept_maps[i].float().cpu()[:, None], size=(tile, tile), mode="bilinear", align_corners=False
        )[:, 0]
        overs = overlay(imgs[i : i + 1].expand(k, -1, -1, -1), heat, alpha=alpha)
        tiles = [imgs[i]] + list(overs)
        ids = ", ".join(f"c{int(c)}" for c in channels[i])
        rows.append(_row(tiles, f"{captions[i]} | concepts {ids}"))
        if references:
            ref_tiles = []
            for c in channels[i].tolist():
                ref = references.get(int(c))
                ref_tiles.append(
                    _resize(ref[:1], tile)[0] if ref is not None and len(ref) else torch.ones(3, tile, tile)
                )
            rows.append(_row([torch.ones(3, tile, tile)] + ref_tiles, "  reference image per concept (most relevant)"))
    width = max(r.shape[2] for r in rows)
    rows = [F.pad(r, (0, width - r.shape[2]), value=1.0) for r in rows]
    return to_uint8(torch.cat(rows, dim=1))
