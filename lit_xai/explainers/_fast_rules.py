"""Fast LRP rules for ``Conv2d`` / ``Linear``: zennit's arithmetic without zennit's redundant passes.

zennit 0.5.1 attaches a rule as hooks: the layer's ordinary autograd backward still runs (its result is thrown
away), and the rule then re-runs one modified forward per term and differentiates through all of them (the Gamma
rule: 5 forwards + 5 backwards per layer, one of them with an all-zero gradient). Here a rule-carrying layer instead
runs as one :class:`torch.autograd.Function` whose backward *is* the rule, written with the fewest convolutions:

* ``Epsilon``: ``x * W^T (R / s(z))`` with the forward output ``z`` reused — one transposed convolution;
* ``ZPlus`` on non-negative inputs (every layer after a ReLU): ``D = W+ x + b+``, ``x * W+^T (R / s(D))`` — one
  extra forward, one transposed convolution;
* ``Gamma`` on non-negative inputs: with ``P = W+ x`` the two denominators are ``z + γ (P + b+)`` and
  ``z + γ (W x - P + b-)`` (one extra forward); the backward
  ``x * [Wγ+^T a + Wγ-^T b] = x * [(1 + γ/2) W^T (a + b) + γ/2 |W|^T (a - b)]`` is one transposed convolution over
  the stacked gradients (``Wγ± = W + γ W±``, ``W± = (W ± |W|) / 2``).

These are algebraic identities of zennit's formulas; results agree with zennit to rounding (``tests/test_lrp.py``
checks 1e-5 relative). Anything not recognised exactly — other rules, rule parameters that cannot be read, a
stabiliser with ``clip``/``norm_scale``, ``zero_params``, a layer whose input has negative entries (ZPlus/Gamma on a
first layer), non-zero padding modes — keeps zennit's own hook, so coverage never changes, only speed.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from zennit import rules as zrules
from zennit.core import Composite, RemovableHandleList, Stabilizer

__all__: list[str] = []  # private module: used by lrp_relevance / crp


@dataclass(frozen=True)
class _Rule:
    kind: str  # "epsilon" | "zplus" | "gamma"
    eps: float
    gamma: float = 0.0


def _closure(fn: Any) -> dict[str, Any]:
    code = getattr(fn, "__code__", None)
    if code is None or fn.__closure__ is None:
        return {}
    return dict(zip(code.co_freevars, (cell.cell_contents for cell in fn.__closure__)))


def _plain_eps(stabilizer: Any) -> float | None:
    """The epsilon of a default-mode zennit :class:`Stabilizer` (sign-shift only), else ``None``."""
    if not isinstance(stabilizer, Stabilizer) or stabilizer.clip or stabilizer.norm_scale:
        return None
    return float(stabilizer.epsilon) if isinstance(stabilizer.epsilon, (int, float)) else None


def _no_zero_params(hook: Any) -> bool:
    # the first modifier carries the user's zero_params (later ones add zennit's own "bias" for bias-free terms)
    return not getattr(hook.param_modifiers[0], "zero_params", None)


def rule_of(hook: Any) -> _Rule | None:
    """Read a zennit rule's parameters when it is exactly one of the rules implemented here, else ``None``."""
    if type(hook) not in (zrules.Epsilon, zrules.ZPlus, zrules.Gamma) or not _no_zero_params(hook):
        return None
    eps = _plain_eps(_closure(hook.gradient_mapper).get("stabilizer_fn"))
    if eps is None:
        return None
    if type(hook) is zrules.Epsilon:
        return _Rule("epsilon", eps)
    if type(hook) is zrules.ZPlus:
        return _Rule("zplus", eps)
    gamma_vars = _closure(getattr(hook.param_modifiers[0], "modifier", None))
    gamma = gamma_vars.get("gamma")
    if not isinstance(gamma, (int, float)) or gamma_vars.get("min") != 0.0 or gamma_vars.get("max") is not None:
        return None
    return _Rule("gamma", eps, float(gamma))


def _stabilize(z: torch.Tensor, eps: float) -> torch.Tensor:
    # zennit.core.stabilize with clip=False, norm_scale=False, same operation order
    return z + ((z == 0.0).to(z) + z.sign()) * eps


def _supported(module: nn.Module) -> bool:
    if type(module) is nn.Linear:
        return True
    return type(module) is nn.Conv2d and module.padding_mode == "zeros" and not isinstance(module.padding, str)


def _forward(module: nn.Module, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    if isinstance(module, nn.Linear):
        return F.linear(x, weight, bias)
    return F.conv2d(x, weight, bias, module.stride, module.padding, module.dilation, module.groups)


def _transposed(module: nn.Module, grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``W^T grad``: the input gradient of ``_forward(module, x, weight)`` for output gradient ``grad``."""
    if isinstance(module, nn.Linear):
        return grad @ weight
    return torch.ops.aten.convolution_backward(
        grad, x, weight, None, module.stride, module.padding, module.dilation, False, [0, 0], module.groups,
        [True, False, False],
    )[0]  # fmt: skip


class _RuleLayer(torch.autograd.Function):
    """Forward: the layer unchanged. Backward: the LRP rule's input relevance (no ordinary backward at all)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, module: nn.Module, rule: _Rule) -> torch.Tensor:
        weight, bias = module.weight, module.bias
        out = _forward(module, x, weight, bias)
        ctx.module, ctx.rule = module, rule
        # a clone: downstream in-place ops (ReLU(inplace=True)) must not change what the rule divides by
        ctx.save_for_backward(x, out.clone())
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        x, z = ctx.saved_tensors
        module, rule = ctx.module, ctx.rule
        weight, bias = module.weight.detach(), module.bias
        bias = None if bias is None else bias.detach()
        if rule.kind == "epsilon":
            return x * _transposed(module, grad / _stabilize(z, rule.eps), x, weight), None, None
        w_pos = weight.clamp(min=0)
        if rule.kind == "zplus":
            denom = _forward(module, x, w_pos, None if bias is None else bias.clamp(min=0))
            return x * _transposed(module, grad / _stabilize(denom, rule.eps), x, w_pos), None, None
        g = rule.gamma
        pos = _forward(module, x, w_pos, None)  # P = W+ x; W x = z - b
        if bias is not None:
            plain = z - _bias_view(bias, z)
            pos_b, neg_b = pos + _bias_view(bias.clamp(min=0), z), plain - pos + _bias_view(bias.clamp(max=0), z)
        else:
            pos_b, neg_b = pos, z - pos
        # zennit's two masked terms a = [z > 0] R / s(z + γ(P + b+)), b = [z < 0] R / s(z + γ(Q + b-)) never overlap:
        # one denominator picks the term per element (same values elementwise), then a + b = q, a - b = q sign(z)
        positive = z > 0.0
        q = (z != 0.0) * grad / _stabilize(z + g * torch.where(positive, pos_b, neg_b), rule.eps)
        a_plus_b, a_minus_b = q, q * z.sign()
        # [(1 + g/2) W; g/2 |W|] stacked along output channels, gradients [a + b; a - b] along theirs
        stacked_w = torch.cat([(1.0 + g / 2) * weight, (g / 2) * weight.abs()], dim=0)
        stacked_g = torch.cat([a_plus_b, a_minus_b], dim=1)
        if isinstance(module, nn.Linear):
            back = stacked_g @ stacked_w
        else:
            back = _transposed_stacked(module, stacked_g, x, stacked_w)
        return x * back, None, None


def _bias_view(bias: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return bias.reshape(1, -1, *([1] * (like.ndim - 2)))


def _transposed_stacked(module: nn.Module, grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``W1^T g1 + W2^T g2`` as one call: output channels (and gradient channels) stacked ``[1; 2]``."""
    if module.groups != 1:  # stacking output channels would regroup them; two calls instead
        half = weight.shape[0] // 2
        return _transposed(module, grad[:, :half], x, weight[:half]) + _transposed(
            module, grad[:, half:], x, weight[half:]
        )
    return _transposed(module, grad, x, weight)


class _PassLayer(torch.autograd.Function):
    """zennit's ``Pass`` rule (relevance passes unchanged) without its identity node, clone and hooks."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, module: nn.Module) -> torch.Tensor:
        if isinstance(module, nn.ReLU):
            return torch.relu(x)  # never in place: x belongs to the caller's graph
        return type(module).forward(module, x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


def _pass_supported(module: nn.Module, template: Any) -> bool:
    return type(template) is zrules.Pass and (
        type(module) is nn.ReLU or (type(module) is nn.BatchNorm2d and not module.training)
    )


class FastRules:
    """Register a zennit composite with the fast rules swapped in where they apply.

    Canonizers and every hook the fast rules do not cover are registered exactly as ``composite.register`` would
    (same module map, same order); a covered ``Conv2d``/``Linear`` instead gets an instance ``forward`` that runs
    :class:`_RuleLayer` when its input is non-negative (ZPlus/Gamma) or always (Epsilon), and zennit's hook
    otherwise. :meth:`remove` restores everything (also after a failed :meth:`register`).
    """

    def __init__(self, composite: Composite) -> None:
        self.composite = composite
        self.patched: list[nn.Module] = []
        self.fast_layers = 0

    def register(self, model: nn.Module) -> None:
        comp = self.composite
        comp.remove()
        for canonizer in comp.canonizers:
            comp.handles += canonizer.apply(model)
        ctx: dict = {}
        for name, child in model.named_modules():
            template = comp.module_map(ctx, name, child)
            if template is None:
                continue
            if _pass_supported(child, template):
                child.forward = _make_pass_forward(child)
                self.patched.append(child)
                continue
            rule = rule_of(template) if _supported(child) else None
            hook = template.copy()
            if rule is None:
                comp.hook_refs.add(hook)
                comp.handles.append(hook.register(child))
                continue
            # zennit's hook as the fallback for inputs with negative entries (same module, same semantics)
            fallback = _FallbackHook(hook, child)
            comp.hook_refs.add(hook)
            comp.handles.append(fallback.handles)
            child.forward = _make_forward(child, rule, fallback)
            self.patched.append(child)
            self.fast_layers += 1

    def remove(self) -> None:
        for module in self.patched:
            module.__dict__.pop("forward", None)
        self.patched.clear()
        self.composite.remove()


class _FallbackHook:
    """zennit's hook on a module, applied only to calls the fast rule cannot take (switched per call)."""

    def __init__(self, hook: Any, module: nn.Module) -> None:
        self.hook = hook
        self.module = module
        self.handles = RemovableHandleList()
        self.handles.append(_Unregister(hook))
        # zennit's backward re-runs ``module.forward`` with modified parameters: while it does, the patched forward
        # must be the layer's own (else it would re-enter this hook without end)
        self.in_backward = False
        # no reference cycles (hook -> closure -> self -> hook): the explained copy must be freed by reference
        # counting alone (tests/test_explainer_contract.py), so the closure holds weak references only
        hook_ref, self_ref = weakref.ref(hook), weakref.ref(self)

        def backward(module: nn.Module, grad_input: Any, grad_output: Any) -> Any:
            owner, rule = self_ref(), hook_ref()
            if owner is None or rule is None:
                return None
            owner.in_backward = True
            try:
                return type(rule).backward(rule, module, grad_input, grad_output)
            finally:
                owner.in_backward = False

        hook.backward = backward

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        hook, module = self.hook, self.module
        x = hook.pre_forward(module, (x,))
        out = type(module).forward(module, x)
        hook.forward(module, (x,), out)
        return hook.post_forward(module, (x,), out)


class _Unregister:
    def __init__(self, hook: Any) -> None:
        self.hook = hook

    def remove(self) -> None:
        self.hook.remove()


def _make_forward(module: nn.Module, rule: _Rule, fallback: _FallbackHook) -> Any:
    def forward(x: torch.Tensor) -> torch.Tensor:
        if fallback.in_backward or not torch.is_grad_enabled() or not x.requires_grad:
            return type(module).forward(module, x)
        if rule.kind != "epsilon" and bool((x < 0).any()):
            return fallback(x)
        return _RuleLayer.apply(x, module, rule)

    return forward


def _make_pass_forward(module: nn.Module) -> Any:
    def forward(x: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled() or not x.requires_grad:
            return type(module).forward(module, x)
        return _PassLayer.apply(x, module)

    return forward
