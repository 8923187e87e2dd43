"""Fast LRP rules (lit_xai.explainers._fast_rules): same relevance as zennit's hooks, fewer passes, no trace."""

from __future__ import annotations

import pytest
import torch
from _tolerance import float64_twin, rounding_atol
from torch import nn
from zennit.attribution import Gradient
from zennit.composites import LayerMapComposite
from zennit.rules import Epsilon, Gamma, Pass, ZPlus

from lit_xai.explainers import lrp_relevance, make_composite
from lit_xai.explainers._core import resolve_canonizers
from lit_xai.explainers._fast_rules import FastRules
from lit_xai.models.architectures import build_architecture
from lit_xai.models.batchnorm import calibrate_batch_norm


def _zennit(net: nn.Module, x: torch.Tensor, targets: torch.Tensor, composite) -> torch.Tensor:
    """Reference: zennit's own Gradient attributor with the composite's hooks (the oracle)."""
    with torch.no_grad():
        n_out = net(x).shape[1]
    onehot = nn.functional.one_hot(targets, n_out).float()
    with Gradient(model=net, composite=composite) as attributor:
        _, reference = attributor(x, lambda out: out.detach() * onehot)
    return reference


def _assert_same(ours: torch.Tensor, reference: torch.Tensor) -> None:
    scale = reference.abs().max()
    assert scale > 0
    assert (ours - reference).abs().max() <= 1e-5 * scale, float((ours - reference).abs().max() / scale)


def _net(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = build_architecture(name, 5)
    # non-trivial BN statistics and random biases, so the bias terms of the rules matter
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
                m.bias.normal_(0, 0.1)
    calibrate_batch_norm(net, torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(seed)))
    return net.eval().requires_grad_(False)


def _count_fast(net: nn.Module, composite) -> int:
    rules = FastRules(composite)
    try:
        rules.register(net)
        return rules.fast_layers
    finally:
        rules.remove()


@pytest.mark.parametrize("name", ["tiny_resnet", "tiny_vgg", "tiny_densenet", "tiny_resnet_attention"])
@pytest.mark.parametrize("composite", ["epsilon_gamma_box", "epsilon_plus_flat", "epsilon_alpha2_beta1"])
def test_fast_rules_match_zennit(name: str, composite: str) -> None:
    net = _net(name)
    g = torch.Generator().manual_seed(2)
    x, targets = torch.randn(3, 3, 32, 32, generator=g), torch.tensor([0, 4, 2])
    ours = lrp_relevance(net, x, targets, composite=composite)
    reference = _zennit(net, x, targets, make_composite(composite, resolve_canonizers(net, None)))
    _assert_same(ours, reference)
    fast = _count_fast(net, make_composite(composite, resolve_canonizers(net, None)))
    # every conv after the first (ZPlus / Gamma) and the linear head (Epsilon) take the fast path; alpha-beta: head
    assert fast >= (1 if composite == "epsilon_alpha2_beta1" else 3)


def test_zero_params_falls_back_to_zennit() -> None:
    net = _net("tiny_resnet")
    x, targets = torch.randn(2, 3, 32, 32), torch.tensor([1, 3])
    kwargs = {"zero_params": "bias"}
    comp = make_composite("epsilon_gamma_box", resolve_canonizers(net, None), **kwargs)
    assert _count_fast(net, comp) == 0
    ours = lrp_relevance(net, x, targets, composite="epsilon_gamma_box", composite_kwargs=kwargs)
    _assert_same(
        ours, _zennit(net, x, targets, make_composite("epsilon_gamma_box", resolve_canonizers(net, None), **kwargs))
    )


def _mlp_and_cnn() -> nn.Module:
    # conv -> conv without a ReLU in between: the second conv sees negative inputs (fallback to zennit's hook),
    # then ReLU-fed convs and linear layers (fast path, including Gamma on Linear)
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.Conv2d(8, 8, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 8 * 8, 16),
        nn.ReLU(inplace=True),
        nn.Linear(16, 4),
    ).eval()


@pytest.mark.parametrize("rule", [Gamma(0.25), ZPlus(), Epsilon(1e-3)])
def test_rules_on_custom_layers_and_negative_inputs(rule) -> None:
    net = _mlp_and_cnn()
    x, targets = torch.randn(3, 3, 16, 16), torch.tensor([0, 3, 1])

    def composite() -> LayerMapComposite:
        return LayerMapComposite([(nn.ReLU, Pass()), ((nn.Conv2d, nn.Linear), rule)])

    rules = FastRules(composite())
    rules.register(net)
    try:
        assert rules.fast_layers == 5  # all patched; the first two see negative inputs and run zennit's hook
        xi = x.clone().requires_grad_(True)
        out = net(xi)
        init = torch.zeros_like(out)
        init[torch.arange(3), targets] = out[torch.arange(3), targets].detach()
        (ours,) = torch.autograd.grad(out, xi, init)
    finally:
        rules.remove()
    _assert_same(ours, _zennit(net, x, targets, composite()))


def test_no_trace_after_explaining() -> None:
    net = _net("tiny_resnet")
    before = {
        n: (dict(m._forward_hooks), dict(m._forward_pre_hooks), "forward" in m.__dict__) for n, m in net.named_modules()
    }
    state = {k: v.clone() for k, v in net.state_dict().items()}
    lrp_relevance(net, torch.randn(2, 3, 32, 32), 1)
    after = {
        n: (dict(m._forward_hooks), dict(m._forward_pre_hooks), "forward" in m.__dict__) for n, m in net.named_modules()
    }
    assert before == after
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())
    # the model runs its ordinary forward again, gradients are the plain ones
    x = torch.randn(1, 3, 32, 32, requires_grad=True)
    net(x)[0, 1].backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.slow
@pytest.mark.parametrize(("name", "composite"), [("resnet50", "epsilon_gamma_box"), ("vgg16", "epsilon_plus_flat")])
def test_full_size_matches_zennit(name: str, composite: str) -> None:
    torch.manual_seed(0)
    net = build_architecture(name, 10).eval().requires_grad_(False)
    x, targets = torch.randn(2, 3, 224, 224), torch.tensor([3, 7])
    ours = lrp_relevance(net, x, targets, composite=composite)
    _assert_same(ours, _zennit(net, x, targets, make_composite(composite, resolve_canonizers(net, None))))


def _relevance(net: nn.Module, x: torch.Tensor, targets: torch.Tensor, rules: FastRules, passes: int = 1) -> list:
    """Input relevance from ``passes`` backward passes through one retained graph (as CRP runs one per concept)."""
    rules.register(net)
    try:
        xi = x.clone().requires_grad_(True)
        out = net(xi)
        init = torch.zeros_like(out)
        init[torch.arange(len(targets)), targets] = out[torch.arange(len(targets)), targets].detach()
        return [torch.autograd.grad(out, xi, init * (1.0 + i), retain_graph=i < passes - 1)[0] for i in range(passes)]
    finally:
        rules.remove()


@pytest.mark.parametrize("composite", ["epsilon_gamma_box", "epsilon_plus_flat"])
def test_cached_factors_give_identical_repeated_backwards(composite: str) -> None:
    """cache=True (CRP's per-concept passes) reuses each node's factors: the same relevance as without caching.

    (Without caching the rules divide the gradient directly instead of multiplying by stored reciprocals, so the two
    agree to rounding; with caching, every pass uses the factors of the first.)
    """
    net = _net("tiny_resnet")
    x, targets = torch.randn(2, 3, 32, 32), torch.tensor([1, 3])

    def rules(cache: bool) -> FastRules:
        return FastRules(make_composite(composite, resolve_canonizers(net, None)), cache=cache)

    cached = _relevance(net, x, targets, rules(True), passes=3)
    fresh = _relevance(net, x, targets, rules(False), passes=3)
    net64 = float64_twin(net)
    rules64 = FastRules(make_composite(composite, resolve_canonizers(net64, None)))
    exact = _relevance(net64, x.double(), targets, rules64, passes=3)
    for a, b, ref in zip(cached, fresh, exact):  # multiplying by a stored reciprocal vs dividing: rounding apart
        torch.testing.assert_close(a, b, rtol=0, atol=rounding_atol(b, ref))
    # the pass scaled by 2 gives twice the relevance (the cached factors do not depend on the incoming gradient):
    # scaling by a power of two is exact in binary floating point, so bit for bit
    assert torch.equal(cached[1], 2 * cached[0])


def test_residual_sums_and_zbox_take_the_fast_path() -> None:
    net = _net("tiny_resnet")
    rules = FastRules(make_composite("epsilon_gamma_box", resolve_canonizers(net, None)))
    rules.register(net)
    try:
        kinds = {name: type(m).__name__ for name, m in net.named_modules() if m in rules.patched}
        first = net.conv1 in rules.patched
        unstacked = len(rules.blocks)  # residual blocks summing through the fast Norm without torch.stack
    finally:
        rules.remove()
    assert unstacked == 4 and not rules.blocks
    assert all("forward" not in m.__dict__ for m in net.modules())
    assert rules.fast_sums == 4  # one residual Sum per block
    assert first, "the first conv (ZBox) should run the fast rule"
    assert list(kinds.values()).count("Sum") == 4, kinds


@pytest.mark.parametrize(
    ("low", "high"),
    [
        (-2.5, 2.5),
        (torch.tensor([-2.0, -1.8, -1.5]).reshape(1, 3, 1, 1), torch.tensor([2.2, 2.4, 2.6]).reshape(1, 3, 1, 1)),
    ],
)
def test_zbox_bounds_match_zennit(low, high) -> None:
    net = _net("tiny_vgg")
    g = torch.Generator().manual_seed(4)
    x, targets = torch.randn(3, 3, 32, 32, generator=g), torch.tensor([0, 4, 2])
    kwargs = {"low": low, "high": high}
    ours = lrp_relevance(net, x, targets, composite="epsilon_gamma_box", composite_kwargs=kwargs)
    ref = _zennit(net, x, targets, make_composite("epsilon_gamma_box", resolve_canonizers(net, None), **kwargs))
    _assert_same(ours, ref)


def test_per_image_zbox_bounds_fall_back_to_zennit() -> None:
    net = _net("tiny_vgg")
    x, targets = torch.randn(2, 3, 32, 32), torch.tensor([0, 4])
    kwargs = {"low": torch.full((2, 3, 32, 32), -3.0), "high": torch.full((2, 3, 32, 32), 3.0)}
    comp = make_composite("epsilon_gamma_box", resolve_canonizers(net, None), **kwargs)
    rules = FastRules(comp)
    rules.register(net)
    try:
        assert net.features[0] not in rules.patched  # per-image bounds: zennit's own hook
    finally:
        rules.remove()
    ours = lrp_relevance(net, x, targets, composite="epsilon_gamma_box", composite_kwargs=kwargs)
    _assert_same(ours, _zennit(net, x, targets, comp))


class _InPlaceAfterConv(nn.Module):
    """A conv output changed in place downstream (the fast rule must recompute it), then a Gamma conv."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.conv1, self.conv2 = nn.Conv2d(3, 6, 3, padding=1), nn.Conv2d(6, 6, 3, padding=1)
        self.head = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.conv1(x)
        z.mul_(0.5)  # in place on the fast layer's output
        h = torch.relu(z)
        return self.head(self.conv2(h).relu().mean((2, 3)))


def test_output_changed_in_place_is_recomputed() -> None:
    net = _InPlaceAfterConv().eval()
    x, targets = torch.randn(2, 3, 8, 8), torch.tensor([0, 2])

    def composite() -> LayerMapComposite:
        return LayerMapComposite([((nn.Conv2d, nn.Linear), Epsilon(1e-3))])

    (ours,) = _relevance(net, x, targets, FastRules(composite()))
    # the rule divides by the output *as the layer produced it*, which zennit's hook recomputes from the input
    _assert_same(ours, _zennit(net, x, targets, composite()))


class _InPlaceOnInput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(x * 1.0)
        out = self.conv(h).mean((2, 3))
        h.add_(1.0)  # the rule's saved input no longer holds the forward's activations
        return out


def test_input_changed_in_place_raises_clearly() -> None:
    net = _InPlaceOnInput().eval()
    rules = FastRules(LayerMapComposite([(nn.Conv2d, Gamma(0.25))]))
    with pytest.raises(RuntimeError, match="modified in place"):
        _relevance(net, torch.randn(1, 3, 6, 6), torch.tensor([1]), rules)


@pytest.mark.parametrize("composite", ["epsilon_gamma_box", "epsilon_plus_flat"])
def test_emptied_batch_norms_fold_into_their_convolutions(composite: str) -> None:
    """zennit's ResNet canonizer leaves each merged batch norm computing x / sqrt(1 + eps): folded into the conv."""
    from torchvision.models import resnet18

    torch.manual_seed(6)
    net = resnet18(num_classes=5)
    calibrate_batch_norm(net, torch.randn(8, 3, 32, 32))
    net = net.eval().requires_grad_(False)
    x, targets = torch.randn(2, 3, 32, 32), torch.tensor([1, 4])
    comp = make_composite(composite, resolve_canonizers(net, None))
    rules = FastRules(comp)
    rules.register(net)
    try:
        folded = rules.folded
    finally:
        rules.remove()
    # every batch norm of resnet18 (zennit's merge leaves eps: factors != 1), except behind a first conv on the Flat
    # rule, which keeps zennit's hook (its batch norm stays a Pass layer)
    assert folded == (20 if composite == "epsilon_gamma_box" else 19)
    ours = lrp_relevance(net, x, targets, composite=composite)
    _assert_same(ours, _zennit(net, x, targets, make_composite(composite, resolve_canonizers(net, None))))


# ------------------------------------------------------------------------------------------- the switch to zennit
def _rounding_tolerance(net: nn.Module, dtype: torch.dtype) -> float:
    """Max |difference| / max |map| two LRP passes that are equal in exact arithmetic may differ by in ``dtype``: a sum
    of K rounded terms is off by about eps * sqrt(K) (rounding errors add like a random walk), and the relative errors
    of L rule layers add up the same way: eps * sqrt(K * L), with a factor 4 of slack."""
    fan_ins = [m.weight[0].numel() for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    return 4 * torch.finfo(dtype).eps * (max(fan_ins) * len(fan_ins)) ** 0.5


def _assert_within(ours: torch.Tensor, reference: torch.Tensor, tolerance: float) -> None:
    scale = reference.abs().max()
    assert scale > 0
    err = float((ours - reference).abs().max() / scale)
    assert err <= tolerance, (err, tolerance)


@pytest.mark.parametrize("name", ["tiny_resnet", "tiny_vgg"])
@pytest.mark.parametrize("composite", ["epsilon_gamma_box", "epsilon_plus_flat"])
def test_switching_the_fast_rules_off_gives_zennits_map(name: str, composite: str) -> None:
    from lit_xai.explainers import LRP

    net = _net(name)
    x, targets = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(5)), torch.tensor([0, 4, 2])
    fast = LRP(composite)(net, x, targets)
    plain_explainer = LRP(composite, fast_rules=False)
    plain = plain_explainer(net, x, targets)
    _assert_within(fast, plain, _rounding_tolerance(net, torch.float32))
    assert plain_explainer.last_check is not None and plain_explainer.last_check.all_ok
    # off means zennit's own hooks: the same map as zennit's Gradient attributor, and no fast layer registered
    reference = _zennit(net, x, targets, make_composite(composite, resolve_canonizers(net, None))).sum(1)
    _assert_within(plain, reference, _rounding_tolerance(net, torch.float32))
    assert _count_fast(net, make_composite(composite, resolve_canonizers(net, None))) > 0
    rules = FastRules(make_composite(composite, resolve_canonizers(net, None)), enabled=False)
    try:
        rules.register(net)
        assert rules.fast_layers == 0 and not rules.patched
    finally:
        rules.remove()


def test_switched_off_maps_agree_in_float64_to_float64_rounding() -> None:
    # tiny_vgg: no batch norm to fold. On a network whose emptied batch norms the fast rules fold into the convolution
    # (tiny_resnet) the two differ by a second, non-rounding term: the stabiliser epsilon (1e-6) meets a denominator
    # scaled by 1 / sqrt(1 + bn_eps), about 1e-11 of the map; float32 rounding (above) hides it.
    torch.manual_seed(0)
    net = build_architecture("tiny_vgg", 5).double().eval().requires_grad_(False)
    x, targets = torch.randn(2, 3, 32, 32, dtype=torch.float64), torch.tensor([1, 3])
    for composite in ("epsilon_gamma_box", "epsilon_plus_flat"):
        fast = lrp_relevance(net, x, targets, composite=composite)
        plain = lrp_relevance(net, x, targets, composite=composite, fast_rules=False)
        assert fast.dtype == plain.dtype == torch.float64
        _assert_within(fast, plain, _rounding_tolerance(net, torch.float64))


def test_context_manager_and_environment_switch_every_explainer_off(monkeypatch) -> None:
    from lit_xai.explainers import fast_rules
    from lit_xai.explainers._fast_rules import FAST_RULES_ENV, fast_rules_enabled

    net = _net("tiny_resnet")
    x, targets = torch.randn(2, 3, 32, 32), torch.tensor([1, 3])
    plain = lrp_relevance(net, x, targets, fast_rules=False)
    assert fast_rules_enabled()
    with fast_rules(False):
        assert not fast_rules_enabled()
        assert torch.equal(lrp_relevance(net, x, targets), plain)  # both zennit's hooks: bit-identical
        with fast_rules(True):
            assert fast_rules_enabled()
        assert not fast_rules_enabled()
    assert fast_rules_enabled()
    monkeypatch.setenv(FAST_RULES_ENV, "0")
    assert not fast_rules_enabled() and not FastRules(make_composite("epsilon_plus_flat", [])).enabled
    assert torch.equal(lrp_relevance(net, x, targets), plain)
    with fast_rules(True):  # the block wins over the environment
        assert fast_rules_enabled()
    monkeypatch.setenv(FAST_RULES_ENV, "1")
    assert fast_rules_enabled()


def test_no_trace_after_explaining_with_zennits_hooks() -> None:
    net = _net("tiny_resnet")
    before = {
        n: (dict(m._forward_hooks), dict(m._forward_pre_hooks), "forward" in m.__dict__) for n, m in net.named_modules()
    }
    state = {k: v.clone() for k, v in net.state_dict().items()}
    lrp_relevance(net, torch.randn(2, 3, 32, 32), 1, fast_rules=False)
    after = {
        n: (dict(m._forward_hooks), dict(m._forward_pre_hooks), "forward" in m.__dict__) for n, m in net.named_modules()
    }
    assert before == after
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())


def _count_gamma_single_conv(monkeypatch) -> list[int]:
    """Count the Gamma layers whose backward takes the one-convolution path (it asks for ``W + g W+``)."""
    from lit_xai.explainers import _fast_rules

    calls = [0]
    original = _fast_rules._Layer.gamma_pos

    def spy(self):
        calls[0] += 1
        return original(self)

    monkeypatch.setattr(_fast_rules._Layer, "gamma_pos", spy)
    return calls


@pytest.mark.parametrize("name", ["tiny_resnet", "tiny_vgg"])
def test_gamma_behind_a_fast_relu_takes_one_convolution_and_matches_zennit(name: str, monkeypatch) -> None:
    net = _net(name)
    calls = _count_gamma_single_conv(monkeypatch)
    g = torch.Generator().manual_seed(5)
    x, targets = torch.randn(3, 3, 32, 32, generator=g), torch.tensor([1, 0, 3])
    ours = lrp_relevance(net, x, targets, composite="epsilon_gamma_box")
    # every Gamma conv whose output only feeds a ReLU into another rule layer: tiny_resnet's first conv of each of
    # its 4 blocks, tiny_vgg's one conv followed by a conv (not those before max pooling, whose gradient is no rule's)
    assert calls[0] == {"tiny_resnet": 4, "tiny_vgg": 1}[name]
    _assert_same(ours, _zennit(net, x, targets, make_composite("epsilon_gamma_box", resolve_canonizers(net, None))))


class _TwoConsumers(nn.Module):
    """A ReLU output read by a conv (rule: zero relevance where the ReLU is zero) and by a mean (plain gradient:
    non-zero everywhere), summed in either order: the summed relevance no longer vanishes where the ReLU is zero."""

    def __init__(self, mean_first: bool) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.conv1, self.relu1 = nn.Conv2d(3, 6, 3, padding=1), nn.ReLU()
        self.conv2, self.relu2 = nn.Conv2d(6, 6, 3, padding=1), nn.ReLU()
        self.head = nn.Linear(6, 3)
        self.mean_first = mean_first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu1(self.conv1(x))
        a, b = h.mean((2, 3)), self.relu2(self.conv2(h)).mean((2, 3))
        return self.head(a + b if self.mean_first else b + a)


@pytest.mark.parametrize("mean_first", [True, False])
def test_gamma_keeps_both_terms_when_the_relu_output_has_another_consumer(mean_first: bool, monkeypatch) -> None:
    net = _TwoConsumers(mean_first).eval().requires_grad_(False)
    calls = _count_gamma_single_conv(monkeypatch)
    x, targets = torch.rand(2, 3, 12, 12), torch.tensor([0, 2])  # non-negative: conv1 runs the fast Gamma too

    def composite() -> LayerMapComposite:
        return LayerMapComposite([(nn.ReLU, Pass()), ((nn.Conv2d, nn.Linear), Gamma(0.25))])

    rules = FastRules(composite())
    (ours,) = _relevance(net, x, targets, rules)
    assert rules.fast_layers == 3
    assert calls[0] == 0  # conv2 feeds a mean (no mark), conv1's ReLU output has two consumers (mark rejected)
    _assert_same(ours, _zennit(net, x, targets, composite()))


class _Tokens(nn.Module):
    """(N, C, H, W) -> (N, H W, C): a linear layer on tokens (three dimensions) sees signed features."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2).transpose(1, 2)


class _MeanTokens(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(1)


def _signed_net() -> nn.Module:
    # every rule layer sees inputs with negative entries: the image, in-place SiLU / Hardswish outputs, a grouped conv
    # fed by a conv, linear layers on 2-d and 3-d inputs; random biases
    torch.manual_seed(4)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.SiLU(inplace=True),
        nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=2),
        nn.Conv2d(8, 8, 1),
        nn.Hardswish(inplace=True),
        _Tokens(),
        nn.Linear(8, 6),
        _MeanTokens(),
        nn.Hardswish(),
        nn.Linear(6, 4),
    ).eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.bias.normal_(0, 0.1)
    return net.requires_grad_(False)


@pytest.mark.parametrize("rule", [Gamma(0.25), ZPlus(), Gamma(1.0, stabilizer=1e-3)])
def test_signed_inputs_take_the_fast_rule_and_match_zennit(rule, monkeypatch) -> None:
    from lit_xai.explainers import _fast_rules

    net = _signed_net()
    x, targets = torch.randn(3, 3, 16, 16), torch.tensor([0, 3, 1])

    def composite() -> LayerMapComposite:
        return LayerMapComposite([((nn.SiLU, nn.Hardswish), Pass()), ((nn.Conv2d, nn.Linear), rule)])

    fallbacks = []
    original = _fast_rules._FallbackHook.__call__
    monkeypatch.setattr(_fast_rules._FallbackHook, "__call__", lambda self, x: fallbacks.append(1) or original(self, x))
    rules = FastRules(composite())
    (ours,) = _relevance(net, x, targets, rules)
    assert rules.fast_layers == 5
    assert not fallbacks  # no zennit hook ran: signed inputs and in-place activations are on the fast path
    assert all("forward" not in m.__dict__ for m in net.modules())
    # zennit's hooks in float64 are the oracle; ours may be off by a few times zennit's own float32 rounding
    reference = _zennit(net, x, targets, composite())
    reference64 = _zennit(float64_twin(net), x.double(), targets, composite())
    assert (ours.double() - reference64).abs().max() <= rounding_atol(reference, reference64)
