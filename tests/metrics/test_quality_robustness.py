"""Max-sensitivity and infidelity: agreement with captum (and Quantus' MaxSensitivity) on the same perturbations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _quality_models import same_state, small_cnn, state_of, tiny_resnet

from lit_xai.explainers import LRP, GradCAM
from lit_xai.metrics import infidelity, max_sensitivity
from lit_xai.metrics.infidelity import infidelity_noise
from lit_xai.metrics.sensitivity import sensitivity_noise

captum_metrics = pytest.importorskip("captum.metrics")


def _captum_explanation(explainer, model):
    def expl(inputs, target):
        inp = inputs[0] if isinstance(inputs, tuple) else inputs
        with torch.enable_grad():  # captum runs the metric under no_grad
            return (explainer(model, inp.detach(), target),)  # captum iterates over a tuple of explanations

    return expl


@pytest.mark.parametrize("explainer", [LRP(), GradCAM()], ids=["lrp", "gradcam"])
def test_sensitivity_matches_captum(explainer):
    net = tiny_resnet(seed=3, size=16)
    x = torch.randn(3, 3, 16, 16)
    t = torch.tensor([0, 1, 1])
    samples, radius = 4, 0.05
    ours = max_sensitivity(explainer, net, x, t, radius=radius, samples=samples, seed=7)
    noise = sensitivity_noise(tuple(x.shape), samples, radius, seed=7).flatten(0, 1)  # row i*S+s as captum expands

    def perturb(inputs, perturb_radius):
        return inputs + noise

    ref = captum_metrics.sensitivity_max(
        _captum_explanation(explainer, net),
        x,
        perturb_func=perturb,
        perturb_radius=radius,
        n_perturb_samples=samples,
        target=t,
    )
    # tolerance: identical maps up to float32 batching differences of the explainer
    torch.testing.assert_close(ours, ref.float(), rtol=1e-4, atol=1e-6)
    assert (ours >= 0).all() and ours.max() > 0  # a Grad-CAM map can be all zero (ReLU) on a random net


def test_sensitivity_matches_quantus():
    quantus = pytest.importorskip("quantus")
    net = tiny_resnet(seed=4, size=16)
    x = torch.randn(2, 3, 16, 16)
    t = torch.tensor([1, 0])
    samples, radius = 3, 0.1
    lrp = LRP()
    ours = max_sensitivity(lrp, net, x, t, radius=radius, samples=samples, seed=2)
    noise = sensitivity_noise(tuple(x.shape), samples, radius, seed=2).numpy()
    calls = iter(range(samples))

    def perturb(arr, indices, **kwargs):  # Quantus draws one perturbation per step: hand it ours, in order
        return arr + noise[:, next(calls)].reshape(arr.shape)

    def explain(model, inputs, targets, **kwargs):
        return lrp(net, torch.as_tensor(inputs).float(), torch.as_tensor(targets))[:, None].numpy()

    metric = quantus.MaxSensitivity(
        nr_samples=samples,
        perturb_func=perturb,
        normalise=False,
        abs=False,
        disable_warnings=True,
        return_nan_when_prediction_changes=False,
    )
    ref = metric(
        model=net,
        x_batch=x.numpy(),
        y_batch=t.numpy(),
        a_batch=lrp(net, x, t)[:, None].numpy(),
        explain_func=explain,
        device="cpu",
    )
    np.testing.assert_allclose(ours.numpy(), np.asarray(ref), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("normalize", [False, True])
def test_infidelity_matches_captum_on_channel_resolved_relevance(normalize):
    net = tiny_resnet(seed=5)
    x = torch.randn(3, 3, 32, 32)
    t = torch.tensor([1, 0, 1])
    relevance = LRP().relevance(net, x, t)  # (N, C, H, W): captum gets every channel, we get the channel sum
    samples, std = 8, 0.2
    ours = infidelity(net, x, t, relevance.sum(1), samples=samples, noise_std=std, normalize=normalize, seed=11)
    noise = infidelity_noise(tuple(x.shape), samples, std, seed=11).expand(-1, -1, 3, -1, -1).flatten(0, 1)

    def perturb(inputs):
        return noise, inputs - noise

    ref = captum_metrics.infidelity(
        net, perturb, x, relevance, target=t, n_perturb_samples=samples, normalize=normalize
    )
    # tolerance: same forwards and products, summed in a different order in float32
    torch.testing.assert_close(ours, ref.float(), rtol=2e-4, atol=1e-7)


def test_infidelity_matches_quantus():
    # Quantus' Infidelity perturbs square patches with a baseline by default; one patch covering the image and a
    # perturb_func handing it x - I for our Gaussian noise (sample by sample) make it Yeh et al.'s Gaussian
    # infidelity, unnormalised: mean_s (sum(Phi * I_s) - (f(x) - f(x - I_s)))^2
    quantus = pytest.importorskip("quantus")
    net = tiny_resnet(seed=8, size=16)
    x = torch.randn(3, 3, 16, 16)
    t = torch.tensor([0, 1, 1])
    relevance = LRP().relevance(net, x, t)  # Quantus gets every channel, we get the channel sum
    samples, std = 4, 0.2
    ours = infidelity(net, x, t, relevance.sum(1), samples=samples, noise_std=std, normalize=False, seed=3)
    noise = infidelity_noise(tuple(x.shape), samples, std, seed=3).expand(-1, -1, 3, -1, -1).numpy()
    calls = iter(range(samples))

    def perturb(arr, indices, **kwargs):  # called once per sample: one patch, the whole image
        return arr - noise[:, next(calls)].reshape(arr.shape)

    metric = quantus.Infidelity(
        perturb_patch_sizes=[16],
        n_perturb_samples=samples,
        perturb_func=perturb,
        normalise=False,
        abs=False,
        disable_warnings=True,
    )
    ref = metric(
        model=net, x_batch=x.numpy(), y_batch=t.numpy(), a_batch=relevance.numpy(), device="cpu", softmax=False
    )
    assert next(calls, None) is None  # Quantus used every one of our samples, once each
    # tolerance: the same forwards and products in float32 (Quantus sums the dot product in float32 numpy)
    np.testing.assert_allclose(ours.numpy(), np.asarray(ref), rtol=2e-4, atol=1e-7)
    assert ours.min() > 0


def test_infidelity_zero_for_exact_linear_explanation_and_scale_invariant():
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2)).eval()
    x = torch.rand(4, 3, 8, 8)
    grad = net[1].weight[1].detach().reshape(3, 8, 8).expand(4, 3, 8, 8)  # f(x) - f(x - I) = I^T w exactly
    assert infidelity(net, x, 1, grad, normalize=False).max() < 1e-8
    heat = torch.rand(4, 8, 8)
    a = infidelity(net, x, 1, heat, normalize=True)
    b = infidelity(net, x, 1, 100 * heat, normalize=True)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-8)
    assert not torch.allclose(
        infidelity(net, x, 1, heat, normalize=False), infidelity(net, x, 1, 100 * heat, normalize=False)
    )


def test_no_trace_and_seeded():
    net = tiny_resnet(seed=6)
    net.train()
    x = torch.randn(2, 3, 32, 32)
    heat = torch.rand(2, 32, 32)
    state, rng = state_of(net), torch.get_rng_state()
    a = max_sensitivity(GradCAM(), net, x, 0, samples=2, seed=1)
    b = max_sensitivity(GradCAM(), net, x, 0, samples=2, seed=1)
    c = infidelity(net, x, 0, heat, samples=3, seed=1)
    d = infidelity(net, x, 0, heat, samples=3, seed=1)
    assert torch.equal(a, b) and torch.equal(c, d)
    assert same_state(net, state) and net.training and torch.equal(rng, torch.get_rng_state())


def test_shape_errors():
    net = small_cnn()
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        max_sensitivity(lambda m, x, t: x, net, torch.rand(1, 3, 8, 8), 0, samples=1)
    with pytest.raises(ValueError, match="heatmaps"):
        infidelity(net, torch.rand(1, 3, 8, 8), 0, torch.rand(1, 4, 4))
