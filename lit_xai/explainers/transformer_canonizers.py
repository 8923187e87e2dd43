"""zennit canonizers for ConvNeXts, Vision Transformers and MobileNetV3 (torchvision and timm).

Each rewrites, for the duration of a composite context, the operations zennit cannot give a rule to, following
AttnLRP's treatment (see :mod:`lit_xai.explainers.attn_rules`):

* every ``nn.LayerNorm`` (timm's and torchvision's channels-first ``LayerNorm2d`` included) runs
  :func:`~lit_xai.explainers.attn_rules.layer_norm_rule`: identity rule on the ``1/std`` normalisation, epsilon rule
  on centring and affine map;
* residual additions (``x + f(x)``, in place or not) go through a ``zennit.layer.Sum`` module (proportional
  ``Norm`` rule), registered before the composite attaches its hooks;
* layer scale (``gamma * x``) and squeeze-excitation (``gate(x) * x``) are constant gates: all relevance flows to
  the signal (:func:`~lit_xai.explainers.canonizers.signal_only_gate`);
* attention mixes the values with the softmax weights held constant (CP-LRP, as ``lxt`` does inside attention for
  ViTs), queries and keys get no relevance; torchvision's ``nn.MultiheadAttention`` is re-expressed with its own
  parameters so that its input projection gets the epsilon rule and its output projection the composite's;
* GELU / SiLU / Hardswish keep zennit's ``Pass`` (AttnLRP's identity rule for element-wise non-linearities).

Classes are recognised by module path and name, so neither timm nor torchvision internals are imported at module
load beyond what :mod:`lit_xai.explainers.canonizers` already imports.

Example:
    >>> import torch
    >>> from torchvision.models import convnext_tiny
    >>> from zennit.composites import EpsilonPlusFlat
    >>> net = convnext_tiny(num_classes=2).eval()
    >>> handles = ConvNeXtCanonizer().apply(net)
    >>> hasattr(net.features[1][0], "canonizer_sum")
    True
    >>> for handle in handles:
    ...     handle.remove()
    >>> hasattr(net.features[1][0], "canonizer_sum")
    False
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from zennit.layer import Sum

from .attn_rules import layer_norm_rule, linear_rule, mix_rule
from .canonizers import (
    AttributeOverride,
    ExactSequentialMergeBatchNorm,
    SafeCompositeCanonizer,
    _squeeze_excitation_forward,
    signal_only_gate,
)

__all__ = ["ConvNeXtCanonizer", "LayerNormCanonizer", "MobileNetV3Canonizer", "ViTCanonizer", "is_class"]


def is_class(module: nn.Module, package: str, *names: str) -> bool:
    """``module``'s class is one of ``names`` defined under the ``package`` module path (e.g. ``"timm."``)."""
    cls = type(module)
    return cls.__module__.startswith(package) and cls.__name__ in names


def _residual(self: nn.Module, shortcut: torch.Tensor, branch: torch.Tensor, attr: str = "canonizer_sum") -> Any:
    summer = getattr(self, attr)
    if "forward" in vars(summer):  # lit_xai's fast Norm rule took the Sum: it adds two summands without a stack
        return summer(shortcut, branch)
    return summer(torch.stack([shortcut, branch], dim=-1))


# ---------------------------------------------------------------------------------------------------- LayerNorm
def _layer_norm_forward(self: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    # timm's and torchvision's LayerNorm2d normalise the channels of an (N, C, H, W) map
    return layer_norm_rule(x, self.weight, self.bias, self.eps, channels_first=type(self).__name__.endswith("2d"))


def _layer_norm_attributes(name: str, module: nn.Module) -> dict[str, Any] | None:
    if isinstance(module, nn.LayerNorm) and len(module.normalized_shape) == 1:
        return {"forward": _layer_norm_forward.__get__(module)}
    return None


class LayerNormCanonizer(SafeCompositeCanonizer):
    """Every one-dimensional ``nn.LayerNorm`` (incl. ``LayerNorm2d`` subclasses) under AttnLRP's LayerNorm rule.

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
        >>> handles = LayerNormCanonizer().apply(net)
        >>> "forward" in vars(net[1])
        True
    """

    def __init__(self) -> None:
        super().__init__((AttributeOverride(_layer_norm_attributes),))


# ------------------------------------------------------------------------------------------------------ ConvNeXt
def _timm_convnext_block_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    shortcut = x
    x = self.conv_dw(x)
    if self.use_conv_mlp:
        x = self.mlp(self.norm(x))
    else:
        x = self.mlp(self.norm(x.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)
    if self.gamma is not None:
        x = signal_only_gate(self.gamma.reshape(1, -1, 1, 1), x)
    return _residual(self, self.shortcut(shortcut), self.drop_path(x))


def _torchvision_cnblock_forward(self: nn.Module, input: torch.Tensor) -> torch.Tensor:
    result = self.stochastic_depth(signal_only_gate(self.layer_scale, self.block(input)))
    return _residual(self, input, result)


def _convnext_attributes(name: str, module: nn.Module) -> dict[str, Any] | None:
    if is_class(module, "timm.", "ConvNeXtBlock"):
        return {"canonizer_sum": Sum(), "forward": _timm_convnext_block_forward.__get__(module)}
    if is_class(module, "torchvision.models.convnext", "CNBlock"):
        return {"canonizer_sum": Sum(), "forward": _torchvision_cnblock_forward.__get__(module)}
    return _layer_norm_attributes(name, module)


class ConvNeXtCanonizer(SafeCompositeCanonizer):
    """ConvNeXt (timm ``convnext_*`` and torchvision ``convnext_*``): LayerNorm rule, layer scale as a constant gate,
    residuals through ``Sum`` modules. Use with an epsilon rule on the depthwise 7x7 convolutions (the profile
    does)."""

    def __init__(self) -> None:
        super().__init__((AttributeOverride(_convnext_attributes),))


# ------------------------------------------------------------------------------------------- Vision Transformers
def _timm_attention_forward(
    self: nn.Module, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False
) -> torch.Tensor:
    if attn_mask is not None or is_causal:
        raise NotImplementedError("LRP through masked attention is not supported (classification ViTs use none)")
    b, n, _ = x.shape
    gate = self.gate(x).sigmoid() if getattr(self, "gate", None) is not None else None
    qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    with torch.no_grad():  # the attention weights are constants of the rule: no graph through queries and keys
        q, k = self.q_norm(q), self.k_norm(k)
        weights = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
    x = mix_rule(weights, v).transpose(1, 2).reshape(b, n, -1)
    x = self.norm(x)
    if gate is not None:
        x = signal_only_gate(gate, x)
    return self.proj_drop(self.proj(x))


def _timm_block_forward(
    self: nn.Module, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False
) -> torch.Tensor:
    x = _residual(self, x, self.drop_path1(self.ls1(self.attn(self.norm1(x)))), "canonizer_sum1")
    return _residual(self, x, self.drop_path2(self.ls2(self.mlp(self.norm2(x)))), "canonizer_sum2")


def _layer_scale_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return signal_only_gate(self.gamma, x)


def _multihead_attention(mha: nn.MultiheadAttention, x: torch.Tensor) -> torch.Tensor:
    """Self-attention of a batch-first ``nn.MultiheadAttention`` with the rules above (no masks, no dropout)."""
    if not mha.batch_first or mha.in_proj_weight is None:
        raise NotImplementedError("LRP supports batch-first nn.MultiheadAttention with a packed input projection")
    b, n, d = x.shape
    heads = mha.num_heads
    qkv = linear_rule(x, mha.in_proj_weight, mha.in_proj_bias).reshape(b, n, 3, heads, d // heads)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
    with torch.no_grad():
        weights = ((q * (d // heads) ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
    out = mix_rule(weights, v).transpose(1, 2).reshape(b, n, d)
    return mha.out_proj(out)  # a module call: the composite's Linear rule applies


def _torchvision_encoder_block_forward(self: nn.Module, input: torch.Tensor) -> torch.Tensor:
    x = self.dropout(_multihead_attention(self.self_attention, self.ln_1(input)))
    x = _residual(self, input, x, "canonizer_sum1")
    return _residual(self, x, self.mlp(self.ln_2(x)), "canonizer_sum2")


def _vit_attributes(name: str, module: nn.Module) -> dict[str, Any] | None:
    if is_class(module, "timm.", "Block") and hasattr(module, "attn") and hasattr(module, "ls1"):
        return {
            "canonizer_sum1": Sum(),
            "canonizer_sum2": Sum(),
            "forward": _timm_block_forward.__get__(module),
        }
    if is_class(module, "timm.", "Attention") and hasattr(module, "qkv"):
        return {"forward": _timm_attention_forward.__get__(module)}
    if is_class(module, "timm.", "LayerScale"):
        return {"forward": _layer_scale_forward.__get__(module)}
    if is_class(module, "torchvision.models.vision_transformer", "EncoderBlock"):
        return {
            "canonizer_sum1": Sum(),
            "canonizer_sum2": Sum(),
            "forward": _torchvision_encoder_block_forward.__get__(module),
        }
    return _layer_norm_attributes(name, module)


class ViTCanonizer(SafeCompositeCanonizer):
    """Vision Transformers (timm ``vit_*``/DeiT ``VisionTransformer`` and torchvision ``vit_*``): AttnLRP's LayerNorm
    rule, CP-LRP attention (constant softmax weights), layer scale as a constant gate, residuals through ``Sum``
    modules.

    The position embedding is added to the patch tokens as a constant (it receives no relevance, like a bias
    ignored by the rules); the class token is a parameter, so the relevance it carries at the input is not part of
    the pixel map (in trained ViTs a small share).
    """

    def __init__(self) -> None:
        super().__init__((AttributeOverride(_vit_attributes),))


# --------------------------------------------------------------------------------------------------- MobileNetV3
def _inverted_residual_forward(self: nn.Module, input: torch.Tensor) -> torch.Tensor:
    result = self.block(input)
    if self.use_res_connect:
        result = _residual(self, input, result)
    return result


def _mobilenet_v3_attributes(name: str, module: nn.Module) -> dict[str, Any] | None:
    from torchvision.ops.misc import SqueezeExcitation

    if isinstance(module, SqueezeExcitation):
        return {"forward": _squeeze_excitation_forward.__get__(module)}
    if is_class(module, "torchvision.models.mobilenetv3", "InvertedResidual"):
        return {"canonizer_sum": Sum(), "forward": _inverted_residual_forward.__get__(module)}
    return None


class MobileNetV3Canonizer(SafeCompositeCanonizer):
    """torchvision MobileNetV3: signal-only squeeze-excitation gates (hard-sigmoid), ``Sum``-module residuals, exact
    Conv->BN merges; Hardswish keeps zennit's ``Pass`` (identity rule)."""

    def __init__(self) -> None:
        super().__init__((AttributeOverride(_mobilenet_v3_attributes), ExactSequentialMergeBatchNorm()))
