"""Shortcut correction (pure, no Lightning): artifact CAVs and subspaces, P-ClArC projection, A-ClArC insertion,
RR-ClArC and RRR penalties.

The reveal-and-revise loop's *revise* half (Anders et al. 2022; Pahde et al. 2023; Dreyer et al. 2024; Ross et al.
2017): model the artifact as a direction of a layer's activations, then project it out (no retraining) or penalise the
model's sensitivity to it while it trains. :class:`lit_xai.callbacks.ShortcutCorrection` schedules the penalty during
training; ``lit-xai correct`` applies the projection to a trained checkpoint (:mod:`lit_xai.correction.posthoc`).
"""

from .augment import equalising_probabilities, insert_artifact
from .cav import CAV, Pooling, collect_activations, fit_cav, paired_basis, pool, separability
from .labels import LabelSource, artifact_rates, detector_labels, sample_labeled
from .layers import layer_names, resolve_layer
from .penalties import PenaltyOutput, directional_derivative, rrclarc_penalty, rrr_penalty
from .projection import ActivationProjection, ProjectedModel, project, projection_hook
from .settings import CAVSettings, CorrectionBudget, PenaltySettings, penalty_output

__all__ = [
    "CAV",
    "ActivationProjection",
    "CAVSettings",
    "CorrectionBudget",
    "LabelSource",
    "PenaltyOutput",
    "PenaltySettings",
    "Pooling",
    "ProjectedModel",
    "artifact_rates",
    "collect_activations",
    "detector_labels",
    "equalising_probabilities",
    "insert_artifact",
    "directional_derivative",
    "fit_cav",
    "layer_names",
    "paired_basis",
    "penalty_output",
    "pool",
    "project",
    "projection_hook",
    "resolve_layer",
    "rrclarc_penalty",
    "rrr_penalty",
    "sample_labeled",
    "separability",
]
