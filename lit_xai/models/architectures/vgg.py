"""VGG family: torchvision VGG-16 (with and without BatchNorm) and a tiny plain VGG for CPU training.

``tiny_vgg`` is a chain of conv/ReLU/max-pool layers without BatchNorm and without skip connections: LRP needs no
canonizer on it and reference implementations (zennit-crp) can serve as oracles.

Example:
    >>> import torch
    >>> from torchvision.models import VGG
    >>> from lit_xai.models.architectures import build_architecture
    >>> net = build_architecture("tiny_vgg", num_classes=3)
    >>> isinstance(net, VGG), net(torch.rand(2, 3, 32, 32)).shape
    (True, torch.Size([2, 3]))
"""

from __future__ import annotations

from dataclasses import replace

from torch import nn
from torchvision.models import VGG, vgg16, vgg16_bn
from torchvision.models.vgg import make_layers

from ...explainers.profiles import VGG_PROFILE
from .registry import register_architecture

__all__ = ["TinyVGG", "build_tiny_vgg", "build_vgg16", "build_vgg16_bn"]

#: conv widths ("M" = 2x2 max-pool) of tiny_vgg; module indices in ``features``: 1, 4, 7, 9 are the ReLUs
TINY_VGG_CFG: list[int | str] = [16, "M", 32, "M", 64, 64, "M"]


class TinyVGG(VGG):
    """A torchvision :class:`~torchvision.models.VGG` with small ``features``, global average pooling and a small
    classifier.

    It subclasses ``VGG`` (so family inference and ``VGG.forward`` apply) but does not call ``VGG.__init__``, which
    would first allocate and initialise the 120M-parameter ImageNet classifier only for it to be replaced.

    Args:
        num_classes: number of output logits.
        cfg: ``make_layers`` configuration (ints are conv widths, ``"M"`` a 2x2 max-pool).
        hidden: width of the hidden classifier layer.
    """

    def __init__(self, num_classes: int, cfg: list[int | str] | None = None, hidden: int = 64) -> None:
        nn.Module.__init__(self)
        self.features = make_layers(list(cfg or TINY_VGG_CFG), batch_norm=False)
        width = [v for v in (cfg or TINY_VGG_CFG) if v != "M"][-1]
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(int(width), hidden), nn.ReLU(inplace=True), nn.Linear(hidden, num_classes)
        )
        for m in self.features.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)


@register_architecture(
    "vgg16",
    profile=replace(
        VGG_PROFILE,
        gradcam_layer="features.29",  # last conv ReLU: twice the resolution of the final max-pool
        concept_layers=("features.22", "features.29", "features.27"),  # ends of conv blocks 4 and 5, conv5_2
    ),
)
def build_vgg16(num_classes: int) -> nn.Module:
    """torchvision VGG-16 (random init, no BatchNorm)."""
    return vgg16(weights=None, num_classes=num_classes)


@register_architecture(
    "vgg16_bn",
    profile=replace(
        VGG_PROFILE, gradcam_layer="features.42", concept_layers=("features.32", "features.42", "features.39")
    ),
)
def build_vgg16_bn(num_classes: int) -> nn.Module:
    """torchvision VGG-16 with BatchNorm (random init); ``VGGCanonizer`` merges each BN into its conv."""
    return vgg16_bn(weights=None, num_classes=num_classes)


@register_architecture(
    "tiny_vgg",
    profile=replace(VGG_PROFILE, gradcam_layer="features.9", concept_layers=("features.9", "features.7", "features.4")),
    small=True,
    min_size=16,
)
def build_tiny_vgg(num_classes: int) -> nn.Module:
    """16-32-64-64 conv/ReLU/max-pool VGG (stride 8), global average pool, 64-unit classifier; no BatchNorm."""
    return TinyVGG(num_classes)
