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
from torchvision.models import VGG, DenseNet, EfficientNet, ResNet
from torchvision.models.resnet import BasicBlock, Bottleneck
from zennit import composites as zcomp
from zennit.torchvision import ResNetCanonizer, VGGCanonizer

from ..models.architectures.registry import ARCH_ATTR, spec_of

__all__ = [
    "COMPOSITES",
    "as_targets",
    "default_concept_layer",
    "default_gradcam_layer",
    "explanation_model",
    "infer_family",
    "make_composite",
    "prepare_input",
    "registered_root",
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


def registered_root(model: nn.Module) -> tuple[str, nn.Module] | None:
    """``(prefix, module)`` of the first registry-built network inside ``model`` (prefix "" for the model itself)."""
    for name, module in model.named_modules():
        if isinstance(getattr(module, ARCH_ATTR, None), str):
            return name, module
    return None


def infer_family(model: nn.Module) -> str | None:
    """Family of a known torchvision network inside ``model`` (or of the registry entry), else ``None``."""
    spec = spec_of(model)
    if spec is not None and spec.family:
        return spec.family
    from ..models.architectures.attention import ChannelAttention

    modules = list(model.modules())
    # the gate must be found before its ResNet: plain ResNet canonizers would let relevance flow into the gate
    if any(isinstance(m, ChannelAttention) for m in modules):
        return "resnet_attention"
    for module in modules:
        if isinstance(module, (ResNet, BasicBlock, Bottleneck)):
            return "resnet"
        if isinstance(module, VGG):
            return "vgg"
        if isinstance(module, DenseNet):
            return "densenet"
        if isinstance(module, EfficientNet):
            return "efficientnet"
    return None


#: canonizers and layers for known torchvision families when a model is not from our registry
def _family_canonizers(family: str) -> list:
    if family == "resnet":
        return [ResNetCanonizer()]
    if family == "vgg":
        return [VGGCanonizer()]
    from . import canonizers as ours  # local import: canonizers import torchvision internals

    if family == "densenet":
        return [ours.DenseNetCanonizer()]
    if family == "efficientnet":
        return [ours.EfficientNetCanonizer()]
    if family == "resnet_attention":
        return [ours.AttentionResNetCanonizer()]
    raise ValueError(f"no canonizers known for family {family!r}")


FAMILY_GRADCAM_LAYER = {
    "resnet": "layer4",
    "resnet_attention": "layer4",
    "vgg": "features",
    "densenet": "features",
    "efficientnet": "features",
}


def resolve_canonizers(model: nn.Module, canonizers: list | None) -> list:
    """Canonizers to use: the given list, the registry entry's, or those of a known torchvision family.

    Raises:
        ValueError: when ``canonizers`` is None and the model is neither from the registry nor a known family.
            Pass ``canonizers=[]`` explicitly to explain a network that needs none (no BatchNorm, no skips).
    """
    if canonizers is not None:
        return list(canonizers)
    spec = spec_of(model)
    if spec is not None:
        return spec.canonizers()
    family = infer_family(model)
    if family is not None:
        return _family_canonizers(family)
    raise ValueError(
        f"cannot infer zennit canonizers for {type(model).__name__}: it is not built from lit_xai's registry and "
        "contains no known torchvision family (ResNet, VGG, DenseNet, EfficientNet). Pass canonizers=[...] "
        "(e.g. [zennit.torchvision.ResNetCanonizer()]) or canonizers=[] for a plain conv/linear/ReLU network."
    )


def resolve_layer_name(model: nn.Module, name: str) -> str:
    """Full module name in ``model`` for ``name``.

    ``name`` may be given relative to the registry-built network inside a LightningModule (``"layer4"`` for
    ``"net.layer4"``) or as any unique suffix of a full name.
    """
    names = dict(model.named_modules())
    if name in names:
        return name
    root = registered_root(model)
    if root is not None and root[0]:
        candidate = f"{root[0]}.{name}"
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
    """Grad-CAM target layer from the registry or the torchvision family; clear error otherwise."""
    spec = spec_of(model)
    if spec is not None and spec.gradcam_layer:
        return spec.gradcam_layer
    family = infer_family(model)
    if family in FAMILY_GRADCAM_LAYER:
        return FAMILY_GRADCAM_LAYER[family]
    raise ValueError(
        f"cannot infer a Grad-CAM layer for {type(model).__name__}; pass layer='<module name>' "
        "(usually the last convolutional block)"
    )


def default_concept_layer(model: nn.Module) -> str:
    """First candidate CRP layer from the registry or the torchvision family; clear error otherwise."""
    spec = spec_of(model)
    if spec is not None and spec.concept_layers:
        return spec.concept_layers[0]
    family = infer_family(model)
    fallback = {
        "resnet": "layer3",
        "resnet_attention": "layer3",
        "vgg": "features",
        "densenet": "features.denseblock3",
        "efficientnet": "features.6",
    }
    if family in fallback:
        return fallback[family]
    raise ValueError(f"cannot infer a CRP concept layer for {type(model).__name__}; pass layer='<module name>'")


def as_targets(targets: torch.Tensor | int | list, n: int, device: torch.device) -> torch.Tensor:
    """Class indices as a ``LongTensor`` of shape ``(n,)`` (an int is broadcast)."""
    t = torch.as_tensor(targets, device=device).long().clone()
    if t.ndim == 0:
        t = t.expand(n).clone()
    if t.shape != (n,):
        raise ValueError(f"targets must be class indices of shape ({n},), got shape {tuple(t.shape)}")
    return t


@contextlib.contextmanager
def explanation_model(model: nn.Module, copy_model: bool = True) -> Iterator[nn.Module]:
    """Yield a model safe to explain: eval mode, frozen parameters, gradients enabled, no autocast.

    With ``copy_model=True`` (default) a deep copy is explained, so nothing about ``model`` can change. With
    ``copy_model=False`` the model itself is used and its ``training`` flags and ``requires_grad`` are restored in
    ``finally`` (for models that cannot be deep-copied).
    """
    device_type = _device_type(model)
    with torch.inference_mode(False), torch.enable_grad(), torch.autocast(device_type, enabled=False):
        if copy_model:
            try:
                target = copy.deepcopy(model)
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
