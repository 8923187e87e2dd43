"""LRP x Grad-CAM: LRP's pixel-level relevance gated by Grad-CAM's coarse class localisation.

``map = LRP * cam / max(cam)`` per image, with ``cam`` the Grad-CAM map upsampled to the input size. Relevance keeps
LRP's sign and units where Grad-CAM localises the class and fades elsewhere, the combination users made by hand to
suppress LRP's scattered background relevance.

Example:
    >>> import torch
    >>> from lit_xai.models.architectures import build_architecture
    >>> net = build_architecture("tiny_resnet", num_classes=2)
    >>> LRPGradCAM()(net, torch.rand(2, 3, 32, 32), torch.tensor([0, 1])).shape
    torch.Size([2, 32, 32])
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .base import Explainer, register_explainer
from .gradcam import GradCAM
from .lrp import LRP

__all__ = ["LRPGradCAM"]


@register_explainer("lrp_gradcam")
class LRPGradCAM(Explainer):
    """Element-wise product of LRP and the max-normalised, upsampled Grad-CAM map, ``(N, H, W)``.

    Args:
        composite: LRP composite (``None``: the profile default).
        layer: Grad-CAM layer (``None``: the profile's).
        canonizers: zennit canonizers for LRP (``None``: from the profile).
        composite_kwargs: extra arguments of the zennit composite.
    """

    def __init__(
        self,
        composite: str | None = None,
        layer: str | None = None,
        canonizers: list | None = None,
        composite_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.lrp = LRP(composite=composite, canonizers=canonizers, composite_kwargs=composite_kwargs)
        self.gradcam = GradCAM(layer=layer)

    def describe(self, model: nn.Module | None = None) -> str:
        return f"{self.lrp.describe(model)} x {self.gradcam.describe(model)}"

    def check(self, model: nn.Module) -> None:
        self.lrp.check(model)
        self.gradcam.check(model)

    def explain(self, net: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        relevance = self.lrp.explain(net, images, targets)
        cam = self.gradcam.explain(net, images, targets)
        peak = cam.flatten(1).amax(1).clamp_min(1e-12)[:, None, None]
        return relevance * (cam / peak)
