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

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...explainers.profiles import PROFILE_ATTR, ExplanationProfile

__all__ = [
    "ARCHITECTURES",
    "ArchitectureSpec",
    "register_architecture",
    "get_spec",
    "build_architecture",
    "spec_of",
    "ARCH_ATTR",
]

#: attribute set on every network built from the registry, so explainers can find its spec
ARCH_ATTR = "lit_xai_architecture"


def _no_canonizers() -> list:
    return []


@dataclass(frozen=True)
class ArchitectureSpec:
    """What the package knows about one architecture.

    Attributes:
        name: registry key.
        builder: ``builder(num_classes) -> nn.Module`` mapping images ``(N, 3, H, W)`` to logits ``(N, num_classes)``.
        canonizers: factory returning *fresh* zennit canonizers (canonizers hold state, never share them).
        gradcam_layer: module name (relative to the network) used by Grad-CAM.
        concept_layers: candidate module names for CRP, most useful first.
        default_composite: LRP composite name that works best for this family.
        small: True for variants meant to train on a CPU (used by tests and the demo).
        family: architecture family ("resnet", "vgg", "densenet", "efficientnet", ...).
        min_size: smallest input side length the network accepts.
    """

    name: str
    builder: Callable[[int], nn.Module]
    canonizers: Callable[[], list] = _no_canonizers
    gradcam_layer: str = ""
    concept_layers: tuple[str, ...] = ()
    default_composite: str = "epsilon_plus_flat"
    small: bool = False
    family: str = ""
    min_size: int = 32
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def profile(self) -> ExplanationProfile:
        """The explanation profile of this architecture (read by explainers; :mod:`lit_xai.explainers.profiles`)."""
        return ExplanationProfile(
            family=self.family or self.name,
            canonizers=self.canonizers,
            gradcam_layer=self.gradcam_layer,
            concept_layers=self.concept_layers,
            default_composite=self.default_composite,
            attention_layer=str(self.extras.get("attention_layer", "")),
        )


ARCHITECTURES: dict[str, ArchitectureSpec] = {}


def register_architecture(
    name: str,
    *,
    canonizers: Callable[[], list] = _no_canonizers,
    gradcam_layer: str,
    concept_layers: Sequence[str],
    default_composite: str = "epsilon_plus_flat",
    small: bool = False,
    family: str = "",
    min_size: int = 32,
    **extras: Any,
) -> Callable[[Callable[[int], nn.Module]], Callable[[int], nn.Module]]:
    """Decorator registering ``builder(num_classes) -> nn.Module`` under ``name``.

    Raises:
        ValueError: if ``name`` is already registered (two builders silently shadowing each other is a bug).
    """

    def decorator(builder: Callable[[int], nn.Module]) -> Callable[[int], nn.Module]:
        if name in ARCHITECTURES:
            raise ValueError(f"architecture {name!r} is already registered (by {ARCHITECTURES[name].builder!r})")
        ARCHITECTURES[name] = ArchitectureSpec(
            name=name,
            builder=builder,
            canonizers=canonizers,
            gradcam_layer=gradcam_layer,
            concept_layers=tuple(concept_layers),
            default_composite=default_composite,
            small=small,
            family=family,
            min_size=min_size,
            extras=dict(extras),
        )
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
    setattr(net, ARCH_ATTR, name)
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


def spec_of(model: nn.Module) -> ArchitectureSpec | None:
    """Find the registry spec of ``model`` or of the registry-built network inside it (e.g. a LightningModule).

    Returns ``(spec)`` or ``None`` when no submodule was built from the registry.
    """
    for module in model.modules():
        name = getattr(module, ARCH_ATTR, None)
        if isinstance(name, str) and name in ARCHITECTURES:
            return ARCHITECTURES[name]
    return None
