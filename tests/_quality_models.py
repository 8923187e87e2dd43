"""Tiny seeded models and data shared by the quality-metric tests."""

from __future__ import annotations

import torch
from torch import nn

from lit_xai.models.architectures import build_architecture
from lit_xai.models.batchnorm import calibrate_batch_norm


def small_cnn(seed: int = 0, num_classes: int = 3) -> nn.Module:
    """A plain conv/ReLU/linear net (no BatchNorm), eval mode, seeded."""
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(32, num_classes),
    )
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return net.eval()


def tiny_resnet(seed: int = 0, num_classes: int = 2, size: int = 32) -> nn.Module:
    """``tiny_resnet`` with seeded weights and batch-norm statistics calibrated on random images."""
    torch.manual_seed(seed)
    net = build_architecture("tiny_resnet", num_classes=num_classes)
    calibrate_batch_norm(net, torch.randn(16, 3, size, size))
    return net.eval()


def state_of(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_state(model: nn.Module, state: dict[str, torch.Tensor]) -> bool:
    now = model.state_dict()
    return now.keys() == state.keys() and all(torch.equal(now[k], state[k]) for k in state)
