"""ResNet family: torchvision ResNet-18/50 and a narrow ResNet with real residual blocks for CPU training."""

from __future__ import annotations

from dataclasses import replace

from torch import nn
from torchvision.models import resnet18, resnet50
from torchvision.models.resnet import BasicBlock

from ...explainers.profiles import RESNET_PROFILE
from .registry import register_architecture

__all__ = ["NarrowResNet", "build_resnet18", "build_resnet50", "build_tiny_resnet"]


class NarrowResNet(nn.Module):
    """A ResNet with torchvision's ``BasicBlock`` and small widths (default 8-16-32-64).

    Module names mirror torchvision's ResNet (``conv1``, ``bn1``, ``layer1`` … ``layer4``, ``fc``), so zennit's
    ``ResNetCanonizer`` and every layer name used for ResNets apply unchanged.
    """

    def __init__(self, num_classes: int, widths: tuple[int, ...] = (8, 16, 32, 64), blocks: int = 1) -> None:
        super().__init__()
        self.inplanes = widths[0]
        self.conv1 = nn.Conv2d(3, widths[0], kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.layer1 = self._make_layer(widths[0], blocks, stride=1)
        self.layer2 = self._make_layer(widths[1], blocks, stride=2)
        self.layer3 = self._make_layer(widths[2], blocks, stride=2)
        self.layer4 = self._make_layer(widths[3], blocks, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[3], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


@register_architecture("resnet50", profile=RESNET_PROFILE)
def build_resnet50(num_classes: int) -> nn.Module:
    return resnet50(weights=None, num_classes=num_classes)


@register_architecture("resnet18", profile=RESNET_PROFILE, small=True)
def build_resnet18(num_classes: int) -> nn.Module:
    return resnet18(weights=None, num_classes=num_classes)


#: the narrow ResNets: layer4 is 1/16 of the input (4x4 at 64 px, blocks that cannot tell a ring from a lesion);
#: layer3 (1/8) still sees whole lesions and is the finest layer whose Grad-CAM is class-specific on the demo data.
#: Their stride-1 3x3 stem leaves no checkerboard, so the plain epsilon_plus_flat composite is kept.
NARROW_RESNET_PROFILE = replace(
    RESNET_PROFILE,
    gradcam_layer="layer3",
    concept_layers=("layer3", "layer4", "layer4.0.conv2"),
    default_composite="epsilon_plus_flat",
)


@register_architecture("tiny_resnet", profile=NARROW_RESNET_PROFILE, small=True, min_size=16)
def build_tiny_resnet(num_classes: int) -> nn.Module:
    return NarrowResNet(num_classes, widths=(8, 16, 32, 64), blocks=1)


@register_architecture(
    "small_resnet",
    profile=replace(NARROW_RESNET_PROFILE, concept_layers=("layer3", "layer4", "layer4.1.conv2")),
    small=True,
    min_size=16,
)
def build_small_resnet(num_classes: int) -> nn.Module:
    return NarrowResNet(num_classes, widths=(16, 32, 64, 128), blocks=2)
