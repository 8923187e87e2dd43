"""The conservation guard: a network with a layer that has no LRP rule is flagged, never silently explained."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from zennit.torchvision import SequentialMergeBatchNorm

from lit_xai.explainers import CRP, LRP, GradCAM, LRPGradCAM
from lit_xai.explainers import conservation as cons
from lit_xai.explainers.conservation import CONSERVATION_BAND, ConservationWarning, check_conservation
from lit_xai.models.architectures import build_architecture

pytestmark = pytest.mark.usefixtures("single_thread")


def plain_cnn(norm: type[nn.Module] | None = None, bias: bool = True) -> nn.Module:
    """conv-norm-ReLU x2, global pool, linear; ``norm`` builds the normalisation from the channel count."""

    def layer(c_in: int, c_out: int) -> list[nn.Module]:
        parts: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=bias)]
        if norm is nn.GroupNorm:
            parts.append(nn.GroupNorm(2, c_out))
        elif norm is not None:
            parts.append(norm(c_out))
        return [*parts, nn.ReLU()]

    torch.manual_seed(0)
    return nn.Sequential(
        *layer(3, 8), *layer(8, 8), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3, bias=bias)
    ).eval()


@pytest.fixture(autouse=True)
def fresh_warning_registry(monkeypatch):
    monkeypatch.setattr(cons, "_WARNED", set())


def images(n: int = 4) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(n, 3, 16, 16)


def test_unhandled_group_norm_is_flagged_and_warned_once():
    net, x = plain_cnn(nn.GroupNorm), images()
    lrp = LRP(canonizers=[])  # what a user does when no profile is known
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lrp(net, x, 0)
        lrp(net, x, 1)
    messages = [str(w.message) for w in caught if issubclass(w.category, ConservationWarning)]
    assert len(messages) == 1, messages
    assert "Sequential" in messages[0] and "GroupNorm (2)" in messages[0]
    # never the bare advice to pass canonizers=[]: the message says that it does not help, and why
    assert "canonizers=[] does not help" in messages[0]
    check = lrp.last_check
    assert check is not None and not check.ok.any() and check.unhandled == ("GroupNorm (2)",)
    low, high = CONSERVATION_BAND
    exact = check.exact_ratios
    assert bool(((exact < low) | (exact > high)).all()), exact
    standalone = check_conservation(net, lrp, x, 0)
    assert standalone is not None and not standalone.all_ok and "GroupNorm (2)" in standalone.message()


def test_unhandled_layer_norm_is_flagged_by_crp_too():
    class ChannelsLastNorm(nn.Module):
        def __init__(self, c: int) -> None:
            super().__init__()
            self.norm = nn.LayerNorm(c)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    net, x = plain_cnn(ChannelsLastNorm), images(2)
    crp = CRP(layer="3", canonizers=[], top_k=2)  # the second convolution
    with pytest.warns(ConservationWarning, match=r"CRP relevance is not conserved .*LayerNorm \(2\)"):
        crp(net, x, 0)
    assert crp.last_check is not None and not crp.last_check.all_ok


def test_healthy_networks_pass_even_when_biases_absorb_most_relevance():
    # random biases of a random network absorb so much that sum(R) / logit leaves the band (even turns negative);
    # the rules themselves conserve, which both the account of absorbed relevance and the bias-free re-check show
    net, x = plain_cnn(nn.BatchNorm2d), images()
    lrp = LRP(canonizers=[])
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConservationWarning)
        lrp(net, x, 0)
    check = lrp.last_check
    assert check is not None and check.all_ok
    outside = ~_inside(check.ratios)
    assert bool(outside.any()), "the ratios with biases should leave the band here"
    # the account decided those maps, with no second pass: (sum R + absorbed) / logit is 1 up to float32 rounding
    assert bool(check.exact_ratios.isnan().all())
    accounted = check.accounted_ratios[outside]
    assert_ratio_one(accounted, check, outside)
    # the bias-free pass, when asked for instead, reaches the same verdict
    exact = check_conservation(net, lrp, x, 0, account=False)
    assert exact is not None and exact.all_ok and bool(exact.accounted_ratios.isnan().all())
    torch.testing.assert_close(exact.exact_ratios[outside], torch.ones_like(accounted), rtol=1e-3, atol=0)


def _inside(ratios: torch.Tensor) -> torch.Tensor:
    low, high = CONSERVATION_BAND
    return (ratios >= low) & (ratios <= high)


def assert_ratio_one(accounted: torch.Tensor, check, rows: torch.Tensor) -> None:
    """``accounted`` is 1 within float32 rounding: the per-layer sums telescope, each term rounded at float32 relative
    to the magnitude of what the layers handed down (bounded here by 1e3 x the logit for these small networks)."""
    bound = 1e3 * torch.finfo(torch.float32).eps * (1 + (check.sums[rows] / check.logits[rows]).abs())
    assert bool(((accounted - 1).abs() <= bound).all()), (accounted, bound)


def test_the_account_and_the_bias_free_pass_agree_on_every_verdict():
    """On healthy and broken networks alike the free account flags exactly the maps the bias-free pass flags."""
    cases = [
        (plain_cnn(nn.GroupNorm), LRP(canonizers=[])),
        (plain_cnn(nn.BatchNorm2d), LRP(canonizers=[])),
        (plain_cnn(nn.BatchNorm2d), LRP(canonizers=[SequentialMergeBatchNorm()])),
        (plain_cnn(nn.InstanceNorm2d), LRP(canonizers=[])),
        (plain_cnn(None), LRP(canonizers=[])),
    ]
    for arch in ("tiny_resnet", "tiny_vgg", "tiny_densenet", "tiny_efficientnet_relu"):
        torch.manual_seed(0)
        cases.append((build_architecture(arch, num_classes=3).eval(), LRP()))
    decided_by_account = 0
    for net, lrp in cases:
        x = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(2))
        fast = check_conservation(net, lrp, x, 0)
        slow = check_conservation(net, lrp, x, 0, account=False)
        assert fast is not None and slow is not None
        assert fast.ok.tolist() == slow.ok.tolist(), (type(net).__name__, fast.judged_ratios, slow.judged_ratios)
        decided_by_account += int((fast.ok & ~fast.accounted_ratios.isnan()).sum())
    assert decided_by_account > 0, "no map needed the account: the comparison shows nothing"


@pytest.mark.parametrize("arch", ["tiny_resnet", "tiny_vgg", "tiny_densenet", "tiny_efficientnet_relu"])
def test_registry_networks_pass(arch):
    torch.manual_seed(0)
    net = build_architecture(arch, num_classes=3)
    x = torch.randn(2, 3, 32, 32)
    for explainer in (LRP(), CRP(top_k=2)):
        with warnings.catch_warnings():
            warnings.simplefilter("error", ConservationWarning)
            explainer(net, x, torch.tensor([0, 2]))
        assert explainer.last_check is not None and explainer.last_check.all_ok, explainer.last_check


def test_check_conservation_skips_methods_without_relevance():
    net, x = plain_cnn(), images(2)
    assert check_conservation(net, GradCAM(layer="4"), x, 0) is None
    check = check_conservation(net, LRPGradCAM(layer="4", canonizers=[]), x, 0)
    assert check is not None and check.all_ok


def test_the_account_leaves_every_map_bitwise_unchanged():
    from lit_xai.explainers._fast_rules import Ledger
    from lit_xai.explainers.lrp_pass import lrp_pass

    for arch in ("tiny_resnet", "tiny_vgg", "tiny_densenet", "tiny_efficientnet_relu"):
        torch.manual_seed(0)
        net = build_architecture(arch, num_classes=3).eval()
        x = torch.randn(3, 3, 32, 32)
        plain, _ = lrp_pass(net, x, 1, "epsilon_plus_flat")
        ledger = Ledger(3)
        counted, _ = lrp_pass(net, x, 1, "epsilon_plus_flat", ledger=ledger)
        assert torch.equal(plain, counted), arch
        assert ledger.usable and ledger.layers > 0, (arch, ledger.unruled)


class _Functional(nn.Module):
    """conv-ReLU, then ``op`` written in forward() (no module, no rule), global pool, linear."""

    def __init__(self, op: str) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.act, self.conv2 = nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1)
        self.pool, self.head, self.op = nn.AdaptiveAvgPool2d(1), nn.Linear(8, 3), op

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.conv(x))
        y = self.conv2(h)
        if self.op == "residual":
            y = y + h  # both sides lead to the input: the plain gradient doubles the relevance
        elif self.op == "gate":
            y = y * torch.sigmoid(h)
        elif self.op == "shift":
            y = y + 0.5  # a constant on one side: the input's side keeps the relevance
        return self.head(self.pool(y).flatten(1))


@pytest.mark.parametrize(("op", "unruled"), [("residual", "AddBackward0"), ("gate", "MulBackward0"), ("shift", None)])
def test_the_account_is_refused_when_an_unruled_operation_carries_relevance(op, unruled):
    from lit_xai.explainers._fast_rules import Ledger
    from lit_xai.explainers.lrp_pass import lrp_pass

    ledger = Ledger(2)
    lrp_pass(_Functional(op).eval(), images(2), 0, "epsilon_plus", canonizers=[], ledger=ledger)
    if unruled is None:
        assert ledger.usable, ledger.unruled
    else:
        assert not ledger.usable and unruled in ledger.unruled, ledger.unruled


def test_lrp_counts_absorbed_relevance_only_while_its_maps_need_it():
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    torch.manual_seed(0)
    absorbing, conserving = build_architecture("tiny_vgg", num_classes=3), build_architecture("tiny_densenet", 3)
    lrp = LRP()
    for _ in range(2):  # biases absorb most relevance: every call keeps the account (no bias-free pass)
        lrp(absorbing, x, 0)
        assert lrp.last_check.all_ok and bool(lrp.last_check.exact_ratios.isnan().all())
        assert bool((~lrp.last_check.accounted_ratios.isnan()).any()) and lrp._account
    lrp(conserving, x, 0)  # every map inside the band: the next call skips the count
    assert lrp.last_check.all_ok and not lrp._account
    lrp(absorbing, x, 0)  # ... and, finding maps outside the band, decides them by the bias-free pass once
    check = lrp.last_check
    assert check.all_ok and bool((~check.exact_ratios.isnan()).any()) and lrp._account


def test_the_account_keeps_what_is_counted_before_the_first_rule_layer():
    """The backward may reach a module under zennit's own hook (counted by a post-hook on its output node) before
    the first fast rule layer records: both shares add up, whichever comes first."""
    from types import SimpleNamespace

    from lit_xai.explainers._fast_rules import Ledger

    ledger = Ledger(2)
    top = SimpleNamespace(next_functions=())  # a region's output node: what it received enters the account
    ledger._flow_hook(top, {}, handed=False)((), (torch.full((2, 3), 1.0, dtype=torch.float64),))
    ledger.record(torch.full((2, 4), 1.0), torch.full((2, 4), 0.5))  # a rule layer: 4 in, 2 handed on
    assert ledger.absorbed.tolist() == [5.0, 5.0]
    assert ledger.layers == 1
