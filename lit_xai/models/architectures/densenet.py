"""DenseNet family: torchvision DenseNet-121 and a tiny DenseNet (growth 8, three 2-layer blocks) for CPU training.

LRP on torchvision DenseNets needs :class:`lit_xai.explainers.canonizers.DenseNetCanonizer` (the network applies its
final ReLU and pooling functionally and normalises *before* each convolution).

Example:
    >>> import torch
    >>> from lit_xai.models.architectures import build_architecture
    >>> build_architecture("tiny_densenet", num_classes=2)(torch.rand(2, 3, 32, 32)).shape
    torch.Size([2, 2])
"""

from __future__ import annotations

from dataclasses import replace

from torch import nn
from torchvision.models import DenseNet, densenet121

from ...explainers.profiles import DENSENET_PROFILE
from .registry import register_architecture

__all__ = ["build_densenet121", "build_tiny_densenet"]


@register_architecture(
    "densenet121",
    profile=replace(
        DENSENET_PROFILE,  # Grad-CAM on ``features``: norm5's output, the last map before the canonized final ReLU
        concept_layers=(
            "features.transition3",
            "features.denseblock4",
            "features.transition2",
            "features.denseblock4.denselayer16.conv2",
        ),
    ),
)
def build_densenet121(num_classes: int) -> nn.Module:
    """torchvision DenseNet-121 (random init)."""
    return densenet121(weights=None, num_classes=num_classes)


@register_architecture(
    "tiny_densenet",
    profile=replace(
        DENSENET_PROFILE,
        concept_layers=(
            "features.transition2",
            "features.denseblock3",
            "features.transition1",
            "features.denseblock3.denselayer2.conv2",
        ),
    ),
    small=True,
)
def build_tiny_densenet(num_classes: int) -> nn.Module:
    """torchvision ``DenseNet(growth_rate=8, block_config=(2, 2, 2), num_init_features=16, bn_size=2)``: stride 16,
    about 17k parameters."""
    return DenseNet(growth_rate=8, block_config=(2, 2, 2), num_init_features=16, bn_size=2, num_classes=num_classes)
