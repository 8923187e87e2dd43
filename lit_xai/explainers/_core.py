"""Shared machinery of the explainers: model preparation without side effects, name/layer resolution,
composites and canonizers.

Every explainer runs on a *deep copy* of the model in ``eval()`` with frozen parameters, under
``torch.inference_mode(False)`` + ``torch.enable_grad()`` with autocast disabled, so that

* it works inside Lightning's validation loop (``no_grad``) and ``trainer.validate`` (``inference_mode``);
* the caller's model keeps bit-identical parameters, ``.grad``, ``requires_grad``, ``training`` flags and hooks,
  even when the explanation raises (zennit canonizers mutate weights while their context is open).
"""

from __future__ import annotations

import contextlib
import copy
import difflib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from zennit import composites as zcomp

from .profiles import find_profile, resolve_profile
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
        from .base import ExplainerNotApplicable

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


@contextlib.contextmanager
def explanation_model(model: nn.Module, copy_model: bool = True, share_tensors: bool = False) -> Iterator[nn.Module]:
    """Yield a model safe to explain: eval mode, frozen parameters, gradients enabled, no autocast.

    With ``copy_model=True`` (default) a deep copy is explained, so nothing about ``model`` can change. With
    ``copy_model=False`` the model itself is used and its ``training`` flags and ``requires_grad`` are restored in
    ``finally`` (for models that cannot be deep-copied).

    ``share_tensors=True`` copies the module tree but lets its parameters and buffers share storage with ``model``
    (new tensor objects, so ``requires_grad``, ``.data =`` replacements and hooks stay on the copy): no memory copy
    of the weights (0.3 s for VGG-16). Only for callers that never write weights *in place* — zennit's and lit_xai's
    canonizers replace ``.data`` and restore it, which is what the explainers need.

    Example:
        >>> net = nn.Linear(2, 2)
        >>> with explanation_model(net, share_tensors=True) as copy_:
        ...     copy_ is not net, copy_.weight is not net.weight, copy_.weight.data_ptr() == net.weight.data_ptr()
        (True, True, True)
    """
    device_type = _device_type(model)
    with torch.inference_mode(False), torch.enable_grad(), torch.autocast(device_type, enabled=False):
        if copy_model:
            try:
                target = copy.deepcopy(model, _shared_tensor_memo(model) if share_tensors else None)
            except Exception:  # e.g. modules holding non-copyable handles; fall back to restore-in-place
                target = None
            if target is not None:
                try:
                    target.eval()
                    target.requires_grad_(False)
                    if any(p.is_floating_point() and p.dtype != torch.float32 for p in target.parameters()):
                        target.float()  # LRP's epsilon underflows in half precision
                    yield target
                finally:
                    # no gc.collect(): the copy is freed by reference counting (tests/test_explainer_contract.py
                    # checks it); a full collection cost 0.2-1 s per call with torchvision imported
                    del target
                return
        modes = {n: m.training for n, m in model.named_modules()}
        flags = {n: p.requires_grad for n, p in model.named_parameters()}
        buffers = {n: b.detach().clone() for n, b in model.named_buffers()}  # a forward may update them (counters)
        try:
            model.eval()
            model.requires_grad_(False)
            yield model
        finally:
            for n, m in model.named_modules():
                if n in modes:
                    m.training = modes[n]
            for n, p in model.named_parameters():
                if n in flags:
                    p.requires_grad_(flags[n])
            restore_buffers(model, buffers)


def restore_buffers(model: nn.Module, saved: dict[str, torch.Tensor]) -> None:
    """Put back the values of ``model``'s buffers that changed (in place, so references to them stay valid)."""
    for name, buffer in model.named_buffers():
        old = saved.get(name)
        if old is None or buffer.shape != old.shape or torch.equal(buffer, old):
            continue
        with torch.no_grad():
            try:
                buffer.copy_(old)
            except RuntimeError:  # an inference tensor: rebind instead
                owner, _, leaf = name.rpartition(".")
                model.get_submodule(owner)._buffers[leaf] = old


def _shared_tensor_memo(model: nn.Module) -> dict[int, Any]:
    """A ``copy.deepcopy`` memo mapping each parameter / buffer to a new tensor object on the same storage."""
    memo: dict[int, Any] = {}
    for param in model.parameters():
        memo[id(param)] = nn.Parameter(param.detach(), requires_grad=param.requires_grad)
    for buffer in model.buffers():
        memo[id(buffer)] = buffer.detach()
    return memo


def _device_type(model: nn.Module) -> str:
    p = next(model.parameters(), None)
    return p.device.type if p is not None else "cpu"


def prepare_input(images: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """A fresh leaf tensor on the model's device/dtype, safe to differentiate (clones inference tensors)."""
    p = next(model.parameters())
    if images.ndim != 4:
        raise ValueError(f"images must be a (N, C, H, W) batch, got shape {tuple(images.shape)}")
    x = images.detach().to(device=p.device, dtype=p.dtype).clone()
    return x.requires_grad_(True)
