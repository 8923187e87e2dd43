"""Augmentation stability: aligned geometric transforms, compared region, predictions, no side effects."""

from __future__ import annotations

import math

import albumentations as A
import pytest
import torch
from _quality_models import same_state, state_of, tiny_resnet

from lit_xai.explainers import GradCAM
from lit_xai.metrics import STABILITY_TRANSFORMS, augmentation_stability
from lit_xai.metrics._evaluation import predict

GEOMETRIC = ["rotate90", "rotate+12", "rotate-12", "scale66", "scale80"]


def channel_sum(model, images, targets):
    """A model-free 'explainer' that is exactly equivariant: the map moves with the image content."""
    return images.sum(1)


def test_equivariant_map_scores_one_on_geometric_transforms():
    net = tiny_resnet(size=32)
    x = torch.randn(3, 3, 32, 32)
    res = augmentation_stability(channel_sum, net, x, 0, transforms=GEOMETRIC)
    # the heatmap goes through the same albumentations call as the image, so alignment is exact up to float error
    assert res.spearman.min() > 0.999, res.spearman
    assert res.ssim.min() > 0.999, res.ssim


def test_misaligned_map_is_detected():
    net = tiny_resnet(size=32)
    x = torch.randn(2, 3, 32, 32)

    def fixed(model, images, targets):  # ignores the input: never follows a rotation
        return torch.arange(32.0).expand(images.shape[0], 32, 32).clone()

    res = augmentation_stability(fixed, net, x, 0, transforms=["rotate90"])
    assert res.spearman.max() < 0.1  # a gradient along x rotated by 90 degrees is one along y: uncorrelated


def test_predictions_are_those_of_the_transformed_images():
    net = tiny_resnet(size=32, num_classes=3)
    x = torch.randn(4, 3, 32, 32)
    t = torch.tensor([0, 1, 2, 0])
    res = augmentation_stability(GradCAM(), net, x, t, transforms=["rotate90"])
    probs = predict(net, torch.rot90(x, 1, dims=(2, 3)))  # albumentations' +90 degrees = counter-clockwise
    torch.testing.assert_close(res.prob[0], probs.max(1).values, rtol=1e-4, atol=1e-5)
    assert torch.equal(res.label[0], probs.argmax(1))
    torch.testing.assert_close(res.target_prob[0], probs.gather(1, t[:, None])[:, 0], rtol=1e-4, atol=1e-5)
    p0 = predict(net, x)
    assert torch.equal(res.original_label, p0.argmax(1))
    assert res.label_changes().shape == (1,)


def test_compared_region_excludes_what_left_the_image():
    net = tiny_resnet(size=32)
    res = augmentation_stability(channel_sum, net, torch.randn(1, 3, 32, 32), 0, transforms=list(STABILITY_TRANSFORMS))
    crop = dict(zip(res.transforms, res.crop.tolist()))
    assert crop["blur"] == crop["sharpen"] == crop["rotate90"] == 1.0
    inscribed = 1 / (math.cos(math.radians(12)) + math.sin(math.radians(12)))  # square inside a rotated square
    assert 0.7 <= crop["rotate+12"] <= inscribed + 1e-6 and crop["rotate-12"] == crop["rotate+12"]
    assert 0.5 <= crop["scale66"] <= 0.66 + 1e-6 and 0.66 <= crop["scale80"] <= 0.80 + 1e-6


def test_custom_transform_and_errors():
    net = tiny_resnet(size=32)
    x = torch.randn(2, 3, 32, 32)
    res = augmentation_stability(channel_sum, net, x, 0, transforms={"flip": lambda border: A.HorizontalFlip(p=1.0)})
    assert res.transforms == ["flip"] and res.spearman.min() > 0.999
    with pytest.raises(ValueError, match="unknown transforms"):
        augmentation_stability(channel_sum, net, x, 0, transforms=["rotate45"])


def test_no_trace():
    net = tiny_resnet(size=32)
    net.train()
    x = torch.randn(2, 3, 32, 32)
    state, rng = state_of(net), torch.get_rng_state()
    augmentation_stability(GradCAM(), net, x, 0, transforms=["blur", "scale80"])
    assert same_state(net, state) and net.training and torch.equal(rng, torch.get_rng_state())
