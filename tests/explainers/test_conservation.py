"""The conservation guard: a network with a layer that has no LRP rule is flagged, never silently explained."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

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
    # the rules themselves conserve, which the bias-free re-check shows: nothing is flagged
    net, x = plain_cnn(nn.BatchNorm2d), images()
    lrp = LRP(canonizers=[])
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConservationWarning)
        lrp(net, x, 0)
    check = lrp.last_check
    assert check is not None and check.all_ok
    assert bool((~check.exact_ratios.isnan()).any()), "the ratios with biases should leave the band here"
    torch.testing.assert_close(
        check.exact_ratios[~check.exact_ratios.isnan()],
        torch.ones(4, dtype=torch.float64)[~check.exact_ratios.isnan()],
        rtol=1e-3,
        atol=0,
    )


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
