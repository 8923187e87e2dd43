"""Pure explanation metrics."""

from .drift import DRIFT_MEASURES, DriftTracker, cosine, drift_scores, spearman, ssim, topk_iou

__all__ = ["DRIFT_MEASURES", "DriftTracker", "cosine", "drift_scores", "spearman", "ssim", "topk_iou"]
