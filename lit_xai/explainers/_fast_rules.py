"""Fast LRP rules for ``Conv2d`` / ``Linear`` / zennit's ``Sum``: zennit's arithmetic without its redundant passes.

zennit 0.5.1 attaches a rule as hooks: the layer's ordinary autograd backward still runs (its result is thrown
away), and the rule then re-runs one modified forward per term and differentiates through all of them (the Gamma
rule: 5 forwards + 5 backwards per layer, one of them with an all-zero gradient). Here a rule-carrying layer instead
runs as one :class:`torch.autograd.Function` whose backward *is* the rule, written with the fewest convolutions:

* ``Epsilon``: ``x * W^T (R / s(z))`` with the forward output ``z`` reused — one transposed convolution;
* ``ZPlus`` on non-negative inputs (every layer after a ReLU): ``D = W+ x + b+``, ``x * W+^T (R / s(D))`` — one
  extra forward, one transposed convolution;
* ``ZPlus`` and ``Gamma`` on inputs with negative entries (after SiLU, Hardswish, a linear block output): zennit's
  generalised forms, :func:`_signed_backward` (ZPlus 2.5x, Gamma 2x a gradient's multiply-accumulates, against
  zennit's hooks' 3x and 6x, their discarded ordinary backward included);
* ``Gamma`` on non-negative inputs: with ``P = W+ x + b+`` (one extra forward) zennit's two denominators are
  ``z + γ P`` (used where ``z > 0``) and ``z + γ (z - P)`` (``z - P = W- x + b-``, used where ``z < 0``). Both have
  the sign of ``z`` (``P >= 0`` exactly for ``x >= 0``), so ``1 / s(d) = sign(z) / (|z| + γ (P + relu(-z)) + ε)``
  and the denominator is ``conv(x, γ/2 |W|, γ/2 |b| + ε) + (1 + γ/2) |z|``: no masks, no cancellation. The
  backward ``x * [Wγ+^T a + Wγ-^T b] = x * [(1 + γ/2) W^T (a + b) + γ/2 |W|^T (a - b)]`` is one transposed
  convolution over the stacked gradients (``Wγ± = W + γ W±``, ``W± = (W ± |W|) / 2``, ``a + b = R / s(d)``,
  ``a - b = R |1 / s(d)|``). Where the relevance reaching ``z`` is known to vanish wherever ``z <= 0`` (a fast ReLU
  follows and the rule layer above returned ``x * (...)``, zero where the ReLU output is: the marks ``_ZERO_AT`` /
  ``_ZERO_AT_NONPOS``, version-checked because autograd sums a tensor's gradients from several consumers in place),
  ``b = 0`` and the backward is one transposed convolution with ``W + γ W+`` over ``R / |s(d)|`` (ResNet bottlenecks'
  ``conv1``/``conv2``: half their backward);
* ``ZBox`` (first layer): the bound terms ``W+ l + W- h + b`` are the same for every image, so one convolution of a
  single bound image ``[l; h]`` with ``[W+, W-]`` gives them; the backward ``x * W^T g - (l * W+^T g + h * W-^T g)``
  is one transposed convolution with ``[W, W+, W-]`` stacked along input channels;
* ``Norm`` on zennit's ``Sum`` (the residual sums of the ResNet canonizers): ``x_i * R / s(Σ x)``, no re-run sum;
  torchvision blocks canonized by zennit sum their two branches without ``torch.stack`` (:class:`_ResidualNorm`);
* batch norms emptied by zennit's merge canonizer (``x / sqrt(1 + eps)`` under ``Pass``) are skipped: their factor
  is applied in place to the convolution's output, the rule uses the equally scaled weights (it is invariant to a
  positive per-channel output scale up to epsilon).

These are algebraic identities of zennit's formulas; results agree with zennit to rounding
(``tests/explainers/test_lrp.py``, ``tests/explainers/test_fast_rules.py`` check 1e-5 relative). Anything not
recognised exactly — other rules, rule parameters that cannot be read, a stabiliser with ``clip``/``norm_scale``,
``zero_params``, ZPlus/Gamma on inputs with negative entries under CRP's caching registration, per-image ZBox
bounds, non-zero padding modes — keeps zennit's own hook, so
coverage never changes, only speed.

Repeated backward passes through one retained graph (CRP: one per concept) can reuse everything that does not depend
on the incoming gradient: with ``FastRules(composite, cache=True)`` each rule node keeps its ``1 / s(d)`` factors
after its first backward (on the autograd node, so they die with the graph), and every further pass costs one
transposed convolution and two elementwise products per layer. Derived weights (``W+``, the stacked Gamma and ZBox
weights) are computed per key on first use, once per registration; without ``cache`` a layer drops them after its one
backward, so the backward holds one layer's copies at a time (not about four copies of all weights, as on ResNet-50).

**Switching them off.** Any map can be checked against zennit's own hooks: ``LRP(fast_rules=False)`` for one
explainer, ``with fast_rules(False):`` for everything explained inside the block on this thread (LRP, CRP, the
conservation guard), or ``LIT_XAI_FAST_RULES=0`` in the environment for the whole process (background threads too).
:class:`FastRules` then registers the composite exactly as ``composite.register`` does.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from zennit import layer as zlayer
from zennit import rules as zrules
from zennit.core import Composite, RemovableHandleList, Stabilizer

__all__ = ["FAST_RULES_ENV", "fast_rules", "fast_rules_enabled"]  # FastRules itself is used by lrp_pass / crp

#: environment variable switching the fast rules off for the whole process (``0``, ``false``, ``off`` or ``no``)
FAST_RULES_ENV = "LIT_XAI_FAST_RULES"
_SWITCH: contextvars.ContextVar[bool | None] = contextvars.ContextVar("lit_xai_fast_rules", default=None)


def fast_rules_enabled() -> bool:
    """Whether :class:`FastRules` swaps in the fast rules: the innermost :func:`fast_rules` block on this thread,
    else :data:`FAST_RULES_ENV` (on unless it says ``0``, ``false``, ``off`` or ``no``)."""
    switch = _SWITCH.get()
    if switch is not None:
        return switch
    return os.environ.get(FAST_RULES_ENV, "1").strip().lower() not in ("0", "false", "off", "no")


@contextlib.contextmanager
def fast_rules(enabled: bool) -> Iterator[None]:
    """Turn the fast rules on or off inside the block (this thread / context); restored afterwards.

    Example:
        >>> with fast_rules(False):
        ...     fast_rules_enabled()
        False
    """
    token = _SWITCH.set(bool(enabled))
    try:
        yield
    finally:
        _SWITCH.reset(token)


#: attribute marking a tensor produced by a fast ReLU: its value is the tensor's ``_version`` at creation (an
#: in-place change afterwards bumps the version, and the mark no longer vouches for non-negativity)
_NONNEG = "_lit_xai_nonneg_version"

#: marks on relevance tensors handed down the backward pass (see :func:`_mark_zero_where`): ``_ZERO_AT`` says "zero
#: wherever the input ``x`` of the rule layer that returned it is zero", ``_ZERO_AT_NONPOS`` (set by a fast ReLU passing
#: such a tensor through) "zero wherever the ReLU's input is <= 0". Each holds the tensor's ``_version`` when marked:
#: autograd sums the gradients of a tensor with several consumers *in place* into one of them, which bumps it
_ZERO_AT = "_lit_xai_zero_at"
_ZERO_AT_NONPOS = "_lit_xai_zero_at_nonpos"


@dataclass(frozen=True)
class _Rule:
    kind: str  # "epsilon" | "zplus" | "gamma" | "zbox" | "norm"
    eps: float
    gamma: float = 0.0
    low: Any = None  # ZBox bounds: float or tensor with a batch dimension of 1
    high: Any = None


class Ledger:
    """Per-image relevance absorbed by the rules of one backward pass (the conservation guard's account).

    A rule layer hands down ``R_in = R_out - a``: ``a`` is what its bias and stabiliser absorbed (for the Gamma and
    ZBox rules also their bias terms), ``Σ R_out - Σ R_in`` per image. The fast rule layers count it in their
    backward; lit_xai's other rules (LayerNorm, attention mixing, functional linear, gates), a concatenation with a
    constant or a parameter (a ViT's class token, whose share never reaches the input) and each module under a
    zennit hook of its own (the relevance its output received minus what its input wrappers hand on) are counted by
    post-hooks on their autograd nodes. With every operation that carries relevance counted, the input relevance
    plus the absorbed relevance telescopes to the explained logit (up to rounding; in float64 on every tiny
    backbone family, ``tests/explainers/test_backbones.py``). So the guard can judge a map whose biases absorbed most
    of its relevance without a second, bias-free pass (:mod:`lit_xai.explainers.conservation`).

    The account is only as good as the claim that nothing else changes the relevance's total, so before the
    backward :meth:`inspect` walks the autograd graph from the logits to the input: every node on a path that carries
    relevance must be a rule (lit_xai's rule functions, or inside a module that a zennit hook rewrites) or move values
    without combining them (views, permutations, concatenation, max-pooling, ...). A plain ``a + b``, ``a * b``, an
    unruled normalisation or convolution there marks the ledger ``complete = False``: its account is not used, and
    the guard falls back to the bias-free pass. So the account never accepts a map that an unruled operation
    distorted.

    What the account tests: the sums telescope by construction (each rule's difference is measured, whatever it
    did), so the decisive part is the walk (no operation without a rule carries relevance), and ``min_logit`` (the
    stabiliser cannot have taken most of a logit). That each rule computes what it should is tested separately:
    the fast rules against zennit (``tests/explainers/test_fast_rules.py``), every family's rules by exact
    conservation of the bias-free network in float64 (``tests/explainers/test_backbones.py``).

    Sums are per image (dimension 0 of each relevance tensor); a tensor whose first dimension is not the batch (a
    sequence-first layer) also marks the ledger incomplete.
    """

    def __init__(self, batch: int) -> None:
        self.batch = batch
        self.absorbed = torch.zeros(batch, dtype=torch.float64)
        self.complete = True
        self.layers = 0  # rule-layer backward calls counted
        self.eps = 0.0  # the largest stabiliser of the counted rules (see min_logit)
        self.regions: list[Any] = []  # autograd nodes of outputs of modules that carry a zennit hook (set by FastRules)
        self.unruled: list[str] = []  # what made the account incomplete (node names), for messages and tests

    @property
    def min_logit(self) -> float:
        """The smallest ``|logit|`` whose map the account may judge: ``ACCOUNT_LOGIT_FACTOR`` times the largest
        stabiliser. The account counts what a stabiliser absorbs like what a bias absorbs; where the logits are not
        far above it (a random-init network with logits of 1e-6, an epsilon of 0.25) that share may be most of the
        relevance, which the bias-free pass reports and the account would hide: those maps get the bias-free pass."""
        return ACCOUNT_LOGIT_FACTOR * self.eps

    @property
    def usable(self) -> bool:
        """The account may judge maps: nothing uncounted on the relevance's path, and some layer counted."""
        return self.complete and self.layers > 0

    def inspect(self, out: torch.Tensor, x: torch.Tensor) -> None:
        """Walk the graph from ``out`` to the input ``x`` (before the backward) and mark the ledger incomplete when a
        node on a path to ``x`` could change the relevance's total unseen (see the class docstring)."""
        if out.grad_fn is None:
            self.complete = False
            return
        children = _relevance_children
        # the nodes of every path from out to x: a node reaches x if it is x's accumulator or a child reaches x
        reaches: dict[Any, bool] = {}
        stack: list[tuple[Any, bool]] = [(out.grad_fn, False)]
        while stack:
            node, expanded = stack.pop()
            if node in reaches and not expanded:
                continue
            if expanded:
                below = children(node)
                reaches[node] = getattr(node, "variable", None) is x or any(reaches.get(c, False) for c in below)
                continue
            reaches[node] = False  # provisional (a graph has no cycles, so this is never read before it is final)
            stack.append((node, True))
            stack.extend((c, False) for c in children(node) if c not in reaches)
        if not reaches.get(out.grad_fn, False):
            self.complete = False  # the input is not on the graph (nothing to vouch for)
            self.unruled.append("no path to the input")
            return
        rules = _rule_nodes()
        inside, bounds = _zennit_regions(self.regions, reaches, rules)
        for top, wrappers in bounds:
            # what a zennit-hooked module absorbs: the relevance its output received minus what its input wrappers
            # hand on (their hooks run after zennit's, which replaced the gradient there)
            top.register_hook(self._flow_hook(top, reaches, handed=False))
            for wrapper in wrappers:
                wrapper.register_hook(self._flow_hook(wrapper, reaches, received=False))
        for node, reached in reaches.items():
            if not reached or node in inside or getattr(node, "variable", None) is x:
                continue
            name = type(node).__name__
            if name in _COUNTED_NODES:
                continue  # they record themselves
            if name in rules:
                # lit_xai's other rules (attention, LayerNorm, functional linear, gates): counted by a hook on their
                # node, which sees the relevance handed to it and what it hands on (their ctx is the node)
                node.register_hook(self._flow_hook(node, reaches, float(getattr(node, "stab", 0.0) or 0.0)))
                continue
            if name in _MOVING_NODES:
                if not all(reaches.get(n, False) for n, _ in node.next_functions):
                    # a concatenation with a constant or a parameter (ViT's class token): its share never reaches
                    # the input, absorbed
                    node.register_hook(self._flow_hook(node, reaches))
                continue
            if name in _CONSTANT_SHIFTS and sum(reaches.get(c, False) for c in children(node)) == 1:
                continue  # x + c with a constant c (a position embedding): x's side gets the relevance unchanged
            self.unruled.append(name)
        if self.unruled:
            self.complete = False

    def _flow_hook(
        self, node: Any, reaches: dict[Any, bool], eps: float = 0.0, received: bool = True, handed: bool = True
    ) -> Any:
        """A post-hook for ``node``'s backward counting, as absorbed, the relevance it ``received`` (added) and what
        it ``handed`` on towards the input (subtracted; the share of a constant or a parameter never reaches it). A
        rule's node counts both; a zennit-hooked module counts what its output node received and what its input
        wrappers hand on."""
        kept = [n is not None and reaches.get(n, False) for n, _ in node.next_functions]

        def hook(grad_inputs: tuple, grad_outputs: tuple) -> None:
            given = [g for g in grad_outputs if g is not None]
            if len(grad_inputs) != len(kept) or (received and len(given) != 1):
                self.complete = False  # several outputs, or inputs not matched to edges: not counted here
                return
            handed_on = [g for g, k in zip(grad_inputs, kept) if handed and k and g is not None]
            self._count(given if received else [], handed_on, eps, layer=received and handed)

        return hook

    def _sum(self, t: torch.Tensor) -> torch.Tensor | None:
        if t.dim() < 2 or t.shape[0] != self.batch:
            self.complete = False
            return None
        # a float32 reduction (float64 accumulation costs 6x here), the differences in float64: rounding of order
        # eps32 x sum |R| per layer, far inside the band the account is judged on
        return t.sum(dim=tuple(range(1, t.dim()))).double()

    def record(self, out_relevance: torch.Tensor, *in_relevance: torch.Tensor, eps: float = 0.0) -> None:
        """Count ``Σ R_out - Σ R_in`` per image for one rule layer's backward (``eps``: its rule's stabiliser)."""
        self._count([out_relevance], in_relevance, eps, layer=True)

    def _count(self, received: Sequence[torch.Tensor], handed: Sequence[torch.Tensor], eps: float, layer: bool) -> None:
        """Add ``Σ received - Σ handed`` per image to the account (nothing where a tensor is not batch-first: the
        account is then incomplete); ``layer``: it was one rule's whole backward."""
        self.eps = max(self.eps, abs(float(eps)))
        sums = [self._sum(t) for t in (*received, *handed)]
        if any(part is None for part in sums) or not sums:
            return
        total = torch.zeros_like(sums[0])
        for part in sums[: len(received)]:
            total.add_(part)
        for part in sums[len(received) :]:
            total.sub_(part)
        self.absorbed = self.absorbed.to(total.device).add_(total)  # on the relevance's device
        self.layers += int(layer)


#: the account judges maps whose |logit| is at least this many times the counted rules' largest stabiliser (at the
#: output layer the stabiliser then takes at most 1 % of the logit)
ACCOUNT_LOGIT_FACTOR = 100.0
#: autograd nodes of the fast rules, whose backward the ledger counts
_COUNTED_NODES = frozenset({"_RuleLayerBackward", "_NormLayerBackward", "_ResidualNormBackward"})
#: autograd nodes that move relevance without changing its total: views and permutations, splits and concatenation,
#: broadcasts (their backward sums the copies), max-pooling (to the winner), dtype changes, zennit's input wrappers
_MOVING_NODES = frozenset(
    {
        "AliasBackward0", "AsStridedBackward0", "CatBackward0", "CloneBackward0", "ExpandBackward0",
        "IdentityBackward", "IndexBackward0", "MaxPool2DWithIndicesBackward0", "MaxPool3DWithIndicesBackward0",
        "AdaptiveMaxPool2DBackward0", "PermuteBackward0", "ReshapeAliasBackward0", "SelectBackward0",
        "SliceBackward0", "SplitBackward0", "SplitWithSizesBackward0", "SqueezeBackward0", "SqueezeBackward1",
        "SqueezeBackward2", "StackBackward0", "TBackward0", "ToCopyBackward0", "TransposeBackward0",
        "UnbindBackward0", "UnsafeViewBackward0", "UnsqueezeBackward0", "ViewBackward0",
    }
)  # fmt: skip


#: ``a + b`` / ``a - b``: total-preserving towards the input when only one side leads to it (the other a constant)
_CONSTANT_SHIFTS = frozenset({"AddBackward0", "AddBackward1", "SubBackward0", "SubBackward1"})


def _rule_nodes() -> frozenset[str]:
    """Autograd node names of lit_xai's rule functions (the fast rule layers, gates, transformer rules)."""
    found: set[str] = set()
    pending = list(torch.autograd.Function.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls.__module__.startswith("lit_xai."):
            found.add(f"{cls.__name__}Backward")
    return frozenset(found)


def _relevance_children(node: Any) -> list[Any]:
    """The nodes a node hands relevance to (a signal-only gate hands its gate branch explicit zeros: left out)."""
    nexts = [n for n, _ in node.next_functions if n is not None]
    if type(node).__name__ == "_SignalOnlyGateBackward" and len(node.next_functions) == 2:
        first = node.next_functions[1][0]
        return [] if first is None else [first]
    return nexts


def _zennit_regions(
    tops: list[Any], reaches: dict[Any, bool], rules: frozenset[str]
) -> tuple[set[Any], list[tuple[Any, list[Any]]]]:
    """The nodes inside modules that carry a zennit hook: from each module's output node down to its input wrapper
    (zennit's ``Identity``), whose gradient the hook replaces. A region that does not end in that wrapper on every
    path is not a hooked module's inside: nothing of it is returned. Also, per region on the relevance's path, its
    output node and its input wrappers (where the relevance enters and leaves it)."""
    inside: set[Any] = set()
    bounds: list[tuple[Any, list[Any]]] = []
    for top in tops:
        region: set[Any] = set()
        wrappers: list[Any] = []
        stack, closed = [top], True
        while stack and closed:
            node = stack.pop()
            if node in region:
                continue
            region.add(node)
            for child in (n for n, _ in node.next_functions if n is not None):
                name = type(child).__name__
                if name == "IdentityBackward":
                    if reaches.get(child, False) and child not in wrappers:
                        wrappers.append(child)
                    continue  # the hooked module's input: the region ends here
                if getattr(child, "variable", None) is not None:
                    if reaches.get(child, False):
                        closed = False  # reaches the input without passing the hook's wrapper
                    continue  # a parameter
                if not reaches.get(child, False):
                    continue
                if name in _COUNTED_NODES or name in rules:
                    closed = False  # another rule below, no wrapper in between: not a hooked module's inside
                    break
                stack.append(child)
        if closed:
            inside |= region
            if reaches.get(top, False):
                bounds.append((top, wrappers))
    return inside, bounds


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


def _bound(value: Any) -> Any:
    """A ZBox bound usable for every image alike (number, or tensor with a batch dimension of 1), else ``None``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, torch.Tensor) and value.is_floating_point() and (value.ndim == 0 or value.shape[0] == 1):
        return value.detach()
    return None


def rule_of(hook: Any) -> _Rule | None:
    """Read a zennit rule's parameters when it is exactly one of the rules implemented here, else ``None``."""
    kind = {zrules.Epsilon: "epsilon", zrules.ZPlus: "zplus", zrules.Gamma: "gamma", zrules.ZBox: "zbox"}.get(
        type(hook)
    )
    if kind is None or not _no_zero_params(hook):
        return None
    eps = _plain_eps(_closure(hook.gradient_mapper).get("stabilizer_fn"))
    if eps is None:
        return None
    if kind == "zbox":
        low = _bound(_closure(hook.input_modifiers[1]).get("low"))
        high = _bound(_closure(hook.input_modifiers[2]).get("high"))
        return None if low is None or high is None else _Rule("zbox", eps, low=low, high=high)
    if kind != "gamma":
        return _Rule(kind, eps)
    gamma_vars = _closure(getattr(hook.param_modifiers[0], "modifier", None))
    gamma = gamma_vars.get("gamma")
    if not isinstance(gamma, (int, float)) or gamma_vars.get("min") != 0.0 or gamma_vars.get("max") is not None:
        return None
    return _Rule("gamma", eps, float(gamma))


def _norm_rule(hook: Any) -> _Rule | None:
    if type(hook) is not zrules.Norm:
        return None
    eps = _plain_eps(_closure(hook.gradient_mapper).get("stabilizer_fn"))
    return None if eps is None else _Rule("norm", eps)


def _stabilize(z: torch.Tensor, eps: float) -> torch.Tensor:
    # zennit.core.stabilize with clip=False, norm_scale=False, same operation order
    return z + ((z == 0.0).to(z) + z.sign()) * eps


def _stabilize_sum(out: torch.Tensor, eps: float) -> torch.Tensor:
    """zennit's stabiliser for a *sum* ``out`` under the Norm rule, in two passes.

    ``out + copysign(eps, out)`` differs from zennit's ``+eps at 0`` only at ``out = -0.0``, which a sum produces only
    when every summand is ``-0.0``: then every input relevance ``x_i R / s(out)`` is zero either way.
    """
    return torch.copysign(torch.tensor(eps, dtype=out.dtype, device=out.device), out).add_(out)


def _supported(module: nn.Module) -> bool:
    if type(module) is nn.Linear:
        return True
    return type(module) is nn.Conv2d and module.padding_mode == "zeros" and not isinstance(module.padding, str)


def _forward(module: nn.Module, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    if isinstance(module, nn.Linear):
        return F.linear(x, weight, bias)
    return F.conv2d(x, weight, bias, module.stride, module.padding, module.dilation, module.groups)


def _transposed(module: nn.Module, grad: torch.Tensor, x: torch.Tensor | tuple, weight: torch.Tensor) -> torch.Tensor:
    """``W^T grad``: the input gradient of ``_forward(module, x, weight)`` (``x`` or just its shape)."""
    if isinstance(module, nn.Linear):
        return grad @ weight
    # convolution_backward reads only the input's shape for the input gradient: an uninitialised stand-in suffices
    like = x if isinstance(x, torch.Tensor) else grad.new_empty(x)
    return torch.ops.aten.convolution_backward(
        grad, like, weight, None, module.stride, module.padding, module.dilation, False, [0, 0], module.groups,
        [True, False, False],
    )[0]  # fmt: skip


def _transposed_stacked(module: nn.Module, grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``W1^T g1 + W2^T g2`` as one call: output channels (and gradient channels) stacked ``[1; 2]``."""
    if isinstance(module, nn.Linear):
        return grad @ weight
    if module.groups != 1:  # stacking output channels would regroup them; two calls instead
        half = weight.shape[0] // 2
        return _transposed(module, grad[:, :half], x, weight[:half]).add_(
            _transposed(module, grad[:, half:], x, weight[half:])
        )
    return _transposed(module, grad, x, weight)


def _bias_view(bias: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return bias.reshape(1, -1, *([1] * (like.ndim - 2)))


class _Layer:
    """One patched module of one registration: its rule and the derived weights (computed once, on first use).

    Parameters are frozen while an explanation runs, so the derived weights stay valid until :meth:`FastRules.remove`
    drops the layer; a graph still alive after that keeps its own reference (through its nodes) and nothing else.
    """

    def __init__(self, module: nn.Module, rule: _Rule, cache: bool) -> None:
        self.module, self.rule, self.cache = module, rule, cache
        # per-output-channel factor (> 0) of an emptied batch norm folded into this layer's forward (see
        # FastRules._fold_batch_norms); None: no fold
        self.scale: torch.Tensor | None = None
        self._derived: _Derived | None = None
        self.ledger: Ledger | None = None  # set by FastRules(ledger=...): the absorbed relevance is counted

    def derived(self) -> _Derived:
        """The layer's derived weights, each computed on first access (only those its path needs)."""
        if self._derived is None:
            self._derived = _Derived(self)
        return self._derived

    def release(self) -> None:
        """Drop the derived weights (after the one backward of a non-caching registration): at most one layer's
        copies live at a time during the backward, instead of all of them (ResNet-50: about 4x its weights)."""
        if not self.cache:
            self._derived = None

    def gamma_pos(self) -> torch.Tensor:
        """``(1 + g/2) W + g/2 |W| = W + g W+``: the Gamma backward weight where only ``z > 0`` carries relevance."""
        return self.derived()["gamma_pos"]

    def rule_weights(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The weight and bias the rules see: the layer's own, times the folded batch norm's factor if any."""
        module = self.module
        weight = module.weight.detach()
        bias = None if module.bias is None else module.bias.detach()
        if self.scale is not None:
            # the rules see the scaled output c z, so they use c W, c b: every rule here is invariant to a positive
            # per-channel scale of its output (numerator and denominator scale alike; only the absolute epsilon does
            # not, a relative change of eps (1 - c) / d)
            weight = weight * self.scale.reshape(-1, *([1] * (weight.ndim - 1)))
            bias = None if bias is None else bias * self.scale
        return weight, bias


class _Derived(dict):
    """A layer's derived weights by name, each computed on first access from :meth:`_Layer.rule_weights`.

    The forward runs the layer's own weights (``w_fwd``, ``b_fwd``: no copy), then multiplies by the folded batch
    norm's factor in place: the same operations as layer + batch norm, so the activations are bit-identical to
    zennit's (the rules are discontinuous at z = 0, where any rounding difference in the forward would flip a term).
    """

    def __init__(self, layer: _Layer) -> None:
        super().__init__()
        # weakly: the layer holds this dict, and a cycle would keep the explained copy alive until a collection
        self.layer_ref = weakref.ref(layer)

    def __missing__(self, key: str) -> torch.Tensor | None:
        layer = self.layer_ref()
        if layer is None:
            raise KeyError(key)
        module, rule = layer.module, layer.rule
        if key in ("w_fwd", "b_fwd"):
            self["w_fwd"] = module.weight.detach()
            self["b_fwd"] = None if module.bias is None else module.bias.detach()
            return self[key]
        if "_rule_w" not in self:
            self["_rule_w"], self["_rule_b"] = layer.rule_weights()
        weight, bias = self["_rule_w"], self["_rule_b"]
        value = self._compute(key, rule, weight, bias)
        self[key] = value
        return value

    def _compute(self, key: str, rule: _Rule, weight: torch.Tensor, bias: torch.Tensor | None) -> Any:
        g, out = rule.gamma, weight.shape[0]
        if key == "w":  # epsilon
            return weight
        if key == "b_pos":
            return None if bias is None else bias.clamp(min=0)
        if key == "half_abs":  # gamma: g/2 |W|, the extra forward's weight (_gamma_denominator)
            return torch.abs(weight).mul_(g / 2)
        if key == "half_abs_b_eps":  # gamma: g/2 |b| + eps, so the extra forward gives g P - g/2 z + eps directly
            b_eps = torch.full((out,), rule.eps, dtype=weight.dtype, device=weight.device)
            if bias is not None:
                b_eps.add_(bias.abs(), alpha=g / 2)
            return b_eps
        if key == "stacked":  # gamma: [(1 + g/2) W; g/2 |W|] along output channels (gradients [a + b; a - b])
            stacked = weight.new_empty(2 * out, *weight.shape[1:])
            torch.mul(weight, 1.0 + g / 2, out=stacked[:out])
            stacked[out:] = self["half_abs"]
            return stacked
        if key == "gamma_pos":  # gamma, one-convolution path: (1 + g/2) W + g/2 |W|
            return torch.mul(weight, 1.0 + g / 2).add_(self["half_abs"])
        if key == "w_pos":
            return weight.clamp(min=0)
        if key == "w_neg":
            return weight.clamp(max=0)
        if key == "b_pos_eps":  # zplus: the stabiliser's + eps inside the bias (D >= 0, so s(D) = D + eps)
            b_pos_eps = torch.full((out,), rule.eps, dtype=weight.dtype, device=weight.device)
            if bias is not None:
                b_pos_eps.add_(self["b_pos"])
            return b_pos_eps
        # zbox: [W+, W-] along input channels for the bound image [l; h] (and zplus for [x+; x-] on signed inputs);
        # [W, W+, W-] for zbox's three backward terms
        if key == "bounds_w":
            return torch.cat([self["w_pos"], self["w_neg"]], dim=1)
        if key == "bias":
            return bias  # b+ + b- = b exactly
        if key == "back_w":
            return torch.cat([weight, self["w_pos"], self["w_neg"]], dim=1)
        raise KeyError(key)


def _save_input(ctx: Any, x: torch.Tensor) -> None:
    # the input as a plain attribute (it holds no reference to this node: no cycle); its version is checked by hand
    ctx.x, ctx.x_version = x, x._version


def _saved_input(ctx: Any) -> torch.Tensor:
    if ctx.x._version != ctx.x_version:
        raise RuntimeError(
            "an input of an LRP rule layer was modified in place after the forward pass; LRP needs the original "
            "activations (avoid in-place operations on layer inputs, e.g. use x = x + y instead of x += y)"
        )
    return ctx.x


def _saved_output(ctx: Any, layer: _Layer, x: torch.Tensor) -> torch.Tensor:
    """The layer's forward output; recomputed when a downstream in-place operation changed it (no clone kept)."""
    try:
        return ctx.saved_tensors[0]
    except RuntimeError:  # "modified by an inplace operation": autograd's version check on the saved output
        derived = layer.derived()
        return _scaled(_forward(layer.module, x, derived["w_fwd"], derived["b_fwd"]), layer, plain=True)


class _RuleLayer(torch.autograd.Function):
    """Forward: the layer unchanged. Backward: the LRP rule's input relevance (no ordinary backward at all)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, layer: _Layer, signed: bool = False) -> torch.Tensor:
        derived = layer.derived()
        out = _forward(layer.module, x, derived["w_fwd"], derived["b_fwd"])
        if layer.scale is not None:
            out.mul_(_bias_view(layer.scale, out))  # what the folded batch norm computed, without its allocation
        ctx.layer, ctx.factors, ctx.signed = layer, None, signed
        _save_input(ctx, x)
        # the output itself (no clone): autograd's version check tells if a downstream in-place op changed it
        ctx.save_for_backward(out)
        # and its identity (weakly: no cycle), to recognise a gradient that a fast ReLU vouches for (_zero_at_nonpos)
        ctx.out_ref, ctx.out_version = weakref.ref(out), out._version
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        try:
            result = _RuleLayer._backward(ctx, grad)
            if ctx.layer.ledger is not None:
                ctx.layer.ledger.record(grad, result[0], eps=ctx.layer.rule.eps)
            return (*result, None)
        finally:
            ctx.layer.release()  # a non-caching registration runs one backward per layer: its copies are done

    @staticmethod
    def _backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        layer = ctx.layer
        module, rule = layer.module, layer.rule
        x = _saved_input(ctx)
        factors = ctx.factors
        derived = layer.derived()
        if ctx.signed:
            return _signed_backward(ctx, layer, x, grad), None
        if factors is None and not layer.cache and rule.kind in ("zplus", "gamma"):
            # one backward only: divide the gradient directly (fewer passes than forming 1 / s(d) first)
            z = _saved_output(ctx, layer, x)
            if rule.kind == "zplus":
                denom = _zplus_denominator(layer, x)
                scaled = torch.div(grad, denom, out=denom)
                return _mark_zero_at(_transposed(module, scaled, x, derived["w_pos"]).mul_(x), x), None
            relu_out = _zero_at_nonpos(ctx, grad)
            if relu_out is not None:
                # R vanishes wherever z <= 0 (a fast ReLU follows and the layer above zeroes what it zeroed): b = 0,
                # a - b = a + b = R / |s(d)| with |z| = relu(z), and the two backward terms are one transposed
                # convolution with W + g W+ (half the backward, three fewer elementwise passes)
                denom = _forward(module, x, derived["half_abs"], derived["half_abs_b_eps"])
                denom.add_(relu_out, alpha=1.0 + rule.gamma / 2)
                torch.div(grad, denom, out=denom)
                return _mark_zero_at(_transposed(module, denom, x, layer.gamma_pos()).mul_(x), x), None
            sign, denom = _gamma_denominator(layer, x, z)
            stacked, top, bottom = _stacked_gradient(grad)
            torch.mul(grad, sign, out=top).div_(denom)  # a + b = R sign(z) / |s(d)| = R / s(d)
            torch.mul(top, sign, out=bottom)  # a - b = R [z != 0] / |s(d)|
            return _mark_zero_at(_transposed_stacked(module, stacked, x, derived["stacked"]).mul_(x), x), None
        if factors is None:
            factors = _factors(layer, x, _saved_output(ctx, layer, x))
            if layer.cache:  # kept on the node: freed with the graph
                ctx.factors = factors
        if rule.kind == "epsilon":
            return _mark_zero_at(_transposed(module, grad * factors[0], x, derived["w"]).mul_(x), x), None
        if rule.kind == "zplus":
            return _mark_zero_at(_transposed(module, grad * factors[0], x, derived["w_pos"]).mul_(x), x), None
        if rule.kind == "gamma":
            inv, inv_abs = factors
            stacked, top, bottom = _stacked_gradient(grad)
            torch.mul(grad, inv, out=top)  # a + b
            torch.mul(grad, inv_abs, out=bottom)  # a - b
            return _mark_zero_at(_transposed_stacked(module, stacked, x, derived["stacked"]).mul_(x), x), None
        # zbox: x * W^T g - (l * W+^T g + h * W-^T g), the three terms from one call
        (inv,) = factors
        c = x.shape[1]
        back = _transposed(module, grad * inv, (x.shape[0], 3 * c, *x.shape[2:]), derived["back_w"])
        low, high = _bound_images(rule, x)
        neg = back[:, c : 2 * c] * low
        neg.addcmul_(back[:, 2 * c :], high)
        return (back[:, :c] * x).sub_(neg), None


def _signed_backward(ctx: Any, layer: _Layer, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """ZPlus / Gamma on an input with negative entries (zennit's generalised rules, module docstring).

    ZPlus: ``D = W+ x+ + W- x- + b+`` as one convolution of ``[x+; x-]`` with ``[W+, W-]`` (a sum of non-negative
    terms, as zennit forms it), ``R = x+ W+^T g + x- W-^T g`` (``g = R / (D + eps)``) from one transposed
    convolution with ``[W+, W-]`` (two calls on a grouped convolution): 2.5x a gradient's multiply-accumulates.
    Gamma: zennit's four sign terms collapse to ``R = x U + |x| V`` with ``U = (1 + g/2) W^T (a + b)``,
    ``V = g/2 |W|^T (a - b)``, and ``|s(d)| = conv(|x|, g/2 |W|, g/2 |b| + eps) + (1 + g/2) |z|`` (where ``z > 0``:
    ``d = z + g P``, ``P = (|W| |x| + |b| + z) / 2``; where ``z < 0``: ``d = z + g N``, ``N = (z - |W| |x| - |b|) /
    2``): a sum of non-negative terms, no cancellation; 2x a gradient's multiply-accumulates, as on non-negative
    inputs.
    """
    module, rule, derived = layer.module, layer.rule, layer.derived()
    if rule.kind == "zplus":
        pos, neg = x.clamp(min=0), x.clamp(max=0)
        if getattr(module, "groups", 1) == 1:
            dim = -1 if isinstance(module, nn.Linear) else 1  # a linear layer's features are the last dimension
            c = x.shape[dim]
            denom = _forward(module, torch.cat([pos, neg], dim=dim), derived["bounds_w"], derived["b_pos_eps"])
            torch.div(grad, denom, out=denom)
            if dim == 1:
                back = _transposed(module, denom, (x.shape[0], 2 * c, *x.shape[2:]), derived["bounds_w"])
            else:
                back = _transposed(module, denom, x, derived["bounds_w"])
            first, second = back.narrow(dim, 0, c), back.narrow(dim, c, c)
            return _mark_zero_at(first.mul(pos).addcmul_(second, neg), x)
        w_pos, w_neg = derived["w_pos"], derived["w_neg"]
        denom = _forward(module, pos, w_pos, derived["b_pos_eps"]).add_(_forward(module, neg, w_neg, None))
        torch.div(grad, denom, out=denom)
        out = _transposed(module, denom, x, w_pos).mul_(pos)
        return _mark_zero_at(out.addcmul_(_transposed(module, denom, x, w_neg), neg), x)
    z = _saved_output(ctx, layer, x)
    x_abs = x.abs()
    sign = z.sign()
    denom = _forward(module, x_abs, derived["half_abs"], derived["half_abs_b_eps"])
    denom.addcmul_(z, sign, value=1.0 + rule.gamma / 2)
    top = torch.mul(grad, sign).div_(denom)  # a + b = R / s(d)
    bottom = denom.copy_(top).mul_(sign)  # a - b = R [z != 0] / |s(d)|
    out = derived["stacked"].shape[0] // 2
    u = _transposed(module, top, x, derived["stacked"][:out])
    v = _transposed(module, bottom, x, derived["stacked"][out:])
    return _mark_zero_at(u.mul_(x).addcmul_(v, x_abs), x)


def _mark_zero_at(relevance: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mark ``relevance = x * (finite)`` as zero wherever ``x`` is (read by the fast ReLU below ``x``)."""
    setattr(relevance, _ZERO_AT, (x, relevance._version))
    return relevance


def _zero_at_nonpos(ctx: Any, grad: torch.Tensor) -> torch.Tensor | None:
    """The ReLU output ``relu(z)`` if ``grad`` is vouched zero wherever this rule node's output ``z`` is ``<= 0``.

    True when a fast ReLU took exactly this node's unchanged output and handed down, unchanged and not summed with
    any other gradient, a relevance marked zero wherever the ReLU's output is zero (:func:`_mark_zero_at`); else
    ``None`` and the caller takes the general path.
    """
    mark = getattr(grad, _ZERO_AT_NONPOS, None)
    if mark is None:
        return None
    relu_in, relu_in_version, relu_out, version = mark
    if version != grad._version or relu_in() is not ctx.out_ref() or relu_in_version != ctx.out_version:
        return None
    return relu_out


def _bound_images(rule: _Rule, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``low`` / ``high`` as zennit expands them (trailing singleton dims), one image: ``(1, *x.shape[1:])``."""

    def image(value: Any) -> torch.Tensor:
        t = torch.as_tensor(value, dtype=x.dtype, device=x.device)
        if t.ndim == 0:
            t = t.reshape(1)
        t = t.reshape(*t.shape, *([1] * (x.ndim - t.ndim)))
        return t.expand(1, *x.shape[1:])

    return image(rule.low), image(rule.high)


def _stacked_gradient(grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """An uninitialised ``(N, 2C, ...)`` buffer and its two channel halves (written in place, no ``cat``)."""
    channels = grad.shape[1]
    stacked = grad.new_empty(grad.shape[0], 2 * channels, *grad.shape[2:])
    return stacked, stacked[:, :channels], stacked[:, channels:]


def _zplus_denominator(layer: _Layer, x: torch.Tensor) -> torch.Tensor:
    # D = W+ x + b+ >= 0, so zennit's s(D) is D + eps
    derived = layer.derived()
    return _forward(layer.module, x, derived["w_pos"], derived["b_pos_eps"])


def _gamma_denominator(layer: _Layer, x: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sign(z), |s(d)|)`` with ``|s(d)| = |z| + g (P + relu(-z)) + eps``, ``P = W+ x + b+`` (module docstring).

    With ``|W| = 2 W+ - W`` (and ``|b|`` alike), ``g (P + relu(-z)) = g/2 (|W| x + |b|) + g/2 |z|``, so
    ``|s(d)| = conv(x, g/2 |W|, g/2 |b| + eps) + (1 + g/2) |z|``: the extra forward (its weight is the stacked
    backward weight's lower half) and one in-place pass; a sum of non-negative terms, no cancellation.
    """
    g = layer.rule.gamma
    derived = layer.derived()
    sign = z.sign()
    denom = _forward(layer.module, x, derived["half_abs"], derived["half_abs_b_eps"])
    denom.addcmul_(z, sign, value=1.0 + g / 2)
    return sign, denom


def _factors(layer: _Layer, x: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The gradient-independent factors of a rule's backward (``1 / s(denominator)`` and relatives)."""
    module, rule = layer.module, layer.rule
    derived = layer.derived()
    if rule.kind == "epsilon":
        return (_stabilize(z, rule.eps).reciprocal_(),)
    if rule.kind == "zplus":
        return (_zplus_denominator(layer, x).reciprocal_(),)
    if rule.kind == "gamma":
        # 1 / s(d) = sign(z) / |s(d)| (zero where z = 0), and its absolute value for the a - b half
        sign, denom = _gamma_denominator(layer, x, z)
        inv = sign.div_(denom)
        return inv, inv.abs()
    # zbox: d = z - (W+ l + W- h + b), the bound term computed on one image and broadcast over the batch
    low, high = _bound_images(rule, x)
    bounds = _forward(module, torch.cat([low, high], dim=1), derived["bounds_w"], derived["bias"])
    return (_stabilize(z - bounds, rule.eps).reciprocal_(),)


class _NormLayer(torch.autograd.Function):
    """zennit's ``Sum`` module under the ``Norm`` rule: ``R_i = x_i R / s(Σ_j x_j)`` (residual sums)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, layer: _Layer) -> torch.Tensor:
        dim = layer.module.dim
        if x.shape[dim] == 2:  # the residual case: one add instead of a strided reduction (same rounding)
            out = torch.add(x.select(dim, 0), x.select(dim, 1))
        else:
            out = x.sum(dim)
        ctx.layer, ctx.factor = layer, None
        _save_input(ctx, x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        result = _NormLayer._backward(ctx, grad)
        if ctx.layer.ledger is not None:
            ctx.layer.ledger.record(grad, result[0], eps=ctx.layer.rule.eps)
        return result

    @staticmethod
    def _backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        layer = ctx.layer
        x = _saved_input(ctx)
        inv = ctx.factor
        if inv is None:
            try:
                (out,) = ctx.saved_tensors
            except RuntimeError:  # changed in place downstream: recompute the sum
                out = x.sum(layer.module.dim)
            if not layer.cache:
                return x * (grad / _stabilize_sum(out, layer.rule.eps)).unsqueeze(layer.module.dim), None
            inv = ctx.factor = _stabilize_sum(out, layer.rule.eps).reciprocal_()
        return x * (grad * inv).unsqueeze(layer.module.dim), None


class _ResidualNorm(torch.autograd.Function):
    """``a + b`` under the ``Norm`` rule without stacking: ``R_a = a R / s(a + b)``, ``R_b = b R / s(a + b)``.

    zennit's ResNet canonizers compute the residual sum as ``Sum(torch.stack([identity, out], -1))``: the stack
    copies both tensors, and its backward hands strided (interleaved) gradients to both branches, which every
    consumer copies again. Same values as the stacked form (one addition per element either way).
    """

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, b: torch.Tensor, layer: _Layer) -> torch.Tensor:
        out = a + b
        ctx.layer, ctx.factor = layer, None
        ctx.a, ctx.b, ctx.versions = a, b, (a._version, b._version)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        result = _ResidualNorm._backward(ctx, grad)
        if ctx.layer.ledger is not None:
            ctx.layer.ledger.record(grad, result[0], result[1], eps=ctx.layer.rule.eps)
        return result

    @staticmethod
    def _backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        layer, a, b = ctx.layer, ctx.a, ctx.b
        if (a._version, b._version) != ctx.versions:
            raise RuntimeError(
                "an input of a residual sum was modified in place after the forward pass; LRP needs the original "
                "activations (avoid in-place operations on them)"
            )
        inv = ctx.factor
        if inv is None:
            try:
                (out,) = ctx.saved_tensors
            except RuntimeError:  # changed in place downstream: recompute the sum
                out = a + b
            if not layer.cache:
                r = _stabilize_sum(out, layer.rule.eps)
                torch.div(grad, r, out=r)
                return a * r, r.mul_(b), None
            inv = ctx.factor = _stabilize_sum(out, layer.rule.eps).reciprocal_()
        r = grad * inv
        return a * r, r.mul_(b), None


#: zennit 0.5.1's canonized forwards of torchvision's residual blocks, and equivalents summing without a stack
_BLOCK_FORWARDS: dict[Any, Any] = {}


def _bottleneck_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    # zennit.torchvision.ResNetBottleneckCanonizer.forward with canonizer_sum(identity, out) for stack + Sum
    identity = x
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.relu(self.bn2(self.conv2(out)))
    out = self.bn3(self.conv3(out))
    if self.downsample is not None:
        identity = self.downsample(x)
    return self.relu(self.canonizer_sum(identity, out))


def _basic_block_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    # zennit.torchvision.ResNetBasicBlockCanonizer.forward with canonizer_sum(identity, out) for stack + Sum
    identity = x
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.bn2(self.conv2(out))
    if self.downsample is not None:
        identity = self.downsample(x)
    return self.relu(self.canonizer_sum(identity, out))


def _block_forwards() -> dict[Any, Any]:
    if not _BLOCK_FORWARDS:
        from zennit import torchvision as ztv

        _BLOCK_FORWARDS[ztv.ResNetBottleneckCanonizer.forward] = _bottleneck_forward
        _BLOCK_FORWARDS[ztv.ResNetBasicBlockCanonizer.forward] = _basic_block_forward
    return _BLOCK_FORWARDS


class _PassLayer(torch.autograd.Function):
    """zennit's ``Pass`` rule (relevance passes unchanged) without its identity node, clone and hooks."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, module: nn.Module) -> torch.Tensor:
        ctx.relu = isinstance(module, nn.ReLU)
        if ctx.relu:
            out = torch.relu(x)  # never in place: x belongs to the caller's graph
            # weak references (no cycle): a relevance zero wherever out is zero is zero wherever x <= 0
            ctx.in_ref, ctx.in_version, ctx.out_ref, ctx.out_version = (
                weakref.ref(x),
                x._version,
                weakref.ref(out),
                out._version,
            )
            return out
        if getattr(module, "inplace", False):  # never in place (x belongs to the caller's graph): same values
            return _OUT_OF_PLACE[type(module)](x)
        return type(module).forward(module, x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        mark = getattr(grad, _ZERO_AT, None) if ctx.relu else None
        if mark is not None and mark[1] == grad._version:
            out = ctx.out_ref()
            if out is not None and mark[0] is out and out._version == ctx.out_version:
                setattr(grad, _ZERO_AT_NONPOS, (ctx.in_ref, ctx.in_version, out, grad._version))
        return grad, None


#: element-wise activations whose Pass rule runs as :class:`_PassLayer` (an in-place module would overwrite the
#: Function's input: only those with an out-of-place functional below, which computes the same values)
_ELEMENTWISE = (nn.GELU, nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh, nn.LeakyReLU, nn.ELU, nn.ReLU6)
_OUT_OF_PLACE = {nn.SiLU: F.silu, nn.Hardswish: F.hardswish, nn.Hardsigmoid: F.hardsigmoid, nn.ReLU6: F.relu6}
_ELEMENTWISE_NAMES = frozenset({"GELU", "GELUTanh", "QuickGELU", "SiLU", "Swish", "HardSwish", "Mish"})


def _pass_supported(module: nn.Module, template: Any) -> bool:
    if type(template) is not zrules.Pass:
        return False
    if type(module) is nn.ReLU or (type(module) is nn.BatchNorm2d and not module.training):
        return True
    elementwise = type(module) in _ELEMENTWISE or type(module).__name__ in _ELEMENTWISE_NAMES
    inplace_ok = not getattr(module, "inplace", False) or type(module) in _OUT_OF_PLACE
    return elementwise and inplace_ok and not list(module.children())


class FastRules:
    """Register a zennit composite with the fast rules swapped in where they apply.

    Canonizers and every hook the fast rules do not cover are registered exactly as ``composite.register`` would
    (same module map, same order); a covered ``Conv2d``/``Linear`` instead gets an instance ``forward`` that runs
    :class:`_RuleLayer` when its input is non-negative (ZPlus/Gamma) or always (Epsilon/ZBox), and zennit's hook
    otherwise; a zennit ``Sum`` under the ``Norm`` rule runs :class:`_NormLayer`. :meth:`remove` restores everything
    (also after a failed :meth:`register`).

    Args:
        composite: the zennit composite.
        cache: keep each node's gradient-independent factors after its first backward (several backward passes
            through one retained graph, as CRP does per concept); costs their memory while the graph lives.
        enabled: ``False`` registers plain zennit hooks (``composite.register``); ``None`` (default) follows
            :func:`fast_rules_enabled`.
        ledger: count the relevance each fast rule layer absorbs (one backward pass; see :class:`Ledger`). With
            ``enabled`` off nothing is counted (``ledger.layers`` stays 0).
    """

    def __init__(
        self, composite: Composite, cache: bool = False, enabled: bool | None = None, ledger: Ledger | None = None
    ) -> None:
        self.composite = composite
        self.cache = cache
        self.ledger = ledger
        self.enabled = fast_rules_enabled() if enabled is None else bool(enabled)
        self.patched: list[nn.Module] = []
        self.fast_layers = 0  # Conv2d / Linear on a fast rule
        self.fast_sums = 0  # zennit Sum modules on the fast Norm rule
        self.blocks: list[tuple[nn.Module, Any]] = []  # residual blocks summing without a stack: (block, forward)
        self.folded = 0  # emptied batch norms folded into their convolution's forward

    def register(self, model: nn.Module) -> None:
        comp = self.composite
        if not self.enabled:
            comp.register(model)  # zennit's own hooks, for checking any map against them
            return
        comp.remove()
        for canonizer in comp.canonizers:
            comp.handles += canonizer.apply(model)
        ctx: dict = {}
        mapped = [(name, child, comp.module_map(ctx, name, child)) for name, child in model.named_modules()]
        folds = _foldable_batch_norms(comp.handles, {child: template for _, child, template in mapped})
        layers: dict[nn.Module, _Layer] = {}
        for name, child, template in mapped:
            if template is None:
                continue
            if child in folds:
                continue  # an emptied batch norm folded into its convolution: patched below, once that is known
            if _pass_supported(child, template):
                child.forward = _make_pass_forward(child)
                self.patched.append(child)
                continue
            norm = _norm_rule(template) if type(child) is zlayer.Sum else None
            if norm is not None:
                child.forward = _make_norm_forward(self._layer(child, norm))
                self.patched.append(child)
                self.fast_sums += 1
                self._unstack_parent(model, name, child)
                continue
            rule = rule_of(template) if _supported(child) else None
            if rule is not None and rule.kind == "zbox" and getattr(child, "groups", 1) != 1:
                rule = None  # the bound terms stack along input channels, which grouping would split
            hook = template.copy()
            if rule is None:
                comp.hook_refs.add(hook)
                comp.handles.append(hook.register(child))
                if self.ledger is not None:  # the hooked module's inside is a rule (Ledger.inspect)
                    comp.handles.append(child.register_forward_hook(_region_recorder(self.ledger)))
                continue
            # zennit's hook as the fallback for inputs with negative entries (same module, same semantics)
            fallback = _FallbackHook(hook, child, self.ledger)
            comp.hook_refs.add(hook)
            comp.handles.append(fallback.handles)
            layers[child] = self._layer(child, rule)
            child.forward = _make_forward(layers[child], fallback)
            self.patched.append(child)
            self.fast_layers += 1
        for norm, (conv, scale) in folds.items():
            layer = layers.get(conv)
            if layer is None:  # its convolution kept zennit's hook: the batch norm stays a Pass layer
                norm.forward = _make_pass_forward(norm)
            else:
                layer.scale = scale
                norm.forward = _identity
                self.folded += 1
            self.patched.append(norm)

    def _layer(self, module: nn.Module, rule: _Rule) -> _Layer:
        layer = _Layer(module, rule, self.cache)
        layer.ledger = self.ledger
        return layer

    def _unstack_parent(self, model: nn.Module, name: str, child: nn.Module) -> None:
        """A torchvision residual block canonized by zennit sums through ``child``: let it skip the stack."""
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        current = parent.__dict__.get("forward")
        replacement = _block_forwards().get(getattr(current, "__func__", None))
        if attr != "canonizer_sum" or replacement is None or getattr(current, "__self__", None) is not parent:
            return
        self.blocks.append((parent, current))
        parent.forward = replacement.__get__(parent)

    def remove(self) -> None:
        for parent, forward in reversed(self.blocks):
            parent.forward = forward  # the canonizer's own forward, which its remove() deletes
        self.blocks.clear()
        for module in self.patched:
            module.__dict__.pop("forward", None)
        self.patched.clear()
        self.composite.remove()


class _FallbackHook:
    """zennit's hook on a module, applied only to calls the fast rule cannot take (switched per call)."""

    def __init__(self, hook: Any, module: nn.Module, ledger: Ledger | None = None) -> None:
        self.hook = hook
        self.module = module
        self.ledger = ledger
        self.handles = RemovableHandleList()
        self.handles.append(_Unregister(hook))
        # zennit's backward re-runs ``module.forward`` with modified parameters: while it does, the patched forward
        # must be the layer's own (else it would re-enter this hook without end)
        self.in_backward = False
        # no reference cycles (hook -> closure -> self -> hook): the explained copy must be freed by reference
        # counting alone (tests/explainers/test_explainer_contract.py), so the closure holds weak references only
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
        out = hook.post_forward(module, (x,), out)
        if self.ledger is not None and out.grad_fn is not None:
            self.ledger.regions.append(out.grad_fn)
        return out


def _region_recorder(ledger: Ledger) -> Any:
    """A forward hook noting the output node of a module that carries a zennit hook (weakly: no cycle)."""
    ref = weakref.ref(ledger)

    def record(module: nn.Module, inputs: Any, output: Any) -> None:
        owner = ref()
        first = output[0] if isinstance(output, tuple) else output
        if owner is not None and isinstance(first, torch.Tensor) and first.grad_fn is not None:
            owner.regions.append(first.grad_fn)

    return record


class _Unregister:
    def __init__(self, hook: Any) -> None:
        self.hook = hook

    def remove(self) -> None:
        self.hook.remove()


def _signed_supported(module: nn.Module) -> bool:
    # the signed forms (module docstring) for Conv2d and Linear; CRP's caching registrations keep zennit's hook there
    return type(module) in (nn.Conv2d, nn.Linear)


def _non_negative(x: torch.Tensor) -> bool:
    # a fast ReLU's output not changed since needs no scan; otherwise one reduction (no boolean temporary)
    if getattr(x, _NONNEG, None) == x._version:
        return True
    return x.numel() == 0 or not bool(x.min() < 0)


def _make_forward(layer: _Layer, fallback: _FallbackHook) -> Any:
    module, kind = layer.module, layer.rule.kind

    def forward(x: torch.Tensor) -> torch.Tensor:
        if fallback.in_backward:  # zennit's hook re-running the layer with its modified parameters
            return type(module).forward(module, x)
        if not torch.is_grad_enabled() or not x.requires_grad:
            return _scaled(type(module).forward(module, x), layer, plain=True)
        signed = kind in ("zplus", "gamma") and not _non_negative(x)
        if signed and (layer.cache or not _signed_supported(module)):
            return _scaled(fallback(x), layer, plain=False)
        return _RuleLayer.apply(x, layer, signed)

    return forward


def _scaled(out: torch.Tensor, layer: _Layer, plain: bool) -> torch.Tensor:
    """``out`` times the folded batch-norm factor (what the skipped batch norm would have done), if any."""
    if layer.scale is None:
        return out
    scale = _bias_view(layer.scale, out)
    return out * scale if plain else _ScalePass.apply(out, scale)


class _ScalePass(torch.autograd.Function):
    """``x * c`` under the ``Pass`` rule (what the folded batch norm did for zennit's fallback hook)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return x * scale

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _foldable_batch_norms(handles: Any, templates: dict[nn.Module, Any]) -> dict[nn.Module, tuple[nn.Module, Any]]:
    """Batch norms emptied by a zennit merge canonizer: ``{batch_norm: (convolution, per-channel factor)}``.

    zennit's ``MergeBatchNorm`` folds a batch norm into the preceding layer and leaves it computing ``x / sqrt(1 +
    eps)`` (``x`` exactly with lit_xai's exact merges), under the ``Pass`` rule. Instead of one more pass over the
    activations per layer, that factor is folded into the convolution's forward weights and the batch norm returns
    its input. Only pairs the canonizer merged (the batch norm is the convolution's sole consumer), with zero shift
    and positive factors, and a fast-rule candidate as the convolution.
    """
    from zennit.canonizers import MergeBatchNorm

    folds = {}
    for instance in _flatten(handles):
        if not isinstance(instance, MergeBatchNorm):
            continue
        norm, linears = getattr(instance, "batch_norm", None), getattr(instance, "linears", None)
        if not isinstance(linears, (list, tuple)) or len(linears) != 1:
            continue
        conv = linears[0]
        if type(norm) is not nn.BatchNorm2d or norm.training or not _pass_supported(norm, templates.get(norm)):
            continue
        if type(conv) is not nn.Conv2d or templates.get(conv) is None or not _supported(conv):
            continue
        if norm.running_mean is None or norm.weight is None or norm.bias is None:
            continue
        with torch.no_grad():
            # as the batch-norm kernel computes it: y = x * (weight / sqrt(var + eps)) + (bias - mean * that)
            scale = torch.sqrt(norm.running_var + norm.eps).reciprocal_().mul_(norm.weight)
            shift = norm.bias - norm.running_mean * scale
            if not bool((scale > 0).all()) or bool(shift.any()) or scale.shape[0] != conv.out_channels:
                continue
        folds[norm] = (conv, None if bool((scale == 1).all()) else scale.detach().clone())
    return folds


def _flatten(handles: Any) -> list:
    out = []
    for item in handles:
        if isinstance(item, (list, tuple)) or (type(item).__name__ == "RemovableHandleList"):
            out.extend(_flatten(item))
        else:
            out.append(item)
    return out


def _make_norm_forward(layer: _Layer) -> Any:
    module = layer.module

    def forward(x: torch.Tensor, other: torch.Tensor | None = None) -> torch.Tensor:
        if other is not None:  # the two summands of a residual block (_bottleneck_forward, _basic_block_forward)
            if not torch.is_grad_enabled() or not (x.requires_grad or other.requires_grad):
                return x + other
            return _ResidualNorm.apply(x, other, layer)
        if not torch.is_grad_enabled() or not x.requires_grad:
            return type(module).forward(module, x)
        return _NormLayer.apply(x, layer)

    return forward


def _make_pass_forward(module: nn.Module) -> Any:
    relu = type(module) is nn.ReLU

    def forward(x: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled() or not x.requires_grad:
            return type(module).forward(module, x)
        out = _PassLayer.apply(x, module)
        if relu:
            setattr(out, _NONNEG, out._version)
        return out

    return forward
