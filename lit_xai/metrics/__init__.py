"""Pure explanation metrics: drift between epochs, explanation quality (faithfulness, robustness, sanity), and the
lattice index of relevance maps (the checkerboard strided layers leave)."""

from .drift import DRIFT_MEASURES, DriftTracker, cosine, drift_scores, spearman, ssim, topk_iou
from .faithfulness import pixel_flipping
from .infidelity import infidelity
from .lattice import lattice_index, lattice_mask, lattice_share
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
    "lattice_index",
    "lattice_mask",
    "lattice_share",
    "make_explainers",
    "max_sensitivity",
    "pixel_flipping",
    "randomization_check",
    "spearman",
    "ssim",
    "topk_iou",
]
