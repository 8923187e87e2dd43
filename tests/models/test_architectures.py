"""One test parametrized over the whole architecture registry, plus the registry's own error handling.

A new architecture registered with ``@register_architecture`` is covered here without extra test code: small
entries run by default, full-size ones with ``-m slow``.
"""

from __future__ import annotations

import copy

import pytest
import torch
from _tolerance import float64_twin, rounding_atol
from torch import nn

from lit_xai.explainers import LRP, lrp_relevance, make_composite, resolve_layer_name
from lit_xai.explainers._core import explanation_model
from lit_xai.explainers.profiles import VGG_PROFILE
from lit_xai.models.architectures import ARCHITECTURES, build_architecture, get_spec, register_architecture
from lit_xai.models.batchnorm import calibrate_batch_norm

TASKS = {"binary": 2, "multiclass": 5, "multilabel": 3}
#: families canonized with zennit's own (inexact) batch-norm merge
ZENNIT_MERGE_FAMILIES = {"resnet", "vgg"}


class _Wrapper(nn.Module):
    """Stands in for a LightningModule holding the network as ``.net`` next to other modules."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.loss = nn.CrossEntropyLoss()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _params() -> list:
    return [pytest.param(n, marks=() if ARCHITECTURES[n].small else pytest.mark.slow) for n in sorted(ARCHITECTURES)]


def _hook_count(net: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) + len(m._backward_pre_hooks)
        for m in net.modules()
    )


def _snapshot(net: nn.Module) -> dict:
    """Everything a canonizer could leave behind: tensors (bitwise), parameter identity, module attributes, hooks."""
    plain = (bool, int, float, str, tuple, type(None))
    return {
        "state": {k: v.detach().clone() for k, v in net.state_dict().items()},
        "param_ids": {n: id(p) for n, p in net.named_parameters()},
        "modules": {
            n: (type(m), sorted(vars(m)), {k: v for k, v in vars(m).items() if isinstance(v, plain)})
            for n, m in net.named_modules()
        },
        "hooks": _hook_count(net),
    }


def _assert_same(before: dict, after: dict) -> None:
    assert before["state"].keys() == after["state"].keys()
    for key, value in before["state"].items():
        assert torch.equal(value, after["state"][key]), f"{key} changed"
    assert before["param_ids"] == after["param_ids"], "parameters were replaced, optimizers would lose them"
    assert before["modules"] == after["modules"], "module attributes or submodules were not restored"
    assert after["hooks"] == before["hooks"] == 0, "hooks left behind"


def _output_of(net: nn.Module, layer: str, x: torch.Tensor) -> torch.Tensor:
    store: dict[str, torch.Tensor] = {}
    module = dict(net.named_modules())[layer]
    handle = module.register_forward_hook(lambda m, i, o: store.__setitem__("out", o))
    try:
        with torch.no_grad():
            net(x)
    finally:
        handle.remove()
    return store["out"]


@pytest.mark.parametrize("name", _params())
def test_architecture_contract(name: str, seed: int) -> None:
    spec = get_spec(name)
    side = max(spec.min_size, 32 if spec.small else 64)
    n = 2
    x = torch.randn(n, 3, side, side)

    # forward shape for each task's logit count; binary tasks use two logits
    for task, k in TASKS.items():
        out = build_architecture(name, k).eval()(x)
        assert out.shape == (n, k), f"{task}: {tuple(out.shape)}"
        assert torch.isfinite(out).all()

    net = build_architecture(name, TASKS["multiclass"])
    assert net.explanation_profile is spec.profile
    calibrate_batch_norm(net, torch.randn(8, 3, side, side))  # else EfficientNet-B0 LRP underflows to 0

    # every parameter receives a (finite, non-zero) gradient; eval() so stochastic depth cannot drop a block
    net.eval()
    nn.functional.cross_entropy(net(x), torch.tensor([0, 3])).backward()
    for pname, p in net.named_parameters():
        assert p.grad is not None, f"{pname} receives no gradient"
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, f"{pname} has a zero/non-finite gradient"
    net.zero_grad(set_to_none=True)

    # layer names resolve on the net and through a wrapper; Grad-CAM and concept layers are spatial feature maps
    wrapper = _Wrapper(net)
    layers = (
        spec.gradcam_layer,
        *spec.concept_layers,
        *([spec.extras["attention_layer"]] if "attention_layer" in spec.extras else []),
    )
    assert spec.gradcam_layer and spec.concept_layers
    for layer in layers:
        assert resolve_layer_name(net, layer) == layer
        assert resolve_layer_name(wrapper, layer) == f"net.{layer}"
        feature_map = _output_of(net, layer, x)
        assert feature_map.ndim == 4 and feature_map.shape[0] == n, f"{layer}: {tuple(feature_map.shape)}"
    if "attention_layer" in spec.extras:
        attention = dict(net.named_modules())[spec.extras["attention_layer"]]
        assert attention.last_weights.shape == _output_of(net, spec.extras["attention_layer"], x).shape[:2]
        assert not attention.last_weights.requires_grad

    # canonizer factory returns fresh objects (canonizers hold state)
    first, second = spec.canonizers(), spec.canonizers()
    assert all(a is not b for a, b in zip(first, second))

    # canonized network computes the same function: as close to a float64 reference as the float32 network itself
    # (exact BN merges); zennit's own merge (ResNet/VGG canonizers) leaves BNs dividing by sqrt(1 + eps)
    with torch.no_grad():
        reference = net(x)
        exact = copy.deepcopy(net).double()(x.double())
        handles = [h for c in spec.canonizers() for h in c.apply(net)]
        try:
            canonized = net(x)
        finally:
            for handle in handles:
                handle.remove()
    roundoff = (reference - exact).abs().max().item()
    deviation = (canonized - exact).abs().max().item()
    if spec.family in ZENNIT_MERGE_FAMILIES:
        assert deviation <= 1e-2 * exact.abs().max().item()
    else:
        assert deviation <= 10 * roundoff + 1e-6 * exact.abs().max().item(), (deviation, roundoff)

    # canonizers revert exactly, after a normal LRP pass and after an exception inside the context
    before = _snapshot(net)
    relevance = lrp_relevance(net, x, torch.tensor([1, 2]), composite=spec.default_composite)
    _assert_same(before, _snapshot(net))
    with pytest.raises(RuntimeError, match="boom"):
        with make_composite(spec.default_composite, spec.canonizers()).context(net) as modified:
            modified(x.clone().requires_grad_())
            raise RuntimeError("boom")
    _assert_same(before, _snapshot(net))

    # LRP runs through the public explainer on the wrapper, leaves the caller's model alone, agrees with the core call
    assert relevance.shape == x.shape and torch.isfinite(relevance).all() and relevance.abs().sum() > 0
    net.train()
    before = _snapshot(net)
    heatmaps = LRP()(wrapper, x, torch.tensor([1, 2]))
    assert net.training and all(p.grad is None for p in net.parameters())
    _assert_same(before, _snapshot(net))
    assert heatmaps.shape == (n, side, side)
    with explanation_model(wrapper) as prepared:
        expected = lrp_relevance(prepared, x, torch.tensor([1, 2]), composite=spec.default_composite).sum(1)
    with explanation_model(float64_twin(wrapper)) as prepared64:  # this run's float32 rounding, for the bound
        expected64 = lrp_relevance(prepared64, x.double(), torch.tensor([1, 2]), composite=spec.default_composite)
    torch.testing.assert_close(heatmaps, expected, rtol=0, atol=rounding_atol(expected, expected64.sum(1)))


def test_unknown_architecture_lists_choices() -> None:
    with pytest.raises(ValueError, match="unknown architecture 'resnet51'") as info:
        build_architecture("resnet51", num_classes=2)
    for valid in ("tiny_resnet", "tiny_densenet", "tiny_efficientnet_relu", "tiny_vgg", "tiny_resnet_attention"):
        assert valid in str(info.value)


def test_duplicate_registration_raises() -> None:
    count, original = len(ARCHITECTURES), ARCHITECTURES["tiny_vgg"]
    with pytest.raises(ValueError, match="'tiny_vgg' is already registered"):

        @register_architecture("tiny_vgg", profile=VGG_PROFILE)
        def _shadow(num_classes: int) -> nn.Module:
            return nn.Linear(3, num_classes)

    assert len(ARCHITECTURES) == count and ARCHITECTURES["tiny_vgg"] is original
