"""Explanation drift: similarity between heatmaps of the same probes at two points in training.

All functions take two heatmap batches ``(N, H, W)`` and return one value per probe ``(N,)``; 1 means identical
(up to the invariance of the measure), lower means the explanation changed.

Example:
    >>> a = torch.rand(4, 16, 16)
    >>> drift_scores(a, a)["spearman"]
    tensor([1., 1., 1., 1.])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["ssim", "spearman", "topk_iou", "cosine", "drift_scores", "DRIFT_MEASURES"]


def _check(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(
            f"heatmaps must both be (N, H, W) with equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    return a.detach().float(), b.detach().float()


def _scale(x: torch.Tensor) -> torch.Tensor:
    """Per-map scaling to [-1, 1] by the max |value|, so SSIM compares patterns, not relevance magnitudes."""
    return x / x.flatten(1).abs().amax(1).clamp_min(1e-12)[:, None, None]


def ssim(a: torch.Tensor, b: torch.Tensor, kernel_size: int = 7) -> torch.Tensor:
    """Structural similarity (torchmetrics) of max-|.|-normalised maps, per probe, in [-1, 1]."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    a, b = _check(a, b)
    k = min(kernel_size, a.shape[-1], a.shape[-2])
    k = k if k % 2 == 1 else k - 1
    return structural_similarity_index_measure(
        _scale(a)[:, None], _scale(b)[:, None], data_range=2.0, kernel_size=k, reduction="none"
    )


def _ranks(x: torch.Tensor) -> torch.Tensor:
    """Average ranks along dim 1 (ties share their mean rank, as in scipy.stats.rankdata)."""
    n, m = x.shape
    order = x.argsort(dim=1)
    sorted_x = x.gather(1, order)
    ranks = torch.empty_like(x)
    positions = torch.arange(m, dtype=x.dtype, device=x.device).expand(n, m)
    ranks.scatter_(1, order, positions)
    # average tied ranks: group equal values in the sorted order
    for i in range(n):
        values, inverse, counts = torch.unique_consecutive(sorted_x[i], return_inverse=True, return_counts=True)
        if len(values) == m:
            continue
        sums = torch.zeros(len(values), dtype=x.dtype).scatter_add_(0, inverse, positions[i])
        ranks[i, order[i]] = (sums / counts)[inverse]
    return ranks


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation of the pixel relevances, per probe, in [-1, 1]."""
    a, b = _check(a, b)
    ra, rb = _ranks(a.flatten(1)), _ranks(b.flatten(1))
    return F.cosine_similarity(ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True), dim=1, eps=1e-12)


def topk_iou(a: torch.Tensor, b: torch.Tensor, fraction: float = 0.1) -> torch.Tensor:
    """Intersection over union of the top ``fraction`` most relevant pixels (positive relevance), per probe."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    a, b = _check(a, b)
    fa, fb = a.flatten(1), b.flatten(1)
    k = max(1, int(round(fraction * fa.shape[1])))
    ma = torch.zeros_like(fa, dtype=torch.bool).scatter_(1, fa.topk(k, dim=1).indices, True)
    mb = torch.zeros_like(fb, dtype=torch.bool).scatter_(1, fb.topk(k, dim=1).indices, True)
    return (ma & mb).sum(1).float() / (ma | mb).sum(1).float()


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of the flattened maps, per probe."""
    a, b = _check(a, b)
    return F.cosine_similarity(a.flatten(1), b.flatten(1), dim=1, eps=1e-12)


DRIFT_MEASURES = {"ssim": ssim, "spearman": spearman, "iou": topk_iou, "cosine": cosine}


def drift_scores(
    a: torch.Tensor,
    b: torch.Tensor,
    measures: tuple[str, ...] = ("ssim", "spearman", "iou", "cosine"),
    top_fraction: float = 0.1,
) -> dict[str, torch.Tensor]:
    """All requested similarity measures between ``a`` and ``b``: ``{name: (N,)}``."""
    out = {}
    for name in measures:
        if name not in DRIFT_MEASURES:
            raise ValueError(f"unknown drift measure {name!r}; choose from {sorted(DRIFT_MEASURES)}")
        out[name] = topk_iou(a, b, top_fraction) if name == "iou" else DRIFT_MEASURES[name](a, b)
    return out
