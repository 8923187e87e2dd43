"""Layer-wise relevance propagation on zennit 0.5.1."""

from __future__ import annotations

import torch
from torch import nn

from ..models.architectures.registry import spec_of
from ._core import as_targets, explanation_model, make_composite, prepare_input, resolve_canonizers

__all__ = ["LRP", "lrp_relevance"]


def lrp_relevance(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    composite: str = "epsilon_plus_flat",
    canonizers: list | None = None,
) -> torch.Tensor:
    """Input relevance ``(N, C, H, W)`` of the target logits of an already prepared ``model`` (no copy, no restore).

    The output relevance is initialised with the target logit, so a conservative rule set gives input relevance
    summing to that logit (minus what biases absorb).
    """
    comp = make_composite(composite, resolve_canonizers(model, canonizers))
    x = prepare_input(images, model)
    with comp.context(model) as modified:
        out = modified(x)
        if out.ndim != 2:
            raise ValueError(f"model must return logits of shape (N, num_classes), got {tuple(out.shape)}")
        t = as_targets(targets, x.shape[0], out.device)
        init = torch.zeros_like(out)
        init[torch.arange(len(t)), t] = out[torch.arange(len(t)), t].detach()
        (relevance,) = torch.autograd.grad(out, x, grad_outputs=init)
    return relevance.detach()


class LRP:
    """LRP heatmaps ``(N, H, W)``, signed, summed over colour channels.

    Args:
        composite: zennit composite name, see :data:`lit_xai.explainers.COMPOSITES`; ``None`` takes the registry
            entry's default (``epsilon_plus_flat`` otherwise).
        canonizers: zennit canonizers; ``None`` takes them from the architecture registry or infers them for
            known torchvision families (ResNet, VGG, DenseNet, EfficientNet). Pass ``[]`` for none.
        batch_size: images per backward pass (bounds memory).
        copy_model: explain a deep copy (default) so the caller's model cannot change.

    Example:
        >>> import torch
        >>> from lit_xai.models.architectures import build_architecture
        >>> net = build_architecture("tiny_resnet", num_classes=2)
        >>> LRP()(net, torch.rand(2, 3, 32, 32), torch.tensor([0, 1])).shape
        torch.Size([2, 32, 32])
    """

    def __init__(
        self,
        composite: str | None = None,
        canonizers: list | None = None,
        batch_size: int = 16,
        copy_model: bool = True,
    ) -> None:
        self.composite = composite
        self.canonizers = canonizers
        self.batch_size = batch_size
        self.copy_model = copy_model

    def composite_for(self, model: nn.Module) -> str:
        if self.composite is not None:
            return self.composite
        spec = spec_of(model)
        return spec.default_composite if spec is not None else "epsilon_plus_flat"

    def relevance(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per-channel input relevance ``(N, C, H, W)``."""
        composite = self.composite_for(model)
        targets = as_targets(targets, images.shape[0], torch.device("cpu"))
        with explanation_model(model, self.copy_model) as net:
            chunks = [
                lrp_relevance(
                    net,
                    images[i : i + self.batch_size],
                    targets[i : i + self.batch_size],
                    composite=composite,
                    canonizers=self.canonizers,
                )
                for i in range(0, images.shape[0], self.batch_size)
            ]
        return torch.cat(chunks).to(images.device)

    def __call__(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.relevance(model, images, targets).sum(1)
