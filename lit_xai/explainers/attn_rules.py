"""LRP rules for the operations of transformers and ConvNeXts, as autograd functions whose backward *is* the rule.

In zennit the "gradient" flowing between modules is relevance; an operation without a rule applies its plain
gradient to it and breaks conservation (a LayerNorm rescales relevance by about ``1/std``, a residual ``x + f(x)``
duplicates it). These functions follow AttnLRP (Achtibat et al., "AttnLRP: Attention-Aware Layer-Wise Relevance
Propagation for Transformers", ICML 2024, and its package ``lxt`` 2.1):

* :func:`layer_norm_rule` -- LayerNorm ``y = w (x - mean(x)) / std(x) + b``: the division by the standard deviation
  is an element-wise non-linearity under the *identity rule* (``std`` held constant, AttnLRP Sec. 3.3.3; ``lxt``
  implements it as ``(x - mean) / std.detach()``); the mean-centring and the affine map are linear and get the
  epsilon rule with the shift ``b`` ignored (it receives no relevance, as zennit's ``Pass`` gives a batch norm's
  shift none; a denominator including ``b`` explodes where ``y ≈ 0`` but ``y - b`` is not). Together:
  ``R_x = x * (g - mean(g))`` with ``g = R w / (std * s(y - b))``, which conserves ``Σ R_x = Σ R``.
* :func:`mix_rule` -- attention's value mixing ``y = A @ v`` with the softmax weights ``A`` held constant (CP-LRP,
  Ali et al., ICML 2022; the variant ``lxt`` uses inside attention for vision transformers): epsilon rule on a
  linear map of ``v``, ``R_v = v * A^T (R / s(y))``; queries and keys receive no relevance.
* :func:`linear_rule` -- the epsilon rule for a functional ``F.linear`` (``nn.MultiheadAttention``'s input
  projection, which no zennit rule can reach).

GELU, SiLU and Hardswish (``x * gate(x)``) need no function here: zennit maps every activation to ``Pass``, which
*is* AttnLRP's identity rule for element-wise non-linearities. Constant element-wise gates (layer scale,
squeeze-excitation) use :func:`lit_xai.explainers.canonizers.signal_only_gate`; residual sums use zennit's ``Sum``
module (proportional ``Norm`` rule).

Example:
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> x = torch.randn(2, 5, 8, dtype=torch.float64, requires_grad=True)
    >>> norm = torch.nn.LayerNorm(8, dtype=torch.float64)
    >>> y = layer_norm_rule(x, norm.weight, None, norm.eps)
    >>> bool(torch.allclose(y, torch.nn.functional.layer_norm(x, (8,), norm.weight, None, norm.eps)))
    True
    >>> incoming = torch.rand_like(y)  # relevance at the output; R_x sums to the same total
    >>> (relevance,) = torch.autograd.grad(y, x, incoming)
    >>> bool(torch.allclose(relevance.sum(), incoming.sum()))
    True
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["STABILIZER", "layer_norm_rule", "linear_rule", "mix_rule"]

#: epsilon of the stabilised denominators ``s(z) = z + eps * sign(z)`` (zennit's default)
STABILIZER = 1e-6


def _stabilize(z: torch.Tensor, eps: float) -> torch.Tensor:
    return z + ((z == 0).to(z) + z.sign()) * eps


class _LayerNormRule(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float, stab: float
    ) -> torch.Tensor:
        mean = x.mean(-1, keepdim=True)
        rstd = (x.var(-1, unbiased=False, keepdim=True) + eps).rsqrt()
        y = (x - mean) * rstd
        if weight is not None:
            y = y * weight
        if bias is not None:
            y = y + bias
        ctx.save_for_backward(x, rstd, weight, y if bias is None else y - bias)
        ctx.stab = stab
        return y

    @staticmethod
    def backward(ctx: Any, relevance: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        x, rstd, weight, z = ctx.saved_tensors  # z = y - bias
        scale = rstd if weight is None else rstd * weight
        g = relevance * scale / _stabilize(z, ctx.stab)
        return x * (g - g.mean(-1, keepdim=True)), None, None, None, None


def layer_norm_rule(
    x: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    eps: float,
    channels_first: bool = False,
    stabilizer: float = STABILIZER,
) -> torch.Tensor:
    """LayerNorm over the last dimension (``channels_first``: over dim 1 of an ``(N, C, ...)`` map) with the AttnLRP
    rule as its backward (see the module docstring)."""
    if channels_first:
        moved = x.movedim(1, -1)
        return _LayerNormRule.apply(moved, weight, bias, eps, stabilizer).movedim(-1, 1)
    return _LayerNormRule.apply(x, weight, bias, eps, stabilizer)


class _MixRule(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, weights: torch.Tensor, values: torch.Tensor, stab: float) -> torch.Tensor:  # type: ignore[override]
        out = weights @ values
        ctx.save_for_backward(weights, values, out)
        ctx.stab = stab
        return out

    @staticmethod
    def backward(ctx: Any, relevance: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        weights, values, out = ctx.saved_tensors
        return None, values * (weights.transpose(-2, -1) @ (relevance / _stabilize(out, ctx.stab))), None


def mix_rule(weights: torch.Tensor, values: torch.Tensor, stabilizer: float = STABILIZER) -> torch.Tensor:
    """``weights @ values`` with the weights (attention probabilities) held constant: relevance flows to the values
    only, by the epsilon rule.

    Example:
        >>> a = torch.softmax(torch.randn(1, 4, 4, dtype=torch.float64), -1)
        >>> v = torch.randn(1, 4, 3, dtype=torch.float64, requires_grad=True)
        >>> out = mix_rule(a, v)
        >>> (r,) = torch.autograd.grad(out, v, out)
        >>> bool(torch.allclose(r.sum(), out.sum()))
        True
    """
    return _MixRule.apply(weights.detach(), values, stabilizer)


class _LinearRule(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stab: float
    ) -> torch.Tensor:
        out = F.linear(x, weight, bias)
        ctx.save_for_backward(x, weight, out)
        ctx.stab = stab
        return out

    @staticmethod
    def backward(ctx: Any, relevance: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        x, weight, out = ctx.saved_tensors
        return x * ((relevance / _stabilize(out, ctx.stab)) @ weight), None, None, None


def linear_rule(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, stabilizer: float = STABILIZER
) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` with the epsilon rule as its backward."""
    return _LinearRule.apply(x, weight, bias, stabilizer)
