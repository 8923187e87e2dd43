"""Pure explainers: ``explainer(model, images, targets) -> heatmaps``; no Lightning inside.

Map explainers (``lrp``, ``gradcam``, ``attention_gradcam``, ``lrp_gradcam``) return ``(N, H, W)``; concept explainers
(``crp``) return :class:`Concepts`. :func:`explain` runs several on one model copy; explanation profiles
(:mod:`lit_xai.explainers.profiles`) tell them the canonizers and layers of registry, torchvision and timm networks.
"""

from ._core import (
    COMPOSITES,
    build_composite,
    explanation_model,
    make_composite,
    resolve_canonizers,
    resolve_layer_name,
)
from ._fast_rules import fast_rules
from .base import (
    EXPLAINERS,
    CallableExplainer,
    ConceptExplainer,
    Concepts,
    Explainer,
    ExplainerNotApplicable,
    build_explainer,
    register_explainer,
)
from .batch import ExplainerError, ProbeExplanations, explain
from .combined import LRPGradCAM
from .concept_references import ConceptReferences, concept_references
from .conservation import CONSERVATION_BAND, ConservationCheck, ConservationWarning, check_conservation
from .crp import CRP, channel_relevances, crp_heatmaps
from .gradcam import AttentionGradCAM, GradCAM
from .lrp import LRP, lrp_relevance
from .profiles import ExplanationProfile, find_profile, register_profile, resolve_profile

__all__ = [
    "COMPOSITES",
    "CONSERVATION_BAND",
    "CRP",
    "EXPLAINERS",
    "LRP",
    "AttentionGradCAM",
    "CallableExplainer",
    "ConceptExplainer",
    "ConceptReferences",
    "ConservationCheck",
    "ConservationWarning",
    "Concepts",
    "ExplainerError",
    "Explainer",
    "ExplainerNotApplicable",
    "ExplanationProfile",
    "GradCAM",
    "LRPGradCAM",
    "ProbeExplanations",
    "build_composite",
    "build_explainer",
    "check_conservation",
    "channel_relevances",
    "concept_references",
    "crp_heatmaps",
    "explain",
    "explanation_model",
    "fast_rules",
    "find_profile",
    "lrp_relevance",
    "make_composite",
    "register_explainer",
    "register_profile",
    "resolve_canonizers",
    "resolve_layer_name",
    "resolve_profile",
]
