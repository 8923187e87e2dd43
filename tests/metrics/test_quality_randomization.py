"""Cascading model-parameter randomisation: order, no side effects, sensitivity to the model."""

from __future__ import annotations

import pytest
import torch
from _quality_models import same_state, state_of, tiny_resnet

from lit_xai.explainers import LRP
from lit_xai.metrics import cascade_layers, randomization_check


def test_cascade_order_top_first():
    net = tiny_resnet()
    assert cascade_layers(net) == ["fc", "layer4", "layer3", "layer2", "layer1", "bn1", "conv1"]
    layers = cascade_layers(net, "layer")
    assert layers[0] == "fc" and layers[-1] == "conv1" and len(layers) == 25


def test_model_free_explainer_stays_identical():
    # an explanation that ignores the model (here: the input itself) must fail the sanity check: similarity 1
    net = tiny_resnet()
    res = randomization_check(lambda m, x, t: x.sum(1), net, torch.randn(2, 3, 32, 32), 0)
    assert torch.allclose(res.spearman, torch.ones_like(res.spearman))
    assert torch.allclose(res.ssim, torch.ones_like(res.ssim), atol=1e-5)


def test_lrp_changes_and_nothing_leaks():
    net = tiny_resnet(seed=2)
    net.train()
    x = torch.randn(3, 3, 32, 32)
    state, rng = state_of(net), torch.get_rng_state()
    a = randomization_check(LRP(), net, x, 1, seed=4)
    assert same_state(net, state) and net.training and torch.equal(rng, torch.get_rng_state())
    b = randomization_check(LRP(), net, x, 1, seed=4, max_steps=3)
    assert a.layers[:3] == b.layers and torch.equal(a.spearman[:3], b.spearman)  # seeded and cascading
    assert a.spearman.shape == a.ssim.shape == a.spearman_abs.shape == (7, 3)
    assert a.spearman[-1].mean() < 0.9  # the fully randomised network explains differently


def test_bad_layer_name():
    with pytest.raises(ValueError, match="not found"):
        randomization_check(LRP(), tiny_resnet(), torch.randn(1, 3, 32, 32), 0, layers=["head"])
