"""zennit 0.5.1 canonizers for the networks zennit does not cover: DenseNet, EfficientNet and attention-gated ResNets.

A canonizer temporarily rewrites a network into an equivalent form on which LRP rules are meaningful: batch norms
folded into the preceding convolution, functional operations turned into modules (so rules can attach) and
multiplicative gates marked as *signal-only*. All canonizers here

* compute exactly the same function as the original network (batch-norm merges set ``eps`` to 0, unlike zennit 0.5.1's
  ``MergeBatchNorm`` whose identity-BN still divides by ``sqrt(1 + eps)``);
* revert exactly on ``remove()``: parameters are restored bit for bit and keep their identity, overridden attributes
  get their previous instance value back (or are deleted when there was none), added submodules disappear. zennit's
  composite contexts call ``remove()`` on exit, also when the body raises; a failure half-way through ``apply()``
  reverts what was already applied before re-raising.

Design notes (why, per family):

* **DenseNet** (torchvision): the final ReLU and global pooling are functional, so ``DenseNet.forward`` is replaced by
  one using ``canonizer_relu``/``canonizer_avgpool`` modules (``Pass`` and the proportional ``Norm`` rule apply).
  Only the batch norms that *follow* a convolution are merged (``features.conv0 -> norm0`` and each dense layer's
  ``conv1 -> norm2``); pairing is by data flow, not by registration order: ``SequentialMergeBatchNorm`` would wrongly
  fold each dense layer's ``norm1`` (which normalises the *concatenation* of all earlier outputs) into the previous
  layer's ``conv2``. The pre-activation norms (``norm1``, ``transition.norm``, ``norm5``) keep zennit's ``Pass`` rule,
  which for an element-wise affine map ``y = s x + t`` is exactly the LRP-0 rule with the shift ``t`` ignored
  (``R_x = s x / (s x) R_y = R_y``): relevance is conserved and the shift receives none. Folding them into the
  *following* convolution (``ReLU(s x + t) = s max(x, -t/s) + t`` for ``s > 0``) would need a threshold-ReLU and a
  padding-dependent bias map, and would make the shift absorb relevance; we do not do it.
* **EfficientNet** (torchvision, ReLU variants): squeeze-and-excitation computes ``gate(x) * x``; the gate is treated
  as a constant (signal-only): all relevance flows to ``x``, none into the gate branch. The in-place MBConv residual
  ``result += input`` becomes ``canonizer_sum(torch.stack([input, result], -1))`` with a ``zennit.layer.Sum`` module
  added *before* the composite attaches its hooks (a ``Sum`` created inside ``forward`` would get no rule and double
  the residual relevance, zennit issue #236). Conv->BN pairs are the ``Conv2dNormActivation`` blocks, whose
  registration order equals forward order, so ``SequentialMergeBatchNorm`` pairs them correctly.
* **timm ResNets**: timm's blocks add the shortcut in place (``x += shortcut``), invisible to zennit's torchvision
  block canonizers (relevance doubles per block, 2**8 on resnet18). Their forward is replaced by one summing through a
  ``Sum`` module; the BN merge is the exact sequential one (timm registers conv->bn in forward order).
* **timm EfficientNets**: ``BatchNormAct2d`` (BN + activation with children) is merged as a leaf; each block with
  ``has_skip`` runs its own forward with the skip switched off and adds the shortcut through a ``Sum`` module (robust
  to the block's internals); squeeze-excite gates are signal-only. Depthwise convolutions need the epsilon rule
  (:class:`DepthwiseConv2d` in the composite's layer map): ZPlus on a one-input-channel filter drops relevance.

This module imports nothing else from ``lit_xai`` (like ``zennit/torchvision.py``); family-specific canonizers of this
package's own architectures (the attention gate) live beside those architectures.

Example:
    >>> import torch
    >>> from zennit.composites import EpsilonPlusFlat
    >>> from lit_xai.models.architectures import build_architecture
    >>> net = build_architecture("tiny_densenet", num_classes=2).eval()
    >>> x = torch.rand(1, 3, 32, 32, requires_grad=True)
    >>> with EpsilonPlusFlat(canonizers=[DenseNetCanonizer()]).context(net) as modified:
    ...     out = modified(x)
    ...     (relevance,) = torch.autograd.grad(out[:, 0].sum(), x)
    >>> relevance.shape
    torch.Size([1, 3, 32, 32])
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torchvision.models.densenet import DenseNet, _DenseLayer
from torchvision.models.efficientnet import FusedMBConv, MBConv
from torchvision.ops.misc import SqueezeExcitation
from zennit.canonizers import Canonizer, CompositeCanonizer, MergeBatchNorm, SequentialMergeBatchNorm
from zennit.layer import Sum
from zennit.torchvision import ResNetBasicBlockCanonizer, ResNetBottleneckCanonizer

__all__ = [
    "AttributeOverride",
    "DenseNetCanonizer",
    "DepthwiseConv2d",
    "ElementwiseActivation",
    "EfficientNetCanonizer",
    "ExactResNetCanonizer",
    "ExactSequentialMergeBatchNorm",
    "MonaiDenseNetCanonizer",
    "PairedMergeBatchNorm",
    "SafeCompositeCanonizer",
    "TimmEfficientNetCanonizer",
    "TimmResNetCanonizer",
    "signal_only_gate",
]

_MISSING = object()


# --------------------------------------------------------------------------------------------------------- gates
class _SignalOnlyGate(torch.autograd.Function):
    """``gate * signal`` whose backward sends everything to ``signal`` unchanged and nothing to ``gate``."""

    @staticmethod
    def forward(ctx: Any, gate: torch.Tensor, signal: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        out = gate * signal
        if out.shape != signal.shape:
            raise ValueError(f"gate {tuple(gate.shape)} must broadcast to signal {tuple(signal.shape)}, not widen it")
        ctx.gate_shape = gate.shape
        return out

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        # In LRP the "gradient" flowing between modules is relevance. With the gate held constant, y_i = g_i x_i is a
        # bias-free per-element linear map, for which every LRP-0/epsilon rule gives R_x = R_y: pass it unchanged.
        # The gate gets explicit zeros, not None: autograd still runs the gate branch (it leads back to the input) and
        # zennit's rule hooks on it would then receive grad_output=None and fail.
        return grad_output.new_zeros(ctx.gate_shape), grad_output


def signal_only_gate(gate: torch.Tensor, signal: torch.Tensor) -> torch.Tensor:
    """``gate * signal`` in the forward pass; in the backward pass ``signal`` receives the incoming relevance (gradient)
    unchanged and ``gate`` receives none.

    Example:
        >>> g = torch.full((1, 2, 1, 1), 0.5, requires_grad=True)
        >>> x = torch.ones(1, 2, 3, 3, requires_grad=True)
        >>> signal_only_gate(g, x).sum().backward()
        >>> float(x.grad.sum()), float(g.grad.abs().sum())
        (18.0, 0.0)
    """
    return _SignalOnlyGate.apply(gate, signal)


# ------------------------------------------------------------------------------------------------- base classes
def _apply_each(make: Callable[[], Canonizer], targets: Iterable[Any], register: Callable[..., None]) -> list:
    """Register one fresh canonizer per target; on failure revert the ones already registered, then re-raise."""
    instances: list = []
    try:
        for target in targets:
            instances.append(make())
            register(instances[-1], target)
    except BaseException:
        for instance in reversed(instances):
            # the last one may be half-registered; reverting what it did is best effort, the original error wins
            with contextlib.suppress(Exception):
                instance.remove()
        raise
    return instances


class SafeCompositeCanonizer(CompositeCanonizer):
    """``CompositeCanonizer`` that reverts already applied members when a later one fails, and returns its instances
    in reverse order so that zennit (which removes handles first to last) undoes them last-in first-out.

    Example:
        >>> canonizer = SafeCompositeCanonizer([ExactSequentialMergeBatchNorm()])
        >>> canonizer.apply(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)))[0].batch_norm.eps
        0.0
    """

    def apply(self, root_module: nn.Module) -> list:
        instances: list = []
        try:
            for canonizer in self.canonizers:
                instances += canonizer.apply(root_module)
        except BaseException:
            for instance in reversed(instances):
                instance.remove()
            raise
        return instances[::-1]

    def copy(self) -> SafeCompositeCanonizer:
        new = object.__new__(type(self))
        new.canonizers = tuple(canonizer.copy() for canonizer in self.canonizers)
        return new


class AttributeOverride(Canonizer):
    """Set attributes of matching modules for the duration of a context and restore them *exactly* afterwards.

    zennit's ``AttributeCanonizer`` deletes overridden attributes on ``remove()``, which is only right for attributes
    the instance did not have before (``forward``); this one restores previous instance values (e.g. a flag set in
    ``__init__``) and removes only what it added. Module values become registered submodules, so composites attach
    rules to them.

    Args:
        attribute_map: ``(name, module) -> dict | None``, the attributes to set on ``module`` (``None``: skip it).

    Example:
        >>> override = AttributeOverride(lambda name, m: {"inplace": False} if isinstance(m, nn.ReLU) else None)
        >>> net = nn.Sequential(nn.ReLU(inplace=True))
        >>> handles = override.apply(net)
        >>> net[0].inplace
        False
        >>> for handle in handles:
        ...     handle.remove()
        >>> net[0].inplace
        True
    """

    def __init__(self, attribute_map: Callable[[str, nn.Module], dict[str, Any] | None]) -> None:
        self.attribute_map = attribute_map
        self.module: nn.Module | None = None
        self.previous: dict[str, Any] = {}

    def apply(self, root_module: nn.Module) -> list:
        targets = []
        for name, module in root_module.named_modules():
            attributes = self.attribute_map(name, module)
            if attributes is not None:
                targets.append((module, attributes))
        return _apply_each(self.copy, targets, lambda instance, target: instance.register(*target))

    def register(self, module: nn.Module, attributes: dict[str, Any]) -> None:
        self.module = module
        self.previous = {}
        for key, value in attributes.items():
            previous = _instance_attribute(module, key)
            setattr(module, key, value)
            self.previous[key] = previous  # recorded only once set, so remove() never undoes what did not happen

    def remove(self) -> None:
        if self.module is None:
            return
        for key, value in reversed(list(self.previous.items())):
            if value is _MISSING:
                delattr(self.module, key)
            else:
                setattr(self.module, key, value)
        self.module, self.previous = None, {}

    def copy(self) -> AttributeOverride:
        return AttributeOverride(self.attribute_map)


def _instance_attribute(module: nn.Module, key: str) -> Any:
    """The value ``key`` has on this instance (not on its class), or ``_MISSING``."""
    for store in (module.__dict__, module._parameters, module._buffers, module._modules):
        if key in store:
            return store[key]
    return _MISSING


# ------------------------------------------------------------------------------------------- batch-norm merging
class _ExactMerge(MergeBatchNorm):
    """Merge that also sets the emptied batch norm's ``eps`` to 0, so it computes the identity exactly."""

    def register(self, linears: Iterable[nn.Module], batch_norm: nn.Module) -> None:
        self.batch_norm_eps = batch_norm.eps
        super().register(linears, batch_norm)
        batch_norm.eps = 0.0

    def remove(self) -> None:
        super().remove()
        self.batch_norm.eps = self.batch_norm_eps


class ExactSequentialMergeBatchNorm(_ExactMerge, SequentialMergeBatchNorm):
    """zennit's ``SequentialMergeBatchNorm`` (linear/conv followed by a batch norm *in registration order*), exact:
    the emptied batch norm gets ``eps=0``, and a pair whose channel counts differ (a batch norm that does not
    normalise that conv's output) is skipped instead of being merged by broadcasting.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).eval()
        >>> x = torch.rand(1, 3, 8, 8)
        >>> before = net(x)
        >>> handles = ExactSequentialMergeBatchNorm().apply(net)
        >>> bool(torch.allclose(net(x), before, atol=1e-6)), net[1].eps
        (True, 0.0)
    """

    def apply(self, root_module: nn.Module) -> list:
        pairs = []
        last_leaf = None
        for leaf in _leaves(root_module):
            if isinstance(last_leaf, self.linear_type) and isinstance(leaf, self.batch_norm_type):
                if _out_channels(last_leaf) == leaf.num_features:
                    pairs.append((last_leaf, leaf))
            last_leaf = leaf
        return _apply_each(self.copy, pairs, lambda instance, pair: instance.register((pair[0],), pair[1]))


class PairedMergeBatchNorm(_ExactMerge):
    """Exact batch-norm merge for explicitly given ``(conv_or_linear, batch_norm)`` pairs.

    Args:
        pairs: ``root_module -> iterable of (linear, batch_norm)``, where ``batch_norm`` directly normalises the
            output of ``linear`` (and nothing else reads ``linear``'s output).

    Example:
        >>> conv, bn = nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)
        >>> handles = PairedMergeBatchNorm(lambda root: [(conv, bn)]).apply(nn.Sequential(conv, bn))
        >>> len(handles)
        1
    """

    def __init__(self, pairs: Callable[[nn.Module], Iterable[tuple[nn.Module, nn.Module]]]) -> None:
        super().__init__()
        self.pairs = pairs

    def apply(self, root_module: nn.Module) -> list:
        return _apply_each(
            self.copy, list(self.pairs(root_module)), lambda instance, pair: instance.register((pair[0],), pair[1])
        )

    def copy(self) -> PairedMergeBatchNorm:
        return PairedMergeBatchNorm(self.pairs)


def _leaves(module: nn.Module) -> list[nn.Module]:
    children = list(module.children())
    # a batch norm counts as a leaf even when it has children: timm's BatchNormAct2d holds its activation as a child,
    # and zennit's leaf walk would never pair it with the preceding convolution
    if not children or isinstance(module, nn.modules.batchnorm._BatchNorm):
        return [module]
    return [leaf for child in children for leaf in _leaves(child)]


def _out_channels(module: nn.Module) -> int:
    weight = module.weight
    # transposed convolutions store (in, out/groups, ...)
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        return weight.shape[1] * module.groups
    return weight.shape[0]


# ------------------------------------------------------------------------------------------------------ DenseNet
def _densenet_pairs(root: nn.Module) -> list[tuple[nn.Module, nn.Module]]:
    pairs = []
    for module in root.modules():
        if isinstance(module, DenseNet):
            features = module.features
            if isinstance(getattr(features, "conv0", None), nn.Conv2d) and isinstance(
                getattr(features, "norm0", None), nn.BatchNorm2d
            ):
                pairs.append((features.conv0, features.norm0))
        elif isinstance(module, _DenseLayer):
            pairs.append((module.conv1, module.norm2))
    return pairs


def _densenet_forward(self: DenseNet, x: torch.Tensor) -> torch.Tensor:
    # torchvision applies these two functionally; as modules they get LRP rules (Pass, and Norm = proportional split)
    out = self.canonizer_avgpool(self.canonizer_relu(self.features(x)))
    return self.classifier(torch.flatten(out, 1))


def _densenet_attributes(name: str, module: nn.Module) -> dict[str, Any] | None:
    if isinstance(module, DenseNet):
        return {
            "canonizer_relu": nn.ReLU(),
            "canonizer_avgpool": nn.AdaptiveAvgPool2d(1),
            "forward": _densenet_forward.__get__(module),
        }
    if isinstance(module, _DenseLayer):
        # gradient checkpointing re-runs the forward in the backward pass, outside the rule hooks' bookkeeping
        return {"memory_efficient": False}
    return None


class DenseNetCanonizer(SafeCompositeCanonizer):
    """Canonizer for torchvision DenseNets: module-form final ReLU/pool, exact data-flow BN merges (see module doc).

    Example:
        >>> import torch
        >>> from torchvision.models import DenseNet
        >>> net = DenseNet(8, (2, 2), 16, 2, num_classes=2).eval()
        >>> handles = DenseNetCanonizer().apply(net)
        >>> hasattr(net, "canonizer_relu")
        True
        >>> for handle in handles:
        ...     handle.remove()
        >>> hasattr(net, "canonizer_relu")
        False
    """

    def __init__(self) -> None:
        super().__init__((AttributeOverride(_densenet_attributes), PairedMergeBatchNorm(_densenet_pairs)))


# -------------------------------------------------------------------------------------------------- EfficientNet
def _squeeze_excitation_forward(self: SqueezeExcitation, input: torch.Tensor) -> torch.Tensor:
    # the gate receives no relevance (signal_only_gate), so its branch is computed from a detached input: the backward
    # pass skips it instead of pushing zeros through its pooling and two convolutions (same map, bit for bit)
    return signal_only_gate(self._scale(input.detach()), input)


def _mbconv_forward(self: nn.Module, input: torch.Tensor) -> torch.Tensor:
    result = self.block(input)
    if self.use_res_connect:
        result = self.stochastic_depth(result)
        result = self.canonizer_sum(torch.stack([input, result], dim=-1))
    return result


def _efficientnet_attributes(name: str, module: nn.Module) -> dict[str, Any] | None:
    if isinstance(module, SqueezeExcitation):
        return {"forward": _squeeze_excitation_forward.__get__(module)}
    if isinstance(module, (MBConv, FusedMBConv)):
        # the Sum module is a fresh child registered now, i.e. before the composite attaches hooks
        return {"canonizer_sum": Sum(), "forward": _mbconv_forward.__get__(module)}
    return None


class EfficientNetCanonizer(SafeCompositeCanonizer):
    """Canonizer for torchvision EfficientNets (V1 MBConv and V2 FusedMBConv): signal-only squeeze-excitation gates,
    ``Sum``-module residuals, exact Conv->BN merges.

    The ReLU networks of this package (``efficientnet_b0_relu``) are the intended target; on SiLU networks zennit
    gives SiLU the ``Pass`` rule, which runs but is not a principled LRP rule.

    Example:
        >>> from lit_xai.models.architectures import build_architecture
        >>> net = build_architecture("tiny_efficientnet_relu", num_classes=2).eval()
        >>> handles = EfficientNetCanonizer().apply(net)
        >>> hasattr(net.features[1][0], "canonizer_sum")
        True
    """

    def __init__(self) -> None:
        super().__init__((AttributeOverride(_efficientnet_attributes), ExactSequentialMergeBatchNorm()))


def _monai_densenet_pairs(root: nn.Module) -> list[tuple[nn.Module, nn.Module]]:
    pairs = []
    for module in root.modules():
        if _is_class(module, "monai.", "DenseNet", "DenseNet121", "DenseNet169", "DenseNet201", "DenseNet264"):
            features = module.features
            if isinstance(getattr(features, "conv0", None), nn.Conv2d) and isinstance(
                getattr(features, "norm0", None), nn.BatchNorm2d
            ):
                pairs.append((features.conv0, features.norm0))
        elif _is_class(module, "monai.", "_DenseLayer"):
            layers = module.layers
            if isinstance(getattr(layers, "conv1", None), nn.Conv2d) and isinstance(
                getattr(layers, "norm2", None), nn.BatchNorm2d
            ):
                pairs.append((layers.conv1, layers.norm2))
    return pairs


class MonaiDenseNetCanonizer(SafeCompositeCanonizer):
    """Canonizer for MONAI DenseNets (``spatial_dims=2``): the exact data-flow BN merges of the torchvision DenseNet
    (``conv0 -> norm0`` and each dense layer's ``conv1 -> norm2``); MONAI's final ReLU and pooling are already
    modules, and the pre-activation norms keep the ``Pass`` rule (see the module doc)."""

    def __init__(self) -> None:
        super().__init__((PairedMergeBatchNorm(_monai_densenet_pairs),))


class ExactResNetCanonizer(SafeCompositeCanonizer):
    """zennit's ``ResNetCanonizer`` (``Sum`` residuals in Bottleneck/BasicBlock) with the exact batch-norm merge.

    zennit 0.5.1's merge leaves each emptied batch norm dividing by ``sqrt(1 + eps)``, so the canonized ResNet-18's
    logits differ by about 1e-4 (relative) from the network's; with ``eps=0`` they agree to float precision.

    Example:
        >>> from torchvision.models import resnet18
        >>> len(ExactResNetCanonizer().apply(resnet18().eval())) > 0
        True
    """

    def __init__(self) -> None:
        super().__init__((ExactSequentialMergeBatchNorm(), ResNetBottleneckCanonizer(), ResNetBasicBlockCanonizer()))


# ------------------------------------------------------------------------------------------------------- timm
def _is_class(module: nn.Module, package: str, *names: str) -> bool:
    # recognised by module path and class name, so optional packages (MONAI, timm) are never imported here
    cls = type(module)
    return cls.__module__.startswith(package) and cls.__name__ in names


def _is_timm(module: nn.Module, *names: str) -> bool:
    # recognised by module path and class name, so timm is never imported here (it is an optional dependency)
    cls = type(module)
    return cls.__module__.startswith("timm.") and cls.__name__ in names


def _timm_block_tail(self: nn.Module, x: torch.Tensor, shortcut: torch.Tensor, act: nn.Module) -> torch.Tensor:
    if getattr(self, "se", None) is not None:
        x = self.se(x)
    if getattr(self, "drop_path", None) is not None:
        x = self.drop_path(x)
    if self.downsample is not None:
        shortcut = self.downsample(shortcut)
    return act(self.canonizer_sum(torch.stack([shortcut, x], dim=-1)))


def _timm_basic_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    shortcut = x
    x = self.aa(self.act1(self.drop_block(self.bn1(self.conv1(x)))))
    return _timm_block_tail(self, self.bn2(self.conv2(x)), shortcut, self.act2)


def _timm_bottleneck_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    shortcut = x
    x = self.act1(self.bn1(self.conv1(x)))
    x = self.aa(self.act2(self.drop_block(self.bn2(self.conv2(x)))))
    return _timm_block_tail(self, self.bn3(self.conv3(x)), shortcut, self.act3)


def _timm_resnet_attributes(name: str, module: nn.Module) -> dict[str, Any] | None:
    if _is_timm(module, "BasicBlock"):
        return {"canonizer_sum": Sum(), "forward": _timm_basic_forward.__get__(module)}
    if _is_timm(module, "Bottleneck"):
        return {"canonizer_sum": Sum(), "forward": _timm_bottleneck_forward.__get__(module)}
    return None


class TimmResNetCanonizer(SafeCompositeCanonizer):
    """Canonizer for timm ResNets (``resnet18/34/50``, ``resnet50d``, ... and torchgeo's ``ClassificationTask``
    backbones): exact BN merges and ``Sum``-module residuals replacing timm's in-place ``x += shortcut``.

    Example:
        >>> import timm  # doctest: +SKIP
        >>> handles = TimmResNetCanonizer().apply(timm.create_model("resnet18").eval())  # doctest: +SKIP
    """

    def __init__(self) -> None:
        super().__init__((ExactSequentialMergeBatchNorm(), AttributeOverride(_timm_resnet_attributes)))


def _timm_skip_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    # the block's own forward, run with has_skip switched off by the override, then the skip through a Sum module
    body = type(self).forward(self, x)
    return self.canonizer_sum(torch.stack([x, body], dim=-1))


def _timm_squeeze_excite_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    gate = self.gate(self.conv_expand(self.act1(self.conv_reduce(x.mean((2, 3), keepdim=True)))))
    return signal_only_gate(gate, x)


def _timm_efficientnet_attributes(name: str, module: nn.Module) -> dict[str, Any] | None:
    if _is_timm(module, "SqueezeExcite"):
        return {"forward": _timm_squeeze_excite_forward.__get__(module)}
    if getattr(module, "has_skip", False) is True and type(module).__module__.startswith("timm."):
        return {"has_skip": False, "canonizer_sum": Sum(), "forward": _timm_skip_forward.__get__(module)}
    return None


class TimmEfficientNetCanonizer(SafeCompositeCanonizer):
    """Canonizer for timm EfficientNets / MobileNets: ``BatchNormAct2d`` merged into the preceding convolution,
    residuals through ``Sum`` modules, signal-only squeeze-excite gates. Use it with :class:`DepthwiseConv2d` mapped
    to an epsilon rule (the explanation profile of the family does this).

    Example:
        >>> import timm  # doctest: +SKIP
        >>> handles = TimmEfficientNetCanonizer().apply(timm.create_model("efficientnet_b0").eval())  # doctest: +SKIP
    """

    def __init__(self) -> None:
        super().__init__((AttributeOverride(_timm_efficientnet_attributes), ExactSequentialMergeBatchNorm()))


class _DepthwiseMeta(type):
    def __instancecheck__(cls, instance: Any) -> bool:
        return isinstance(instance, nn.Conv2d) and instance.groups > 1


class DepthwiseConv2d(metaclass=_DepthwiseMeta):
    """Type matching grouped/depthwise ``nn.Conv2d`` (``groups > 1``) in a zennit ``layer_map``; zennit matches
    rules with ``isinstance``.

    Example:
        >>> isinstance(nn.Conv2d(4, 4, 3, groups=4), DepthwiseConv2d), isinstance(nn.Conv2d(4, 4, 3), DepthwiseConv2d)
        (True, False)
    """


#: element-wise activations of other libraries (timm's own ``GELU``, ``Swish``, ...): zennit's ``Activation`` type
#: only lists ``torch.nn`` classes, and an activation without a rule applies its gradient to the relevance
_ACTIVATION_NAMES = frozenset(
    {"GELU", "GELUTanh", "QuickGELU", "SiLU", "Swish", "HardSwish", "Hardswish", "Mish", "Sigmoid", "HardSigmoid"}
)


class _ActivationMeta(type):
    def __instancecheck__(cls, instance: Any) -> bool:
        return isinstance(instance, nn.Module) and type(instance).__name__ in _ACTIVATION_NAMES


class ElementwiseActivation(metaclass=_ActivationMeta):
    """Type matching element-wise activation modules by class name, whatever library defines them, for a zennit
    ``layer_map`` (map it to ``Pass``: AttnLRP's identity rule).

    Example:
        >>> class GELU(nn.Module): ...
        >>> isinstance(GELU(), ElementwiseActivation), isinstance(nn.Linear(1, 1), ElementwiseActivation)
        (True, False)
    """
