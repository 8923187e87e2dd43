"""Sanity of the quality metrics on a model with a real signal: tiny_resnet trained for seconds on synthetic lesions."""

from __future__ import annotations

import pytest
import torch
from _quality_models import synthetic_tensors, trained_synthetic_model

from lit_xai.explainers import LRP
from lit_xai.metrics import pixel_flipping, randomization_check


@pytest.fixture(scope="module")
def trained():
    net, acc = trained_synthetic_model(size=32, n=256, epochs=5)
    x, y = synthetic_tensors("val", 128, 32)
    return net, acc, x[:8], y[:8]


def test_lrp_beats_random_order(trained):
    net, acc, x, y = trained
    assert acc > 0.75, f"the tiny model did not learn (val acc {acc:.2f}); the sanity checks below would be void"
    heat = LRP()(net, x, y)
    _, morf = pixel_flipping(net, x, y, heat, patch=4, steps=16, order="morf")
    _, lerf = pixel_flipping(net, x, y, heat, patch=4, steps=16, order="lerf")
    rand = torch.stack(
        [pixel_flipping(net, x, y, None, patch=4, steps=16, order="random", seed=s)[1] for s in range(3)]
    ).mean(0)
    # removing the most relevant regions first must hurt the explained logit more than a random order, and removing
    # the least relevant first must hurt least
    assert morf.mean() > rand.mean() > lerf.mean(), (morf.mean(), rand.mean(), lerf.mean())


def test_randomizing_top_layers_changes_lrp(trained):
    net, _, x, y = trained
    res = randomization_check(LRP(), net, x, y, max_steps=2)
    assert res.layers == ["fc", "layer4"]
    assert res.spearman.mean(1).max() < 0.8, res.spearman
    assert res.ssim.mean(1).max() < 0.8, res.ssim
