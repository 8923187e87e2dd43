"""ResNets with a channel-attention gate after ``layer4`` (``resnet50_attention``, ``tiny_resnet_attention``).

The gate is a squeeze-and-excitation block (global average pool -> bottleneck MLP -> sigmoid) applied to the output
of ``layer4`` before the classifier's pooling. After every forward pass the module keeps the channel weights it
applied as ``attention.last_weights`` ``(N, C)`` (detached), so callbacks can log which channels the network attends
to without re-running it.

Example:
    >>> import torch
    >>> from lit_xai.models.architectures import build_architecture
    >>> net = build_architecture("tiny_resnet_attention", num_classes=2)
    >>> net(torch.rand(3, 3, 32, 32)).shape, net.attention.last_weights.shape
    (torch.Size([3, 2]), torch.Size([3, 64]))
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import nn
from torchvision.models.resnet import Bottleneck, ResNet

from ...explainers.canonizers import (
    AttributeOverride,
    ExactResNetCanonizer,
    SafeCompositeCanonizer,
    signal_only_gate,
)
from ...explainers.profiles import ExplanationProfile
from .registry import register_architecture
from .resnet import NarrowResNet

__all__ = [
    "AttentionResNet",
    "AttentionResNetCanonizer",
    "ChannelAttention",
    "TinyAttentionResNet",
    "build_resnet50_attention",
    "build_tiny_resnet_attention",
]


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation channel gate: ``x * sigmoid(W2 relu(W1 avgpool(x)))``.

    Args:
        channels: number of input (= output) channels.
        reduction: bottleneck reduction of the gate MLP (hidden width ``max(channels // reduction, 4)``).

    Attributes:
        last_weights: detached gate values ``(N, C)`` of the most recent forward pass (``None`` before the first).

    Example:
        >>> import torch
        >>> gate = ChannelAttention(32)
        >>> gate(torch.rand(2, 32, 4, 4)).shape, gate.last_weights.shape
        (torch.Size([2, 32, 4, 4]), torch.Size([2, 32]))
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, hidden, kernel_size=1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, kernel_size=1)
        self.sigmoid = nn.Sigmoid()
        # a plain attribute, not a buffer: it must stay out of state_dict and checkpoints
        self.last_weights: torch.Tensor | None = None

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """Gate values ``(N, C, 1, 1)`` in (0, 1) for ``x`` ``(N, C, H, W)``; also stored in :attr:`last_weights`."""
        gate = self.sigmoid(self.fc2(self.relu(self.fc1(self.avgpool(x)))))
        self.last_weights = gate.detach().flatten(1)
        return gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weights(x)


def _move_head_last(net: nn.Module) -> None:
    # Registration order = order in named_modules()/state_dict/print; keep it equal to forward order
    # (layer4 -> attention -> avgpool -> fc) so leaf-order based tools (SequentialMergeBatchNorm) see the true order.
    for name in ("avgpool", "fc"):
        net._modules[name] = net._modules.pop(name)


class AttentionResNet(ResNet):
    """torchvision ``ResNet`` with a :class:`ChannelAttention` gate on ``layer4``'s output (module ``attention``).

    Module names are otherwise torchvision's, so ResNet layer names, checkpoints (with ``strict=False`` for the gate)
    and zennit's ResNet block canonizers apply unchanged.
    """

    def __init__(self, block: type[nn.Module], layers: list[int], num_classes: int, reduction: int = 16) -> None:
        super().__init__(block, layers, num_classes=num_classes)  # type: ignore[arg-type]
        self.attention = ChannelAttention(self.fc.in_features, reduction=reduction)
        _move_head_last(self)

    def _forward_impl(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.attention(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


class TinyAttentionResNet(NarrowResNet):
    """:class:`~lit_xai.models.architectures.resnet.NarrowResNet` with a :class:`ChannelAttention` gate after
    ``layer4``."""

    def __init__(
        self, num_classes: int, widths: tuple[int, ...] = (8, 16, 32, 64), blocks: int = 1, reduction: int = 16
    ) -> None:
        super().__init__(num_classes, widths=widths, blocks=blocks)
        self.attention = ChannelAttention(widths[-1], reduction=reduction)
        _move_head_last(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.attention(x)
        return self.fc(self.avgpool(x).flatten(1))


def _channel_attention_forward(self: ChannelAttention, x: torch.Tensor) -> torch.Tensor:
    return signal_only_gate(self.weights(x), x)


def _attention_attributes(name: str, module: nn.Module) -> dict[str, Any] | None:
    if isinstance(module, ChannelAttention):
        return {"forward": _channel_attention_forward.__get__(module)}
    return None


class AttentionResNetCanonizer(SafeCompositeCanonizer):
    """Canonizer for the attention ResNets of this package: :class:`~lit_xai.explainers.canonizers.ExactResNetCanonizer`
    plus a signal-only :class:`ChannelAttention` gate (all relevance flows to the gated signal, none into the gate).

    Example:
        >>> net = TinyAttentionResNet(2).eval()
        >>> handles = AttentionResNetCanonizer().apply(net)
        >>> "forward" in vars(net.attention)
        True
    """

    def __init__(self) -> None:
        super().__init__((ExactResNetCanonizer(), AttributeOverride(_attention_attributes)))


def _attention_canonizers() -> list:
    return [AttentionResNetCanonizer()]


#: the attention ResNets: ResNet layers plus the gate, whose ``last_weights`` AttentionGradCAM and CRP read
RESNET_ATTENTION_PROFILE = ExplanationProfile(
    "resnet_attention",
    _attention_canonizers,
    "layer4",
    ("layer3", "layer4.0", "layer4", "attention"),
    # the strided 7x7 stem and max-pool leave a stride-2/4 grid with ZPlus (epsilon_plus_flat); Gamma halves it
    # (benchmarks/checkerboard.py) and, unlike alpha-beta, conserves relevance
    default_composite="epsilon_gamma_box",
    attention_layer="attention",
)


@register_architecture("resnet50_attention", profile=RESNET_ATTENTION_PROFILE)
def build_resnet50_attention(num_classes: int) -> nn.Module:
    """ResNet-50 (random init) with a channel-attention gate after ``layer4``."""
    return AttentionResNet(Bottleneck, [3, 4, 6, 3], num_classes=num_classes)


@register_architecture(
    "tiny_resnet_attention",
    profile=replace(
        RESNET_ATTENTION_PROFILE,
        concept_layers=("layer3", "layer4", "attention", "layer4.0.conv2"),
        default_composite="epsilon_plus_flat",
    ),
    small=True,
    min_size=16,
)
def build_tiny_resnet_attention(num_classes: int) -> nn.Module:
    """The 8-16-32-64 narrow ResNet with a channel-attention gate after ``layer4``."""
    return TinyAttentionResNet(num_classes, widths=(8, 16, 32, 64), blocks=1)
