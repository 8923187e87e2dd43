"""The architecture registry: one decorated builder per architecture.

Every entry carries what explanations need to know about the network: fresh zennit canonizers, the
Grad-CAM target layer and the candidate layers for concept analysis (CRP). One test parametrized over
:data:`ARCHITECTURES` checks every entry, so a new architecture is tested without extra test code.

Example:
    >>> from lit_xai.models.architectures import build_architecture, get_spec
    >>> net = build_architecture("tiny_resnet", num_classes=2)
    >>> get_spec("tiny_resnet").gradcam_layer
    'layer3'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...explainers.profiles import PROFILE_ATTR, ExplanationProfile

__all__ = [
    "ARCHITECTURES",
    "ArchitectureSpec",
    "build_architecture",
    "get_spec",
    "load_local_weights",
    "register_architecture",
]


@dataclass(frozen=True)
class ArchitectureSpec:
    """What the package knows about one architecture.

    Explanation knowledge (canonizers, Grad-CAM layer, concept layers, default composite, family) lives in one
    :class:`~lit_xai.explainers.profiles.ExplanationProfile`: a family's profile constant, or a
    ``dataclasses.replace`` of it naming the layers of a variant. The properties below read it.

    Attributes:
        name: registry key.
        builder: ``builder(num_classes) -> nn.Module`` mapping images ``(N, 3, H, W)`` to logits ``(N, num_classes)``.
        profile: the explanation profile (set on every built network, where explainers find it).
        small: True for variants meant to train on a CPU (used by tests and the demo).
        min_size: smallest input side length the network accepts.
        extras: anything else given to :func:`register_architecture`.
    """

    name: str
    builder: Callable[[int], nn.Module]
    profile: ExplanationProfile
    small: bool = False
    min_size: int = 32
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def family(self) -> str:
        return self.profile.family

    @property
    def canonizers(self) -> Callable[[], list]:
        return self.profile.canonizers

    @property
    def gradcam_layer(self) -> str:
        return self.profile.gradcam_layer

    @property
    def concept_layers(self) -> tuple[str, ...]:
        return self.profile.concept_layers

    @property
    def default_composite(self) -> str:
        return self.profile.default_composite


ARCHITECTURES: dict[str, ArchitectureSpec] = {}


def register_architecture(
    name: str,
    *,
    profile: ExplanationProfile,
    small: bool = False,
    min_size: int = 32,
    **extras: Any,
) -> Callable[[Callable[[int], nn.Module]], Callable[[int], nn.Module]]:
    """Decorator registering ``builder(num_classes) -> nn.Module`` under ``name`` with its explanation ``profile``.

    Raises:
        ValueError: if ``name`` is already registered (two builders silently shadowing each other is a bug), or the
            profile names no Grad-CAM layer or no concept layer (the registry test would not cover them).
    """
    if not profile.gradcam_layer or not profile.concept_layers:
        raise ValueError(f"the profile of architecture {name!r} must name a Grad-CAM layer and concept layers")

    def decorator(builder: Callable[[int], nn.Module]) -> Callable[[int], nn.Module]:
        if name in ARCHITECTURES:
            raise ValueError(f"architecture {name!r} is already registered (by {ARCHITECTURES[name].builder!r})")
        ARCHITECTURES[name] = ArchitectureSpec(name, builder, profile, small, min_size, dict(extras))
        return builder

    return decorator


def get_spec(name: str) -> ArchitectureSpec:
    """Return the spec registered under ``name``; the error lists the valid names."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ValueError(f"unknown architecture {name!r}; choose one of: {', '.join(sorted(ARCHITECTURES))}") from None


def build_architecture(name: str, num_classes: int, weights_path: str | Path | None = None) -> nn.Module:
    """Build the network ``name`` with ``num_classes`` outputs, optionally loading local weights.

    Args:
        name: a key of :data:`ARCHITECTURES`.
        num_classes: number of output logits.
        weights_path: optional local ``.pt``/``.pth`` state dict (nothing is ever downloaded). Keys whose shapes do
            not match (typically the classifier head of an ImageNet checkpoint) are skipped and reported.
    """
    spec = get_spec(name)
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    net = spec.builder(num_classes)
    # explainers find canonizers and layers through this attribute; they never import the registry
    setattr(net, PROFILE_ATTR, spec.profile)
    if weights_path is not None:
        load_local_weights(net, weights_path)
    return net


def load_local_weights(net: nn.Module, weights_path: str | Path) -> list[str]:
    """Load a local state dict into ``net``, skipping shape mismatches; returns the skipped keys."""
    path = Path(weights_path)
    if not path.is_file():
        raise FileNotFoundError(
            f"weights_path {str(path)!r} does not exist; pass a local state-dict file (weights are never downloaded)"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    own = net.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    skipped = sorted(set(state) - set(usable))
    missing = sorted(set(own) - set(usable))
    if not usable:
        raise ValueError(f"no tensor in {str(path)!r} matches the network's parameter names/shapes")
    net.load_state_dict(usable, strict=False)
    if skipped or missing:
        import warnings

        warnings.warn(
            f"loaded {len(usable)} tensors from {path.name}; skipped {len(skipped)} unmatched "
            f"(e.g. {skipped[:3]}), {len(missing)} left at initialisation (e.g. {missing[:3]})",
            stacklevel=2,
        )
    return skipped
