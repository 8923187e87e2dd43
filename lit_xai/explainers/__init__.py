"""Pure explainers: ``(model, images, targets) -> heatmaps``; no Lightning inside."""

from ._core import COMPOSITES, explanation_model, make_composite, resolve_canonizers, resolve_layer_name
from .lrp import LRP, lrp_relevance

__all__ = [
    "COMPOSITES",
    "LRP",
    "explanation_model",
    "lrp_relevance",
    "make_composite",
    "resolve_canonizers",
    "resolve_layer_name",
]
