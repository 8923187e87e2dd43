"""EfficientNet family with ReLU instead of SiLU: torchvision EfficientNet-B0 and a tiny three-stage EfficientNet.

Every ``nn.SiLU`` on the signal path is replaced by ``nn.ReLU`` so that LRP's ReLU-based rules (``ZPlus``,
``AlphaBeta``) are valid for the layers that follow; LRP additionally needs
:class:`lit_xai.explainers.canonizers.EfficientNetCanonizer` (squeeze-and-excitation gates and the in-place MBConv
residual). The SiLU *inside* each squeeze-and-excitation gate is kept: the canonizer treats the gate as signal-only, so
no relevance passes through it, and a ReLU there kills whole gates (with 4-6 bottleneck units, all of them are often
negative at initialisation and ``fc1`` then never receives a gradient again). ImageNet SiLU weights do not transfer to
these networks unchanged.

Example:
    >>> import torch
    >>> from lit_xai.models.architectures import build_architecture
    >>> net = build_architecture("tiny_efficientnet_relu", num_classes=2)
    >>> sorted({type(m).__name__ for m in net.modules() if isinstance(m, (torch.nn.SiLU, torch.nn.ReLU))})
    ['ReLU', 'SiLU']
    >>> all(isinstance(block.block[-2].activation, torch.nn.SiLU) for block in net.features[1:4].modules()
    ...     if hasattr(block, "use_res_connect"))
    True
"""

from __future__ import annotations

from dataclasses import replace

from torch import nn
from torchvision.models import EfficientNet, efficientnet_b0
from torchvision.models.efficientnet import MBConvConfig
from torchvision.ops.misc import SqueezeExcitation

from ...explainers.profiles import EFFICIENTNET_PROFILE
from .registry import register_architecture

__all__ = ["build_efficientnet_b0_relu", "build_tiny_efficientnet_relu", "silu_to_relu"]


def silu_to_relu(net: nn.Module, keep_inside: tuple[type[nn.Module], ...] = (SqueezeExcitation,)) -> nn.Module:
    """Replace every ``nn.SiLU`` submodule of ``net`` by an ``nn.ReLU`` with the same ``inplace`` flag (in place),
    except inside modules of the ``keep_inside`` types (by default the squeeze-and-excitation gates).

    Example:
        >>> silu_to_relu(nn.Sequential(nn.Linear(2, 2), nn.SiLU()))[1]
        ReLU()
    """
    kept = {id(m) for gate in net.modules() if isinstance(gate, keep_inside) for m in gate.modules()}
    for parent in list(net.modules()):
        if id(parent) in kept:
            continue
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.SiLU):
                setattr(parent, name, nn.ReLU(inplace=child.inplace))
    return net


@register_architecture(
    "efficientnet_b0_relu",
    profile=replace(
        EFFICIENTNET_PROFILE,  # Grad-CAM on ``features``: the last 1x1 Conv-BN-ReLU (1280 channels, stride 32)
        concept_layers=("features.6", "features.7", "features.5", "features.6.3.block.0"),
    ),
)
def build_efficientnet_b0_relu(num_classes: int) -> nn.Module:
    """torchvision EfficientNet-B0 (random init) with ReLU activations (SiLU kept inside the SE gates)."""
    return silu_to_relu(efficientnet_b0(weights=None, num_classes=num_classes))


@register_architecture(
    "tiny_efficientnet_relu",
    profile=replace(
        EFFICIENTNET_PROFILE, concept_layers=("features.3", "features.2", "features.4", "features.3.1.block.0")
    ),
    small=True,
    min_size=16,
)
def build_tiny_efficientnet_relu(num_classes: int) -> nn.Module:
    """Three MBConv stages 16 -> 16 -> 24 -> 32 channels (expand ratio 1 then 4; stride 8; residual blocks with SE
    gates), a 1x1 head to 128 channels, ReLU activations (SiLU inside the SE gates), no dropout."""
    setting = [
        MBConvConfig(1, 3, 1, 16, 16, 1),
        MBConvConfig(4, 3, 2, 16, 24, 2),
        MBConvConfig(4, 3, 2, 24, 32, 2),
    ]
    net = EfficientNet(setting, dropout=0.0, stochastic_depth_prob=0.0, num_classes=num_classes, last_channel=128)
    return silu_to_relu(net)
