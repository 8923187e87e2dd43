"""Shared machinery of the explainers, one module per job and re-exported here: composites and canonizers
(:mod:`.composites`), layer lookup (:mod:`.layers`), the side-effect-free model copy (:mod:`.model_copy`) and the target
helpers (:mod:`.targets`).
"""

from __future__ import annotations

from .composites import (
    COMPOSITES,
    build_composite,
    default_composite,
    make_composite,
    profile_layer_map,
    resolve_canonizers,
)
from .layers import (
    default_attention_layer,
    default_concept_layer,
    default_gradcam_layer,
    resolve_layer_name,
    resolve_module,
)
from .model_copy import explanation_model, prepare_input
from .targets import as_targets, check_logit_shape, target_init, validate_targets  # noqa: F401 - re-exported

__all__ = [
    "COMPOSITES",
    "as_targets",
    "check_logit_shape",
    "target_init",
    "build_composite",
    "default_attention_layer",
    "default_composite",
    "default_concept_layer",
    "default_gradcam_layer",
    "explanation_model",
    "make_composite",
    "prepare_input",
    "profile_layer_map",
    "resolve_canonizers",
    "resolve_layer_name",
    "resolve_module",
]


