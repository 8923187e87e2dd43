"""Foreign backbones (timm, torchvision, MONAI) are explained correctly at defaults, or refused with a reason.

For every family: the tiny network resolves to its profile; with every additive constant removed LRP conserves
exactly (float64, the profile's composite, no arguments); with biases the conservation guard passes; and the
explainers an ``ExplanationMonitor`` runs by default (LRP, CRP, Grad-CAM) run with no layer arguments, CRP being
refused with :class:`ExplainerNotApplicable` only where the profile says concepts do not apply (ViTs).
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from _backbones import BACKBONES, trained_like, zero_biases

from lit_xai.explainers import (
    CRP,
    LRP,
    ConservationWarning,
    ExplainerNotApplicable,
    GradCAM,
    check_conservation,
    find_profile,
    lrp_relevance,
)

pytestmark = pytest.mark.usefixtures("single_thread")

SIZE = 32


def build(name: str, weights: str, x: torch.Tensor) -> torch.nn.Module:
    torch.manual_seed(0)
    net = BACKBONES[name][0]().double().eval()
    return trained_like(net, x) if weights == "trained" else net


@pytest.mark.parametrize("weights", ["random", "trained"])
@pytest.mark.parametrize("name", list(BACKBONES))
def test_backbone_conserves_relevance_and_runs_the_default_explainers(name: str, weights: str) -> None:
    torch.manual_seed(1)
    x = torch.randn(2, 3, SIZE, SIZE, dtype=torch.float64)
    net = build(name, weights, x)
    found = find_profile(net)
    assert found is not None and found.profile.family == BACKBONES[name][1]

    # exact: no additive constants, float64, the profile's composite and canonizers
    exact = zero_biases(copy.deepcopy(net))
    with torch.no_grad():
        logits = exact(x)
    t = logits.argmax(1)
    # epsilon 1e-12: random-init MobileNets have logits of 1e-5, which zennit's default 1e-6 would visibly absorb
    relevance = lrp_relevance(exact, x, t, found.profile.default_composite, composite_kwargs={"epsilon": 1e-12})
    ratio = relevance.flatten(1).sum(1) / logits[torch.arange(2), t]
    # within 1% on every family but MobileNetV3 (up to 3%, lost in the stem and first squeeze-excitation block of the
    # random-init network, whose logits are ~1e-5) and EfficientNetV2 (up to 1.1%)
    torch.testing.assert_close(ratio, torch.ones_like(ratio), rtol=5e-2, atol=0)

    # with biases, as explained by default: the guard accepts every map
    net = net.float()
    x, t = x.float(), net(x.float()).argmax(1)
    check = check_conservation(net, LRP(), x, t)
    assert check is not None and check.all_ok, (check.ratios, check.exact_ratios)

    # the monitor's default explainers, no layer arguments, no conservation warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConservationWarning)
        heat = LRP()(net, x, t)
        assert heat.shape == (2, SIZE, SIZE) and torch.isfinite(heat).all() and heat.abs().sum() > 0
        cam = GradCAM()(net, x, t)
        assert cam.shape == (2, SIZE, SIZE) and torch.isfinite(cam).all() and (cam >= 0).all()
        if found.profile.no_concepts:
            with pytest.raises(ExplainerNotApplicable, match="Vision Transformer"):
                CRP(top_k=2)(net, x, t)
        else:
            concepts = CRP(top_k=2)(net, x, t)
            assert concepts.maps.shape == (2, 2, SIZE, SIZE) and torch.isfinite(concepts.maps).all()


def test_efficientnet_v2_and_mobilenet_v3_need_their_rules():
    """Negative control: the same networks explained with no canonizers (SE gates and residual sums left to their
    plain gradient) are flagged by the guard."""
    torch.manual_seed(1)
    x = torch.randn(2, 3, SIZE, SIZE)
    for name in ("mobilenet_v3", "timm_convnext"):
        net = build(name, "trained", x.double()).float()
        check = check_conservation(net, LRP(canonizers=[]), x, 0)
        assert check is not None and not check.all_ok, (name, check.exact_ratios)


@pytest.mark.parametrize("name", ["efficientnet_v2", "mobilenet_v3"])
def test_squeeze_excitation_gate_branch_is_left_out_of_the_backward(name: str, monkeypatch) -> None:
    """The gate gets no relevance, so its branch runs on a detached input: the same map as pushing zeros through it."""
    from lit_xai.explainers import canonizers, transformer_canonizers

    torch.manual_seed(1)
    x = torch.randn(2, 3, SIZE, SIZE)
    net = build(name, "trained", x.double()).float()
    t = net(x).argmax(1)
    composite = find_profile(net).profile.default_composite
    detached = lrp_relevance(net, x, t, composite)

    calls = []

    def attached(self, input):  # the forward before the change: the gate branch in the graph, receiving zeros
        calls.append(1)
        return canonizers.signal_only_gate(self._scale(input), input)

    for module in (canonizers, transformer_canonizers):
        monkeypatch.setattr(module, "_squeeze_excitation_forward", attached)
    assert torch.equal(lrp_relevance(net, x, t, composite), detached)
    assert calls  # the attached forward ran


@pytest.mark.parametrize("weights", ["random", "trained"])
def test_the_account_decides_as_the_bias_free_pass_on_every_backbone(weights: str) -> None:
    """The guard's free account (relevance absorbed per rule layer, see ``Ledger``) and its bias-free second pass give
    the same verdict on every family, correct or explained without its rules (the negative controls), and on CNNs
    whose biases absorb relevance the account takes the place of the second pass."""
    torch.manual_seed(1)
    x = torch.randn(4, 3, SIZE, SIZE)
    cases = [(name, LRP()) for name in BACKBONES]
    cases += [(name, LRP(canonizers=[])) for name in ("mobilenet_v3", "timm_convnext", "timm_vit")]
    decided = {}
    for name, lrp in cases:
        net = build(name, weights, x.double()).float()
        t = net(x).argmax(1)
        fast = check_conservation(net, lrp, x, t)
        slow = check_conservation(net, lrp, x, t, account=False)
        assert fast is not None and slow is not None
        assert fast.ok.tolist() == slow.ok.tolist(), (name, fast.judged_ratios, slow.judged_ratios)
        decided[name, bool(lrp.canonizers == [])] = int((fast.ok & ~fast.accounted_ratios.isnan()).sum())
    # without their rules nothing is accepted by the account (an unruled a * b or LayerNorm is on the path)
    assert all(count == 0 for (_, bare), count in decided.items() if bare), decided
    if weights == "trained":  # calibrated biases absorb relevance: the account, not a second pass, judged these
        assert decided["mobilenet_v3", False] > 0 and decided["monai_densenet", False] > 0, decided


@pytest.mark.parametrize("weights", ["random", "trained"])
@pytest.mark.parametrize(
    "name", ["timm_vit", "timm_vit_layer_scale", "torchvision_vit", "timm_convnext", "mobilenet_v3", "monai_densenet"]
)
def test_the_account_closes_where_every_rule_is_counted(name: str, weights: str) -> None:
    """``Σ R + absorbed = logit`` per image: what the fast rule layers absorb, what lit_xai's transformer rules
    (LayerNorm, attention mixing) absorb, what the modules under zennit's own hooks absorb (their output's relevance
    minus what their input wrappers hand on), and the share a concatenated constant takes (a ViT's class token), each
    counted in the same pass, here on a network whose parameters require gradients (the class token's share then
    goes to a parameter, not to the input). Float64: the bound is float64's rounding (sqrt(eps) leaves room for the
    size of the reductions), on every row the account judges (``|logit|`` at least ``Ledger.min_logit``)."""
    from lit_xai.explainers._fast_rules import Ledger
    from lit_xai.explainers.lrp_pass import lrp_pass

    torch.manual_seed(1)
    x = torch.randn(3, 3, SIZE, SIZE, dtype=torch.float64)
    net = build(name, weights, x)
    ledger = Ledger(x.shape[0])
    t = net(x).argmax(1)
    composite = find_profile(net).profile.default_composite
    relevance, logits = lrp_pass(net, x, t, composite, None, None, True, ledger)
    assert ledger.usable, ledger.unruled
    # the hooks on the rules' autograd nodes only read: the map is the one of a pass without the account
    assert torch.equal(relevance, lrp_pass(net, x, t, composite, None, None, True)[0])
    judged = logits.abs() >= ledger.min_logit
    if weights == "trained":
        assert bool(judged.all()), logits
    total = relevance.flatten(1).sum(1) + ledger.absorbed
    share = (total - logits).abs() / logits.abs()
    bound = torch.finfo(torch.float64).eps ** 0.5
    assert bool((share[judged] <= bound).all()), (name, share.tolist(), logits.tolist())
