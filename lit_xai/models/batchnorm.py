"""BatchNorm helper for explaining untrained networks."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["calibrate_batch_norm"]


@torch.no_grad()
def calibrate_batch_norm(net: nn.Module, images: torch.Tensor) -> nn.Module:
    """Set every BatchNorm's running statistics to those of ``images`` and return ``net`` in eval mode.

    A random-init network in eval mode has identity BatchNorms, so activations shrink layer by layer (to ~1e-12 in
    EfficientNet-B0) and LRP maps underflow to 0; one calibration batch makes it behave like a trained network.

    Example:
        >>> from lit_xai.models.architectures import build_architecture
        >>> net = calibrate_batch_norm(build_architecture("tiny_resnet", 2), torch.randn(4, 3, 32, 32))
        >>> net.training
        False
    """
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = 1.0  # running stats := statistics of this one batch
    net.train()
    net(images)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    return net.eval()
