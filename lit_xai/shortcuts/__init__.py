"""Whether a model *relies* on an artifact: audit, reliance/causal/sham tests, alert rule, verdict, discovery, SpRAy.
May import: artifacts, contracts, explainers, visualization, schedule; never callbacks, models or Lightning."""

from .audit import ArtifactAssociation, AuditReport, association_table, audit_datamodule, audit_dataset
from .candidate_artifact import CandidateArtifact, candidate_artifact, candidate_masks
from .candidate_grid import render_candidates
from .causal import bootstrap_effect, insertion_test, removal_test, summarize_test
from .colour import ColourCast, colour_candidates, colour_cast
from .discovery import (
    SUSPICIOUS_THRESHOLD,
    SUSPICIOUS_THRESHOLD_CONCEPTS,
    Candidate,
    default_threshold,
    discover_candidates,
    explanation_features,
)
from .monitoring import AlertRule, ReliancePool, measure_reliance
from .reliance import counterfactual_shift, paired_shift, predict_proba, relevance_in_mask, removal_shift
from .sham import SHAM_KINDS, sham_insert, sham_masks
from .spray import ArtifactClusterResult, ClusterReport, SprayResult, artifact_cluster, kmeans, spray, spray_features
from .verdict import EffectSeries, effect_series, lead_key, verdict_text
from .watch import MIN_REMOVAL_IMAGES, Discovery, ShortcutBudget, ShortcutWatch

__all__ = [
    "MIN_REMOVAL_IMAGES",
    "Discovery",
    "ShortcutBudget",
    "ShortcutWatch",
    "ArtifactAssociation",
    "AuditReport",
    "association_table",
    "audit_datamodule",
    "audit_dataset",
    "CandidateArtifact",
    "candidate_artifact",
    "candidate_masks",
    "ColourCast",
    "colour_candidates",
    "colour_cast",
    "render_candidates",
    "bootstrap_effect",
    "insertion_test",
    "removal_test",
    "summarize_test",
    "SUSPICIOUS_THRESHOLD",
    "SUSPICIOUS_THRESHOLD_CONCEPTS",
    "Candidate",
    "default_threshold",
    "discover_candidates",
    "explanation_features",
    "AlertRule",
    "ReliancePool",
    "measure_reliance",
    "counterfactual_shift",
    "paired_shift",
    "predict_proba",
    "relevance_in_mask",
    "removal_shift",
    "SHAM_KINDS",
    "sham_insert",
    "sham_masks",
    "ArtifactClusterResult",
    "ClusterReport",
    "SprayResult",
    "artifact_cluster",
    "kmeans",
    "spray",
    "spray_features",
    "EffectSeries",
    "effect_series",
    "lead_key",
    "verdict_text",
]
