"""Pure explanation metrics."""

from .drift import DRIFT_MEASURES, cosine, drift_scores, spearman, ssim, topk_iou

__all__ = ["DRIFT_MEASURES", "cosine", "drift_scores", "spearman", "ssim", "topk_iou"]
