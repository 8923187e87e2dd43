"""Tiny configurations of the foreign backbones lit_xai explains (timm, torchvision, MONAI), and weight setters.

``trained_like`` turns a random-init network into one whose activations look trained: random batch-norm and
LayerNorm affine parameters, running statistics calibrated on a batch, layer scales of order 0.1-1 (timm initialises
ConvNeXt's to 1e-6, which makes every block an identity), random biases. ``zero_biases`` removes every additive
constant (biases, batch-norm shifts, the class token and position embedding), so correct LRP rules conserve exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import pytest
import torch
from torch import nn


def _timm_convnext() -> nn.Module:
    timm = pytest.importorskip("timm")
    return timm.create_model(
        "convnext_tiny", pretrained=False, depths=(1, 1, 1, 1), dims=(8, 16, 24, 32), num_classes=3
    )


def _timm_convnext_conv_mlp() -> nn.Module:
    timm = pytest.importorskip("timm")
    return timm.create_model(
        "convnext_tiny", pretrained=False, depths=(1, 1, 1, 1), dims=(8, 16, 24, 32), num_classes=3, conv_mlp=True
    )


def _torchvision_convnext() -> nn.Module:
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt

    setting = [CNBlockConfig(8, 16, 1), CNBlockConfig(16, 24, 1), CNBlockConfig(24, 32, 1), CNBlockConfig(32, None, 1)]
    return ConvNeXt(setting, num_classes=3)


def _timm_vit(**kwargs) -> nn.Module:
    timm = pytest.importorskip("timm")
    return timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=2, embed_dim=32, num_heads=2,
        num_classes=3, **kwargs,
    )  # fmt: skip


def _torchvision_vit() -> nn.Module:
    from torchvision.models.vision_transformer import VisionTransformer

    net = VisionTransformer(32, 8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=3)
    nn.init.normal_(net.heads.head.weight, std=0.2)  # torchvision zero-initialises the head: every logit would be 0
    nn.init.normal_(net.class_token, std=0.2)
    return net


def _efficientnet_v2() -> nn.Module:
    from torchvision.models.efficientnet import EfficientNet, FusedMBConvConfig, MBConvConfig

    setting = [
        FusedMBConvConfig(1, 3, 1, 8, 8, 1),
        FusedMBConvConfig(4, 3, 2, 8, 16, 2),
        MBConvConfig(4, 3, 2, 16, 24, 2),
    ]
    norm = partial(nn.BatchNorm2d, eps=1e-3)
    return EfficientNet(
        setting, dropout=0.0, stochastic_depth_prob=0.0, num_classes=3, norm_layer=norm, last_channel=64
    )


def _mobilenet_v3() -> nn.Module:
    from torchvision.models.mobilenetv3 import InvertedResidualConfig, MobileNetV3

    setting = [
        InvertedResidualConfig(16, 3, 16, 16, True, "RE", 2, 1, 1.0),
        InvertedResidualConfig(16, 3, 48, 24, False, "HS", 2, 1, 1.0),
        InvertedResidualConfig(24, 5, 64, 24, True, "HS", 1, 1, 1.0),
    ]
    return MobileNetV3(setting, last_channel=64, num_classes=3)


def _monai_densenet() -> nn.Module:
    monai_nets = pytest.importorskip("monai.networks.nets")
    return monai_nets.DenseNet(
        spatial_dims=2, in_channels=3, out_channels=3, init_features=8, growth_rate=4, block_config=(2, 2, 2, 2)
    )


def _plain_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 3),
    )  # fmt: skip


#: name -> (builder of a tiny random-init network, profile family it must resolve to)
BACKBONES: dict[str, tuple[Callable[[], nn.Module], str]] = {
    "timm_convnext": (_timm_convnext, "timm_convnext"),
    "timm_convnext_conv_mlp": (_timm_convnext_conv_mlp, "timm_convnext"),
    "torchvision_convnext": (_torchvision_convnext, "convnext"),
    "timm_vit": (_timm_vit, "timm_vit"),
    "timm_vit_layer_scale": (partial(_timm_vit, init_values=0.1), "timm_vit"),
    "torchvision_vit": (_torchvision_vit, "vit"),
    "efficientnet_v2": (_efficientnet_v2, "efficientnet"),
    "mobilenet_v3": (_mobilenet_v3, "mobilenet_v3"),
    "monai_densenet": (_monai_densenet, "monai_densenet"),
    "plain_cnn": (_plain_cnn, "plain_cnn"),
}


@torch.no_grad()
def trained_like(net: nn.Module, images: torch.Tensor, seed: int = 0) -> nn.Module:
    """Random affine norms, layer scales of order 0.1-1, random biases and calibrated BN statistics; eval mode."""
    g = torch.Generator().manual_seed(seed)

    def uniform(t: torch.Tensor, low: float, high: float) -> None:
        t.copy_(torch.rand(t.shape, generator=g, dtype=t.dtype) * (high - low) + low)

    def normal(t: torch.Tensor, std: float) -> None:
        t.copy_(torch.randn(t.shape, generator=g, dtype=t.dtype) * std)

    for module in net.modules():
        if isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.LayerNorm)) and module.weight is not None:
            uniform(module.weight, 0.5, 1.5)
            normal(module.bias, 0.1)
        elif isinstance(module, (nn.Conv2d, nn.Linear)) and module.bias is not None:
            normal(module.bias, 0.05)
    for name, param in net.named_parameters():
        if name.endswith(("gamma", "layer_scale")):
            uniform(param, 0.1, 1.0)
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if norms:
        momenta = [m.momentum for m in norms]
        net.train()
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batch
        net(images)
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
    return net.eval()


@torch.no_grad()
def zero_biases(net: nn.Module) -> nn.Module:
    """Remove every additive constant: biases, batch-norm shifts (beta and running mean), class token, position
    embedding."""
    for name, param in net.named_parameters():
        if name.endswith(("bias", "cls_token", "pos_embed", "pos_embedding", "class_token", "reg_token")):
            param.zero_()
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.running_mean.zero_()
    return net
