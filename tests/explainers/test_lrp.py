"""LRP: conservation per architecture, agreement with zennit used directly, composites, modes and side effects."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import pytest
import torch
from torch import nn
from zennit.attribution import Gradient
from zennit.torchvision import ResNetCanonizer

from lit_xai.explainers import COMPOSITES, LRP, lrp_relevance, make_composite
from lit_xai.explainers.canonizers import DenseNetCanonizer, SafeCompositeCanonizer, signal_only_gate
from lit_xai.models.architectures import ARCHITECTURES, build_architecture

SMALL = sorted(name for name, spec in ARCHITECTURES.items() if spec.small)
RESIDUAL_FAMILIES = {"resnet", "resnet_attention", "efficientnet"}


def _bench_module(name: str):
    """A script of ``benchmarks/`` as a module (the benchmarks are not a package)."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"lit_xai_bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# non-trivial BN statistics; biases removed exactly or randomised (shared with benchmarks/lrp_conservation.py)
calibrate = _bench_module("lrp_conservation").calibrate


def _bias_free(name: str, side: int = 32) -> tuple[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    net = calibrate(build_architecture(name, 5), torch.randn(8, 3, side, side, generator=generator), True, generator)
    x = torch.randn(4, 3, side, side, generator=generator)
    with torch.no_grad():
        logits = net(x)
    targets = logits.abs().argmax(1)
    explained = logits[torch.arange(len(targets)), targets]
    # Without biases the network is positively homogeneous: scaling the input scales every activation and logit.
    # Bring the explained logits to >= 1 so the rules' absolute 1e-6 stabilisers stay negligible, as they are in a
    # trained network, instead of dominating a random net's 0.01-sized logits.
    x = x * max(1.0, 1.0 / explained.abs().min().item())
    with torch.no_grad():
        logits = net(x)
    return net, x, targets, logits[torch.arange(len(targets)), targets]


def _conservation_tolerance(name: str, composite: str) -> float:
    family = ARCHITECTURES[name].family
    if composite == "epsilon_plus_flat" and family in RESIDUAL_FAMILIES:
        # ZPlus drops the relevance a residual branch gets (Sum rule: R_i = x_i R / sum x) where that branch's
        # output has no positive contribution (z+ = 0, output <= 0): a property of the rule, not of the canonizers
        return 5e-2
    if family == "resnet":
        return 2e-4  # zennit's ResNetCanonizer leaves BN dividing by sqrt(1 + eps) (logits off by ~1e-4)
    return 2e-5


@pytest.mark.parametrize("composite", ["epsilon_gamma_box", "epsilon_plus_flat"])
@pytest.mark.parametrize("name", SMALL)
def test_conservation_without_biases(name: str, composite: str) -> None:
    net, x, targets, explained = _bias_free(name)
    relevance = lrp_relevance(net, x, targets, composite=composite)
    error = ((relevance.flatten(1).sum(1) - explained).abs() / explained.abs()).max().item()
    print(f"conservation {name} {composite}: max relative error {error:.1e}")
    assert error <= _conservation_tolerance(name, composite)


def test_zero_params_bias_restores_conservation_with_biases() -> None:
    # with biases relevance leaks into them; rules that ignore biases conserve again (on a net whose units are not
    # kept alive by biases alone, i.e. without batch norm: tiny_vgg)
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    net = calibrate(build_architecture("tiny_vgg", 5), torch.randn(8, 3, 32, 32, generator=generator), False, generator)
    x = torch.randn(4, 3, 32, 32, generator=generator) * 30
    with torch.no_grad():
        logits = net(x)
    targets = logits.argmax(1)
    explained = logits[torch.arange(4), targets]
    leaky = lrp_relevance(net, x, targets).flatten(1).sum(1)
    exact = lrp_relevance(net, x, targets, composite_kwargs={"zero_params": "bias"}).flatten(1).sum(1)
    assert ((leaky - explained).abs() / explained.abs()).max() > 1e-2
    torch.testing.assert_close(exact, explained, rtol=1e-4, atol=0)


@pytest.mark.parametrize(
    ("name", "composite"),
    [
        ("tiny_resnet", "epsilon_plus_flat"),
        ("tiny_resnet", "epsilon_gamma_box"),
        ("tiny_resnet", "epsilon_alpha2_beta1"),
        ("resnet18", "epsilon_plus_flat"),
    ],
)
def test_matches_zennit_gradient_attributor(name: str, composite: str) -> None:
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    net = calibrate(build_architecture(name, 5), torch.randn(8, 3, 32, 32, generator=generator), False, generator)
    x = torch.randn(3, 3, 32, 32, generator=generator)
    targets = torch.tensor([0, 4, 2])
    ours = lrp_relevance(net, x, targets, composite=composite, canonizers=[ResNetCanonizer()])
    onehot = nn.functional.one_hot(targets, 5).float()
    with Gradient(model=net, composite=make_composite(composite, [ResNetCanonizer()])) as attributor:
        _, reference = attributor(x, lambda out: out.detach() * onehot)
    assert (ours - reference).abs().max() <= 1e-5 * reference.abs().max()


@pytest.mark.parametrize("composite", ["epsilon_plus_flat", "epsilon_gamma_box", "epsilon_alpha2_beta1"])
def test_composites_by_name(composite: str) -> None:
    net, x, targets, explained = _bias_free("tiny_vgg")
    heatmaps = LRP(composite)(net, x, targets)
    assert heatmaps.shape == (4, 32, 32) and torch.isfinite(heatmaps).all()
    # a plain ReLU chain without biases: every named composite conserves, and they differ from each other
    torch.testing.assert_close(heatmaps.flatten(1).sum(1), explained, rtol=1e-4, atol=0)
    other = "epsilon_alpha2_beta1" if composite != "epsilon_alpha2_beta1" else "epsilon_plus_flat"
    assert not torch.allclose(heatmaps, LRP(other)(net, x, targets))


def test_unknown_composite_is_a_clear_error() -> None:
    net = build_architecture("tiny_vgg", 2)
    with pytest.raises(ValueError, match="unknown LRP composite 'epsilon_plus_flta'") as info:
        LRP("epsilon_plus_flta")(net, torch.rand(1, 3, 32, 32), 0)
    assert all(name in str(info.value) for name in COMPOSITES)
    with pytest.raises(TypeError, match="invalid arguments"):
        make_composite("epsilon_plus_flat", [], gama=0.5)


def test_inplace_relu_gives_the_same_relevance(seed: int) -> None:
    net = build_architecture("tiny_resnet", 3).eval()
    out_of_place = copy.deepcopy(net)
    for module in out_of_place.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
    assert any(m.inplace for m in net.modules() if isinstance(m, nn.ReLU))
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(lrp_relevance(net, x, 1), lrp_relevance(out_of_place, x, 1), rtol=0, atol=0)


def test_works_under_no_grad_and_inference_mode(seed: int) -> None:
    net = build_architecture("tiny_densenet", 2)
    x = torch.randn(2, 3, 32, 32)
    reference = LRP()(net, x, torch.tensor([0, 1]))
    with torch.no_grad():
        under_no_grad = LRP()(net, x, torch.tensor([0, 1]))
    with torch.inference_mode():
        x_inference = x.clone()  # an inference tensor, as Lightning's trainer.validate hands them over
        under_inference = LRP()(net, x_inference, torch.tensor([0, 1]))
        direct = lrp_relevance(net.eval(), x_inference, torch.tensor([0, 1])).sum(1)
    for other in (under_no_grad, under_inference, direct):
        torch.testing.assert_close(other, reference, rtol=0, atol=0)


def test_caller_model_is_untouched(seed: int) -> None:
    net = build_architecture("tiny_efficientnet_relu", 2).train()
    flags = {n: p.requires_grad for n, p in net.named_parameters()}
    state = {k: v.clone() for k, v in net.state_dict().items()}
    LRP()(net, torch.randn(2, 3, 32, 32), 1)
    assert net.training and all(m.training for m in net.modules())
    assert flags == {n: p.requires_grad for n, p in net.named_parameters()}
    assert all(p.grad is None for p in net.parameters())
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in state.items())


def test_training_mode_and_bad_targets_are_rejected(seed: int) -> None:
    net = build_architecture("tiny_resnet", 2)
    with pytest.raises(ValueError, match="eval"):
        lrp_relevance(net.train(), torch.rand(1, 3, 32, 32), 0)
    with pytest.raises(ValueError, match="out of range"):
        lrp_relevance(net.eval(), torch.rand(1, 3, 32, 32), 2)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in net.modules())


@pytest.mark.parametrize("name", ["tiny_densenet", "tiny_efficientnet_relu"])
def test_unregistered_networks_get_their_family_canonizers(name: str, seed: int) -> None:
    # the same network without the profile the registry sets: canonizers come from family inference instead
    net = build_architecture(name, 3).eval()
    plain = copy.deepcopy(net)
    del plain.explanation_profile
    x = torch.randn(2, 3, 32, 32)
    composite = ARCHITECTURES[name].default_composite
    torch.testing.assert_close(LRP(composite)(plain, x, 1), LRP(composite)(net, x, 1), rtol=0, atol=0)


def test_signal_only_gate_routes_all_relevance_to_the_signal() -> None:
    gate = torch.rand(2, 4, 1, 1, requires_grad=True)
    signal = torch.randn(2, 4, 3, 3, requires_grad=True)
    out = signal_only_gate(gate, signal)
    torch.testing.assert_close(out, gate * signal)
    upstream = torch.randn_like(out)
    grad_gate, grad_signal = torch.autograd.grad(out, (gate, signal), upstream)
    assert torch.equal(grad_signal, upstream) and torch.equal(grad_gate, torch.zeros_like(gate))


def test_failing_canonizer_chain_is_reverted(seed: int) -> None:
    class Failing(DenseNetCanonizer):
        def apply(self, root_module: nn.Module) -> list:
            raise RuntimeError("cannot canonize")

    net = build_architecture("tiny_densenet", 2).eval()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(RuntimeError, match="cannot canonize"):
        lrp_relevance(
            net, torch.rand(1, 3, 32, 32), 0, canonizers=[SafeCompositeCanonizer([DenseNetCanonizer(), Failing()])]
        )
    assert not hasattr(net, "canonizer_relu") and "forward" not in vars(net)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in state.items())
    assert all(m.eps == 1e-5 for m in net.modules() if isinstance(m, nn.BatchNorm2d))


def test_checkerboard_metric_and_default_composites() -> None:
    bench = _bench_module("checkerboard")
    side = 32
    yy, xx = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    board = ((yy + xx) % 2).float()[None]
    blob = torch.exp(-((yy - 12.0) ** 2 + (xx - 20.0) ** 2) / 40.0)[None]
    noise = torch.randn(64, side, side, generator=torch.Generator().manual_seed(0))
    assert bench.stride_energy(board).item() == pytest.approx(1.0)
    assert bench.stride_energy(blob).item() < 1e-3
    # white noise spreads evenly: its share is the fraction of bins counted, and it has no spectral peaks
    assert bench.stride_energy(noise).mean().item() == pytest.approx(bench.stride_fraction(side, side), rel=0.15)
    assert bench.stride_peak_contrast(noise) == pytest.approx(1.0, abs=0.3)
    assert bench.stride_peak_contrast(board + 0.1 * noise[:1]) > 100
    # ZPlus on tiny_efficientnet_relu's strided depthwise convs leaves a grid; the registry default does not
    scores = bench.composite_scores("tiny_efficientnet_relu", ["epsilon_plus_flat", "epsilon_alpha2_beta1"], n=4)
    default = ARCHITECTURES["tiny_efficientnet_relu"].default_composite
    assert scores["epsilon_plus_flat"][1] > 8 and scores[default][1] < 3
    # tiny_resnet (stride-1 stem) has none with its default either
    default = ARCHITECTURES["tiny_resnet"].default_composite
    assert bench.composite_scores("tiny_resnet", [default], n=4)[default][1] < 3


def test_shared_tensor_copy_leaves_the_model_untouched() -> None:
    """LRP/CRP explain a module-tree copy whose weights share storage with the caller's (no weight memcpy): the
    canonizers' BatchNorm merge replaces ``.data`` on the copy only; the caller's flags and values stay as they were."""
    from lit_xai.explainers import CRP
    from lit_xai.explainers._core import explanation_model

    torch.manual_seed(0)
    net = build_architecture("tiny_resnet", num_classes=3).train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    ptrs = {k: v.data_ptr() for k, v in net.state_dict().items()}
    with explanation_model(net, share_tensors=True) as copy_:
        assert copy_ is not net and not copy_.training
        assert all(p.data_ptr() == net.get_parameter(n).data_ptr() for n, p in copy_.named_parameters())
        assert not any(p.requires_grad for p in copy_.parameters())
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([0, 2])
    LRP()(net, x, t)
    CRP(layer="layer3", top_k=2)(net, x, t)
    assert net.training and all(p.requires_grad for p in net.parameters())
    assert {k: v.data_ptr() for k, v in net.state_dict().items()} == ptrs
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
