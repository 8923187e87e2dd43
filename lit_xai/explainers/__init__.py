"""Pure explainers: ``(model, images, targets) -> heatmaps``; no Lightning inside."""

from ._core import COMPOSITES, explanation_model, make_composite, resolve_canonizers, resolve_layer_name
from .concept_references import ConceptReferences, concept_references
from .crp import CRP, channel_relevances, crp_heatmaps
from .gradcam import AttentionGradCAM, GradCAM
from .lrp import LRP, lrp_relevance

__all__ = [
    "COMPOSITES",
    "CRP",
    "LRP",
    "AttentionGradCAM",
    "ConceptReferences",
    "GradCAM",
    "channel_relevances",
    "concept_references",
    "crp_heatmaps",
    "explanation_model",
    "lrp_relevance",
    "make_composite",
    "resolve_canonizers",
    "resolve_layer_name",
]
