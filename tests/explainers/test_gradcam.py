"""Grad-CAM: agreement with pytorch_grad_cam, scale, per-class maps, layer defaults, attention-weighted variant."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from pytorch_grad_cam import GradCAM as ReferenceGradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from lit_xai.explainers import AttentionGradCAM, GradCAM
from lit_xai.explainers._core import resolve_module
from lit_xai.explainers.gradcam import minmax_normalize
from lit_xai.models.architectures import build_architecture

pytestmark = pytest.mark.usefixtures("single_thread")


def scaled_head(name: str, seed: int = 0) -> nn.Module:
    """A registry net whose logits are scaled up 1000x.

    pytorch_grad_cam divides by ``max + 1e-7`` when min-max normalising; random-init maps peak around 1e-2, where that
    epsilon alone would cost 1e-5. Scaling the head scales the maps, not their shape.
    """
    torch.manual_seed(seed)
    net = build_architecture(name, num_classes=3)
    with torch.no_grad():
        net.fc.weight.mul_(1000)
        net.fc.bias.mul_(1000)
    return net


def reference_cam(net: nn.Module, layer: str, x: torch.Tensor, t: torch.Tensor, cam_class=ReferenceGradCAM):
    model = copy.deepcopy(net).eval()  # pytorch_grad_cam zeroes .grad and leaves eval(): keep it off our model
    with cam_class(model=model, target_layers=[resolve_module(model, layer)]) as cam:
        maps = cam(input_tensor=x.clone().requires_grad_(True), targets=[ClassifierOutputTarget(int(c)) for c in t])
    return torch.from_numpy(maps)


@pytest.mark.parametrize("layer", ["layer4", "layer3", "layer2.0.conv1"])
def test_matches_pytorch_grad_cam(layer):
    net = scaled_head("tiny_resnet")
    torch.manual_seed(1)
    x, t = torch.randn(3, 3, 64, 64), torch.tensor([0, 2, 1])
    raw = GradCAM(layer=layer)(net, x, t)
    normalized = GradCAM(layer=layer, normalize=True)(net, x, t)
    ref = reference_cam(net, layer, x, t)
    assert raw.shape == ref.shape == (3, 64, 64)
    assert (raw >= 0).all() and raw.amax() > 1.0  # unnormalised by default
    torch.testing.assert_close(normalized, minmax_normalize(raw))
    diff = (normalized - ref).abs().max()
    assert diff < 1e-5, f"max |ours - pytorch_grad_cam| = {diff:.2e}"  # measured 6e-7


def test_raw_maps_scale_with_the_logits():
    net = build_architecture("tiny_resnet", num_classes=3)
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([1, 2])
    base = GradCAM()(net, x, t)
    with torch.no_grad():
        net.fc.weight.mul_(3)
    torch.testing.assert_close(GradCAM()(net, x, t), 3 * base)
    # min-max normalisation is scale free
    torch.testing.assert_close(GradCAM(normalize=True)(net, x, t), minmax_normalize(base))


def test_per_class_maps_equal_single_class_calls():
    net = scaled_head("tiny_resnet")
    x = torch.randn(2, 3, 32, 32)
    explainer = GradCAM(layer="layer3")
    maps = explainer.per_class(net, x, [0, 1, 2])
    assert maps.shape == (2, 3, 32, 32)
    for k in range(3):
        torch.testing.assert_close(maps[:, k], explainer(net, x, torch.full((2,), k)))
    per_image = explainer.per_class(net, x, torch.tensor([[2, 0], [1, 1]]))
    torch.testing.assert_close(per_image[0, 0], maps[0, 2])
    torch.testing.assert_close(per_image[1, 1], maps[1, 1])
    # the classes of one image really give different maps (multi-label use)
    assert (maps[:, 0] - maps[:, 1]).abs().amax() > 1e-3 * maps.abs().amax()


def test_layer_defaults_and_errors():
    net = scaled_head("tiny_resnet")
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([0, 1])
    torch.testing.assert_close(GradCAM()(net, x, t), GradCAM(layer="layer3")(net, x, t))  # registry gradcam_layer
    vgg = build_architecture("tiny_vgg", num_classes=3)
    torch.testing.assert_close(GradCAM()(vgg, x, t), GradCAM(layer="features.9")(vgg, x, t))
    # a plain conv/ReLU/linear network gets the plain-CNN profile: its last convolution
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    torch.testing.assert_close(GradCAM()(plain, x, t), GradCAM(layer="0")(plain, x, t))
    unknown = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)
    )  # GroupNorm: no family, no plain-CNN profile
    with pytest.raises(ValueError, match="Grad-CAM layer"):
        GradCAM()(unknown, x, t)
    with pytest.raises(ValueError, match=r"must output \(N, C, h, w\)"):
        GradCAM(layer="fc")(net, x, t)
    with pytest.raises(ValueError, match="not found"):
        GradCAM(layer="layer9")(net, x, t)


class AttentionWeightedReference(ReferenceGradCAM):
    """pytorch_grad_cam with channel weights multiplied by the attention gate (how users did it by hand)."""

    def get_cam_weights(self, input_tensor, target_layer, targets, activations, grads):
        return np.mean(grads, axis=(2, 3)) * self.model.attention.last_weights.cpu().numpy()


def test_attention_gradcam_matches_hand_weighted_reference():
    net = scaled_head("tiny_resnet_attention")
    x, t = torch.randn(3, 3, 32, 32), torch.tensor([0, 1, 2])
    ours = AttentionGradCAM(normalize=True)(net, x, t)
    ref = reference_cam(net, "layer4", x, t, cam_class=AttentionWeightedReference)
    assert (ours - ref).abs().max() < 1e-5
    # the attention really re-weights: the map differs from plain Grad-CAM on the same layer
    plain = GradCAM(normalize=True)(net, x, t)
    assert (plain - ours).abs().max() > 1e-3


def test_attention_gradcam_with_open_gate_is_gradcam():
    net = scaled_head("tiny_resnet_attention")
    with torch.no_grad():  # sigmoid(30) == 1.0 in float32: every channel weight is exactly 1
        net.attention.fc2.weight.zero_()
        net.attention.fc2.bias.fill_(30.0)
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([0, 1])
    torch.testing.assert_close(AttentionGradCAM()(net, x, t), GradCAM()(net, x, t))


def test_attention_gradcam_errors_and_state():
    plain = build_architecture("tiny_resnet", num_classes=3)
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="channel-attention"):
        AttentionGradCAM()(plain, x, t)
    net = build_architecture("tiny_resnet_attention", num_classes=3)
    with torch.no_grad():
        net(torch.randn(5, 3, 32, 32))
    before = net.attention.last_weights
    AttentionGradCAM(copy_model=False)(net, x, t)  # explains in place: the gate's state must be put back
    assert net.attention.last_weights is before
    with pytest.raises(ValueError, match="last_weights"):
        AttentionGradCAM(layer="layer3")(net, x, t)  # 32 channels at layer3, the gate has 64
