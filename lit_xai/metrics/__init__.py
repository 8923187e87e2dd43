"""Pure explanation metrics: drift between epochs, and explanation quality (faithfulness, robustness, sanity)."""

from .drift import DRIFT_MEASURES, DriftTracker, cosine, drift_scores, spearman, ssim, topk_iou
from .faithfulness import pixel_flipping
from .infidelity import infidelity
from .quality import METRICS, QualityReport, evaluate_quality, make_explainers
from .randomization import RandomizationResult, cascade_layers, randomization_check
from .sensitivity import max_sensitivity
from .stability import STABILITY_TRANSFORMS, StabilityResult, augmentation_stability

__all__ = [
    "DRIFT_MEASURES",
    "DriftTracker",
    "METRICS",
    "STABILITY_TRANSFORMS",
    "QualityReport",
    "RandomizationResult",
    "StabilityResult",
    "augmentation_stability",
    "cascade_layers",
    "cosine",
    "drift_scores",
    "evaluate_quality",
    "infidelity",
    "make_explainers",
    "max_sensitivity",
    "pixel_flipping",
    "randomization_check",
    "spearman",
    "ssim",
    "topk_iou",
]
