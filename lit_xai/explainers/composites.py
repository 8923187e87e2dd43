"""LRP composites by name (zennit 0.5.1) and the canonizers and extra layer rules a model's explanation profile adds.

Example:
    >>> type(make_composite("epsilon_plus_flat", [], zero_params="bias")).__name__
    'EpsilonPlusFlat'
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn
from zennit import composites as zcomp

from .profiles import find_profile, resolve_profile

__all__ = [
    "COMPOSITES",
    "build_composite",
    "default_composite",
    "make_composite",
    "profile_layer_map",
    "resolve_canonizers",
]


def _composite(cls: type) -> Callable[..., zcomp.Composite]:
    return lambda canonizers, **kwargs: cls(canonizers=canonizers, **kwargs)


def _epsilon_gamma_box(canonizers: list, **kwargs: Any) -> zcomp.Composite:
    # ZBox bounds for inputs normalised with ImageNet-like mean/std: pixel values in [0, 1] map into about [-2.2, 2.7]
    kwargs.setdefault("low", -3.0)
    kwargs.setdefault("high", 3.0)
    return zcomp.EpsilonGammaBox(canonizers=canonizers, **kwargs)


#: named LRP composites (zennit 0.5.1); values are ``factory(canonizers, **composite_kwargs)``
COMPOSITES: dict[str, Callable[..., zcomp.Composite]] = {
    "epsilon_plus_flat": _composite(zcomp.EpsilonPlusFlat),
    "epsilon_plus": _composite(zcomp.EpsilonPlus),
    "epsilon_gamma_box": _epsilon_gamma_box,
    "epsilon_alpha2_beta1": _composite(zcomp.EpsilonAlpha2Beta1),
    "epsilon_alpha2_beta1_flat": _composite(zcomp.EpsilonAlpha2Beta1Flat),
}


def make_composite(name: str, canonizers: list, **kwargs: Any) -> zcomp.Composite:
    """Build the named composite with ``canonizers``; the error lists the valid names.

    Args:
        name: a key of :data:`COMPOSITES`.
        canonizers: fresh zennit canonizers (a composite applies them on ``register``).
        **kwargs: passed to the zennit composite, e.g. ``zero_params="bias"`` (rules ignore biases, so relevance is
            conserved exactly), ``epsilon=0.25``, or ``low``/``high`` for ``epsilon_gamma_box``.

    Example:
        >>> type(make_composite("epsilon_plus_flat", [], zero_params="bias")).__name__
        'EpsilonPlusFlat'
    """
    try:
        factory = COMPOSITES[name]
    except KeyError:
        raise ValueError(f"unknown LRP composite {name!r}; choose one of: {', '.join(sorted(COMPOSITES))}") from None
    try:
        return factory(canonizers, **kwargs)
    except TypeError as err:
        raise TypeError(f"invalid arguments {sorted(kwargs)} for LRP composite {name!r}: {err}") from None


def build_composite(
    name: str, model: nn.Module, canonizers: list | None = None, composite_kwargs: dict[str, Any] | None = None
) -> zcomp.Composite:
    """The named composite for ``model``: canonizers (given, or from its profile) and the profile's extra layer map
    (e.g. an epsilon rule for timm's depthwise convolutions) prepended to any ``layer_map`` in ``composite_kwargs``.

    Example:
        >>> from torchvision.models import vgg11
        >>> type(build_composite("epsilon_plus_flat", vgg11())).__name__
        'EpsilonPlusFlat'
    """
    kwargs = dict(composite_kwargs or {})
    extra = (
        profile_layer_map(model, float(kwargs.get("epsilon", 1e-6)), kwargs.get("zero_params"))
        if canonizers is None
        else []
    )
    if extra or "layer_map" in kwargs:
        kwargs["layer_map"] = extra + list(kwargs.get("layer_map") or [])
    return make_composite(name, resolve_canonizers(model, canonizers), **kwargs)


def resolve_canonizers(model: nn.Module, canonizers: list | None) -> list:
    """Canonizers to use: the given list, else fresh ones from the model's explanation profile.

    Raises:
        ValueError: when ``canonizers`` is None and no profile is known (see :mod:`lit_xai.explainers.profiles`).
            Pass ``canonizers=[]`` explicitly to explain a network that needs none (no BatchNorm, no skips).
    """
    if canonizers is not None:
        return list(canonizers)
    return resolve_profile(model, "zennit canonizers").profile.canonizers()


def profile_layer_map(model: nn.Module, epsilon: float = 1e-6, zero_params: Any = None) -> list:
    """Extra zennit ``(type, rule)`` pairs the model's profile asks every composite to use (often none)."""
    found = find_profile(model)
    return found.profile.layer_map(epsilon, zero_params) if found is not None else []


def default_composite(model: nn.Module) -> str:
    """The LRP composite of the model's profile, ``epsilon_plus_flat`` when none is known."""
    found = find_profile(model)
    return found.profile.default_composite if found is not None else "epsilon_plus_flat"
