"""Pure artifact detectors, inserters, dataset audit, reliance measures and SpRAy (no Lightning inside)."""

from .audit import ArtifactAssociation, AuditReport, association_table, audit_datamodule, audit_dataset
from .candidate_artifact import CandidateArtifact, candidate_artifact, candidate_masks
from .candidate_grid import render_candidates
from .causal import bootstrap_effect, insertion_test, removal_test, summarize_test
from .detectors import (
    DARK_CORNERS_THRESHOLD,
    MARKER_THRESHOLD,
    RING_THRESHOLD,
    detect_dark_corners,
    detect_marker,
    detect_ring,
    register_detector,
    relative_darkness,
)
from .discovery import (
    SUSPICIOUS_THRESHOLD,
    SUSPICIOUS_THRESHOLD_CONCEPTS,
    Candidate,
    default_threshold,
    discover_candidates,
    explanation_features,
)
from .inserters import MARKER_COLORS, insert_dark_corners, insert_marker, insert_ring, remove_ring, ring_mask
from .monitoring import AlertRule, ReliancePool, measure_reliance
from .registry import ARTIFACTS, DEFAULT_THRESHOLDS, DETECTORS, Artifact, get_artifact, get_detector, register_artifact
from .reliance import counterfactual_shift, paired_shift, predict_proba, relevance_in_mask, removal_shift
from .roi import relevance_outside_roi
from .sham import SHAM_KINDS, sham_insert, sham_masks
from .spray import ArtifactClusterResult, ClusterReport, SprayResult, artifact_cluster, kmeans, spray, spray_features
from .tags import insert_burnt_text, insert_square_tag
from .xray import TEXT_MARKER_THRESHOLD, detect_text_marker, insert_text_marker

__all__ = [
    "ARTIFACTS",
    "AlertRule",
    "Artifact",
    "ReliancePool",
    "get_artifact",
    "insert_dark_corners",
    "measure_reliance",
    "register_artifact",
    "ArtifactAssociation",
    "ArtifactClusterResult",
    "AuditReport",
    "ClusterReport",
    "DARK_CORNERS_THRESHOLD",
    "DEFAULT_THRESHOLDS",
    "DETECTORS",
    "MARKER_COLORS",
    "MARKER_THRESHOLD",
    "RING_THRESHOLD",
    "TEXT_MARKER_THRESHOLD",
    "SHAM_KINDS",
    "SprayResult",
    "bootstrap_effect",
    "insertion_test",
    "removal_test",
    "sham_insert",
    "sham_masks",
    "summarize_test",
    "artifact_cluster",
    "association_table",
    "audit_datamodule",
    "audit_dataset",
    "counterfactual_shift",
    "detect_dark_corners",
    "detect_marker",
    "detect_ring",
    "detect_text_marker",
    "get_detector",
    "insert_marker",
    "insert_ring",
    "insert_text_marker",
    "kmeans",
    "paired_shift",
    "predict_proba",
    "relative_darkness",
    "relevance_in_mask",
    "relevance_outside_roi",
    "remove_ring",
    "removal_shift",
    "register_detector",
    "ring_mask",
    "spray",
    "spray_features",
    "SUSPICIOUS_THRESHOLD",
    "SUSPICIOUS_THRESHOLD_CONCEPTS",
    "Candidate",
    "CandidateArtifact",
    "candidate_artifact",
    "candidate_masks",
    "default_threshold",
    "discover_candidates",
    "explanation_features",
    "insert_burnt_text",
    "insert_square_tag",
    "render_candidates",
]
