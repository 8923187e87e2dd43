"""Relevance outside a region of interest: how much of a model's positive evidence lies outside the lungs.

Chest X-ray classifiers are known to use text markers, borders and devices outside the lungs (DeGrave et al. 2021).
With a lung mask per image (COVID-QU-Ex, COVID-19 Radiography: the items' ``roi_mask``), the share of positive
relevance outside the mask is a direct, per-image shortcut measure.

Example:
    >>> import torch
    >>> heat = torch.zeros(1, 4, 4); heat[0, 0, 0] = 3.0; heat[0, 2, 2] = 1.0; heat[0, 3, 3] = -5.0
    >>> roi = torch.zeros(1, 4, 4, dtype=torch.bool); roi[0, 2:, 2:] = True
    >>> relevance_outside_roi(heat, roi).tolist()
    [0.75]
"""

from __future__ import annotations

import torch

__all__ = ["relevance_outside_roi"]


def relevance_outside_roi(heatmaps: torch.Tensor, roi_masks: torch.Tensor) -> torch.Tensor:
    """Share of the **positive** relevance of each map that lies outside its region of interest.

    Negative relevance (evidence against the class) is ignored: it would cancel positive evidence and make a map
    that relies heavily on a marker outside the lungs look balanced.

    Args:
        heatmaps: ``(N, H, W)`` relevance maps (sum channels first), any device and float dtype.
        roi_masks: ``(N, H, W)`` bool, True inside the region (e.g. the lungs); same ``H, W`` as the maps (resize
            the masks with nearest-neighbour sampling otherwise).

    Returns:
        ``(N,)`` float in [0, 1]: 0 = all positive relevance inside the region, 1 = all outside. NaN for a map
        with no positive relevance (nothing to attribute), so a mean over probes should use ``nanmean``.

    Raises:
        ValueError: on mismatched shapes, non-bool masks, or non-finite relevance.
    """
    if heatmaps.ndim != 3:
        raise ValueError(f"heatmaps must be (N, H, W) (sum the channels first), got {tuple(heatmaps.shape)}")
    if roi_masks.shape != heatmaps.shape:
        raise ValueError(
            f"roi_masks must have the heatmaps' shape {tuple(heatmaps.shape)}, got {tuple(roi_masks.shape)}; resize "
            "the masks to the heatmap size (nearest) first"
        )
    if roi_masks.dtype != torch.bool:
        raise ValueError(f"roi_masks must be bool (True inside the region), got {roi_masks.dtype}")
    maps = heatmaps.detach().to(torch.float64)
    if not torch.isfinite(maps).all():
        raise ValueError("heatmaps contain NaN or infinite values")
    positive = maps.clamp(min=0.0)
    total = positive.flatten(1).sum(1)
    outside = (positive * (~roi_masks.to(maps.device)).to(maps.dtype)).flatten(1).sum(1)
    share = torch.where(total > 0, outside / torch.where(total > 0, total, torch.ones_like(total)), torch.nan)
    return share.to(heatmaps.dtype if heatmaps.dtype.is_floating_point else torch.float32)
