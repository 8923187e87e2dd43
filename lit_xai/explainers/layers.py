"""Layer lookup: a module by (relative or suffix) name, and the Grad-CAM, CRP concept and attention layers a model's
explanation profile names; every miss is an error that lists similar names or says which argument to pass."""

from __future__ import annotations

import difflib

from torch import nn

from .errors import ExplainerNotApplicable
from .profiles import find_profile, resolve_profile

__all__ = [
    "default_attention_layer",
    "default_concept_layer",
    "default_gradcam_layer",
    "resolve_layer_name",
    "resolve_module",
]


def resolve_layer_name(model: nn.Module, name: str) -> str:
    """Full module name in ``model`` for ``name``.

    ``name`` may be given relative to the registry-built network inside a LightningModule (``"layer4"`` for
    ``"net.layer4"``) or as any unique suffix of a full name.
    """
    names = dict(model.named_modules())
    if name in names:
        return name
    found = find_profile(model)
    if found is not None and found.prefix:
        candidate = found.full_name(name)
        if candidate in names:
            return candidate
    matches = [n for n in names if n.endswith("." + name)]
    if len(matches) == 1:
        return matches[0]
    hint = difflib.get_close_matches(name, list(names), n=5, cutoff=0.3)
    if len(matches) > 1:
        raise ValueError(
            f"layer name {name!r} is ambiguous in {type(model).__name__}: {matches[:5]}; give the full name"
        )
    raise ValueError(
        f"layer {name!r} not found in {type(model).__name__}; similar names: {hint or 'none'} "
        "(list them with [n for n, _ in model.named_modules()])"
    )


def resolve_module(model: nn.Module, name: str) -> nn.Module:
    """The module called ``name`` (see :func:`resolve_layer_name`)."""
    return dict(model.named_modules())[resolve_layer_name(model, name)]


def default_gradcam_layer(model: nn.Module) -> str:
    """Grad-CAM target layer from the model's explanation profile; clear error otherwise."""
    found = resolve_profile(model, "Grad-CAM layer")
    if not found.gradcam_layer:
        raise ValueError(f"the {found.profile.family!r} profile names no Grad-CAM layer; pass layer='<module name>'")
    return found.full_name(found.gradcam_layer)


def default_concept_layer(model: nn.Module) -> str:
    """First candidate CRP layer from the model's explanation profile; clear error otherwise."""
    found = resolve_profile(model, "CRP concept layer")
    if found.profile.no_concepts:
        raise ExplainerNotApplicable(
            f"concept explanations do not apply to {found.profile.family!r} networks: {found.profile.no_concepts}"
        )
    if not found.concept_layer:
        raise ValueError(f"the {found.profile.family!r} profile names no concept layer; pass layer='<module name>'")
    return found.full_name(found.concept_layer)


def default_attention_layer(model: nn.Module) -> str:
    """The channel-attention module named by the model's profile (``"attention"`` when none is named)."""
    found = find_profile(model)
    if found is not None and found.profile.attention_layer:
        return found.full_name(found.profile.attention_layer)
    return "attention"
