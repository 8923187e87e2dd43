"""Pixel flipping / AOPC: agreement with a direct numpy re-implementation and with Quantus' RegionPerturbation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _quality_models import same_state, small_cnn, state_of, tiny_resnet

from lit_xai.metrics import pixel_flipping
from lit_xai.metrics.faithfulness import patch_order


def numpy_pixel_flipping(model, images, targets, heatmaps, patch, steps, order, fill, fraction=1.0):
    """Oracle: one image at a time, explicit loops over patches (no shared code with the package)."""
    x = images.numpy().astype(np.float64)
    heat = heatmaps.numpy().astype(np.float64)
    n, c, h, w = x.shape
    hp, wp = math.ceil(h / patch), math.ceil(w / patch)
    total = round(fraction * hp * wp)
    curves = np.zeros((n, steps + 1))
    for i in range(n):
        sums = np.array(
            [
                heat[i, a * patch : (a + 1) * patch, b * patch : (b + 1) * patch].sum()
                for a in range(hp)
                for b in range(wp)
            ]
        )
        ranking = np.argsort(-sums if order == "morf" else sums, kind="stable")
        for k in range(steps + 1):
            img = x[i].copy()
            for p in ranking[: round(k * total / steps)]:
                a, b = divmod(int(p), wp)
                img[:, a * patch : (a + 1) * patch, b * patch : (b + 1) * patch] = fill
            with torch.no_grad():
                logits = model(torch.from_numpy(img[None]).float())
            curves[i, k] = float(logits[0, int(targets[i])])
    aopc = (curves[:, :1] - curves).mean(1)
    return curves, aopc


@pytest.mark.parametrize("order", ["morf", "lerf"])
@pytest.mark.parametrize("size,patch,steps,fraction", [(32, 8, 16, 1.0), (30, 8, 5, 1.0), (32, 4, 10, 0.25)])
def test_matches_numpy_oracle(order, size, patch, steps, fraction):
    # 30 px with 8 px patches: the last row/column of patches is partial
    torch.manual_seed(0)
    net = small_cnn()
    x = torch.randn(3, 3, size, size)
    t = torch.tensor([0, 1, 2])
    heat = torch.randn(3, size, size)
    curve, aopc = pixel_flipping(
        net, x, t, heat, patch=patch, steps=steps, order=order, replacement=0.0, fraction=fraction
    )
    ref_curve, ref_aopc = numpy_pixel_flipping(net, x, t, heat, patch, steps, order, 0.0, fraction)
    # tolerance: float32 forward of identical inputs in different batch compositions
    np.testing.assert_allclose(curve.numpy(), ref_curve, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(aopc.numpy(), ref_aopc, rtol=1e-5, atol=1e-5)
    assert torch.allclose(curve[:, 0], net(x).gather(1, t[:, None])[:, 0], atol=1e-5)


@pytest.mark.parametrize("order", ["morf", "lerf"])
def test_matches_quantus_region_perturbation(order):
    quantus = pytest.importorskip("quantus")
    torch.manual_seed(1)
    net = small_cnn(seed=1)
    x = torch.randn(4, 3, 32, 32)
    t = torch.tensor([0, 1, 2, 0])
    heat = torch.randn(4, 32, 32)
    n_patches = 16  # one 8x8 region per step, as Quantus flips one region per step
    curve, aopc = pixel_flipping(net, x, t, heat, patch=8, steps=n_patches, order=order, replacement=0.0)
    metric = quantus.RegionPerturbation(
        patch_size=8,
        order=order,
        regions_evaluation=n_patches,
        perturb_baseline=0.0,
        normalise=False,
        abs=False,
        disable_warnings=True,
        display_progressbar=False,
    )
    drops = np.array(
        metric(
            model=net,
            x_batch=x.numpy(),
            y_batch=t.numpy(),
            a_batch=heat[:, None].numpy(),
            device="cpu",
            softmax=False,
            channel_first=True,
        )
    )
    ours = (curve[:, :1] - curve[:, 1:]).numpy()  # Quantus reports f(x) - f(x_k) for k = 1..L
    np.testing.assert_allclose(ours, drops, rtol=1e-4, atol=1e-5)
    # our AOPC includes the k = 0 term: mean over L + 1 points
    np.testing.assert_allclose(aopc.numpy(), drops.sum(1) / (n_patches + 1), rtol=1e-4, atol=1e-5)


def test_random_order_is_seeded_and_a_permutation():
    a = patch_order(None, 3, (32, 32), 8, "random", seed=5)
    b = patch_order(None, 3, (32, 32), 8, "random", seed=5)
    c = patch_order(None, 3, (32, 32), 8, "random", seed=6)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert all(sorted(row.tolist()) == list(range(16)) for row in a)


def test_random_order_matches_oracle_given_the_same_order():
    # the random curve is the MoRF procedure applied to the order patch_order(..., "random") returned: feed that
    # order to the oracle as a heatmap whose patch sums rank the same way
    net = small_cnn(seed=2)
    x = torch.randn(2, 3, 32, 32)
    t = torch.tensor([1, 2])
    order = patch_order(None, 2, (32, 32), 8, "random", seed=3)
    heat = torch.zeros(2, 32, 32)
    for i in range(2):
        for rank, p in enumerate(order[i].tolist()):
            a, b = divmod(p, 4)
            heat[i, a * 8, b * 8] = 100.0 - rank  # one pixel per patch carries the rank
    curve, _ = pixel_flipping(net, x, t, None, patch=8, steps=8, order="random", seed=3)
    ref, _ = numpy_pixel_flipping(net, x, t, heat, 8, 8, "morf", 0.0)
    np.testing.assert_allclose(curve.numpy(), ref, rtol=1e-5, atol=1e-5)


def test_endpoints_and_replacements():
    net = small_cnn()
    x = torch.randn(2, 3, 16, 16)
    heat = torch.rand(2, 16, 16)
    for replacement in (0.0, "mean", "blur", "uniform", torch.zeros(1, 3, 1, 1)):
        curve, aopc = pixel_flipping(net, x, 0, heat, patch=4, steps=4, replacement=replacement)
        assert curve.shape == (2, 5) and aopc.shape == (2,)
        assert torch.isfinite(curve).all()
    # at the last step every region is replaced: the score is the score of the fill image, whatever the order
    mean_fill = x.mean(dim=(2, 3), keepdim=True).expand_as(x)
    last, _ = pixel_flipping(net, x, 0, heat, patch=4, steps=4, order="lerf", replacement="mean")
    assert torch.allclose(last[:, -1], net(mean_fill)[:, 0], atol=1e-5)
    # "uniform" noise is seeded
    a, _ = pixel_flipping(net, x, 0, heat, patch=4, steps=4, replacement="uniform", seed=1)
    b, _ = pixel_flipping(net, x, 0, heat, patch=4, steps=4, replacement="uniform", seed=1)
    assert torch.equal(a, b)


def test_leaves_no_trace():
    net = tiny_resnet()
    net.train()
    x, heat = torch.randn(2, 3, 32, 32), torch.rand(2, 32, 32)
    state, rng = state_of(net), torch.get_rng_state()
    pixel_flipping(net, x, 1, heat, steps=4, order="random")
    assert same_state(net, state)  # batch-norm statistics untouched although the model was in train mode
    assert net.training and all(p.requires_grad for p in net.parameters())
    assert torch.equal(rng, torch.get_rng_state())


def test_bad_input_is_explained():
    net = small_cnn()
    x = torch.randn(1, 3, 16, 16)
    with pytest.raises(ValueError, match="needs heatmaps"):
        pixel_flipping(net, x, 0, None, patch=4, steps=4, order="morf")
    with pytest.raises(ValueError, match="exceeds"):
        pixel_flipping(net, x, 0, torch.rand(1, 16, 16), patch=8, steps=5)
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        pixel_flipping(net, x, 0, torch.rand(1, 8, 8), patch=4, steps=4)
    with pytest.raises(ValueError, match="replacement"):
        pixel_flipping(net, x, 0, torch.rand(1, 16, 16), patch=4, steps=4, replacement="black")
