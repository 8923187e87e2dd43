"""What an artifact *is*: the registry (detect, threshold, insert, remove), built-in detectors and inserters, tags, ROI.
May import: torch, NumPy, SciPy, PIL, lit_xai._moved (old names); lit_xai.shortcuts imports this package, never back."""

from .._moved import forward
from .detectors import (
    DARK_CORNERS_THRESHOLD,
    MARKER_THRESHOLD,
    RING_THRESHOLD,
    detect_dark_corners,
    detect_marker,
    detect_ring,
    relative_darkness,
)
from .inserters import MARKER_COLORS, insert_dark_corners, insert_marker, insert_ring, remove_ring, ring_mask
from .registry import (
    ARTIFACTS,
    DEFAULT_THRESHOLDS,
    DETECTORS,
    Artifact,
    get_artifact,
    get_detector,
    register_artifact,
    register_detector,
)
from .roi import relevance_outside_roi
from .tags import insert_burnt_text, insert_square_tag
from .xray import TEXT_MARKER_THRESHOLD, detect_text_marker, insert_text_marker

__all__ = [
    "DARK_CORNERS_THRESHOLD",
    "MARKER_THRESHOLD",
    "RING_THRESHOLD",
    "detect_dark_corners",
    "detect_marker",
    "detect_ring",
    "relative_darkness",
    "MARKER_COLORS",
    "insert_dark_corners",
    "insert_marker",
    "insert_ring",
    "remove_ring",
    "ring_mask",
    "ARTIFACTS",
    "DEFAULT_THRESHOLDS",
    "DETECTORS",
    "Artifact",
    "get_artifact",
    "get_detector",
    "register_artifact",
    "register_detector",
    "relevance_outside_roi",
    "insert_burnt_text",
    "insert_square_tag",
    "TEXT_MARKER_THRESHOLD",
    "detect_text_marker",
    "insert_text_marker",
]

# The reliance analysis moved to lit_xai.shortcuts (issue 34); its names are still found here for one release,
# forwarded lazily (importing them here would make this package import the layer above it).
_MOVED = {
    "ArtifactAssociation": "lit_xai.shortcuts.audit",
    "AuditReport": "lit_xai.shortcuts.audit",
    "association_table": "lit_xai.shortcuts.audit",
    "audit_datamodule": "lit_xai.shortcuts.audit",
    "audit_dataset": "lit_xai.shortcuts.audit",
    "CandidateArtifact": "lit_xai.shortcuts.candidate_artifact",
    "candidate_artifact": "lit_xai.shortcuts.candidate_artifact",
    "candidate_masks": "lit_xai.shortcuts.candidate_artifact",
    "render_candidates": "lit_xai.shortcuts.candidate_grid",
    "bootstrap_effect": "lit_xai.shortcuts.causal",
    "insertion_test": "lit_xai.shortcuts.causal",
    "removal_test": "lit_xai.shortcuts.causal",
    "summarize_test": "lit_xai.shortcuts.causal",
    "SUSPICIOUS_THRESHOLD": "lit_xai.shortcuts.discovery",
    "SUSPICIOUS_THRESHOLD_CONCEPTS": "lit_xai.shortcuts.discovery",
    "Candidate": "lit_xai.shortcuts.discovery",
    "default_threshold": "lit_xai.shortcuts.discovery",
    "discover_candidates": "lit_xai.shortcuts.discovery",
    "explanation_features": "lit_xai.shortcuts.discovery",
    "AlertRule": "lit_xai.shortcuts.monitoring",
    "ReliancePool": "lit_xai.shortcuts.monitoring",
    "measure_reliance": "lit_xai.shortcuts.monitoring",
    "counterfactual_shift": "lit_xai.shortcuts.reliance",
    "paired_shift": "lit_xai.shortcuts.reliance",
    "predict_proba": "lit_xai.shortcuts.reliance",
    "relevance_in_mask": "lit_xai.shortcuts.reliance",
    "removal_shift": "lit_xai.shortcuts.reliance",
    "SHAM_KINDS": "lit_xai.shortcuts.sham",
    "sham_insert": "lit_xai.shortcuts.sham",
    "sham_masks": "lit_xai.shortcuts.sham",
    "ArtifactClusterResult": "lit_xai.shortcuts.spray",
    "ClusterReport": "lit_xai.shortcuts.spray",
    "SprayResult": "lit_xai.shortcuts.spray",
    "artifact_cluster": "lit_xai.shortcuts.spray",
    "kmeans": "lit_xai.shortcuts.spray",
    "spray": "lit_xai.shortcuts.spray",
    "spray_features": "lit_xai.shortcuts.spray",
}
__getattr__ = forward(__name__, _MOVED)
