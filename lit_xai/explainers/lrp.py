"""Layer-wise relevance propagation on zennit 0.5.1.

Example:
    >>> import torch
    >>> from lit_xai.models.architectures import build_architecture
    >>> net = build_architecture("tiny_resnet", num_classes=2)
    >>> LRP("epsilon_plus_flat")(net, torch.rand(2, 3, 32, 32), torch.tensor([0, 1])).shape
    torch.Size([2, 32, 32])
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..models.architectures.registry import spec_of
from ._core import as_targets, explanation_model, make_composite, prepare_input, resolve_canonizers
from ._fast_rules import FastRules

__all__ = ["LRP", "lrp_relevance"]


def lrp_relevance(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor | int,
    composite: str = "epsilon_plus_flat",
    canonizers: list | None = None,
    composite_kwargs: dict[str, Any] | None = None,
) -> torch.Tensor:
    """Input relevance ``(N, C, H, W)`` of the target logits of an already prepared ``model`` (no copy, no restore).

    The output relevance is initialised with the target logit, so with biases ignored (``composite_kwargs=
    {"zero_params": "bias"}``) or absent the input relevance of each image sums to its target logit; biases otherwise
    absorb their share. The model must be in ``eval()`` mode (batch-norm merging is only valid with running
    statistics); :class:`LRP` takes care of that on a copy. Gradients are enabled here, so this also works when called
    under ``torch.no_grad()`` or ``torch.inference_mode()``.

    Args:
        model: network (or module containing it) mapping ``(N, C, H, W)`` to logits ``(N, K)``, in eval mode.
        images: input batch, normalised as the model expects.
        targets: class index per image (an int applies to all).
        composite: name in :data:`lit_xai.explainers.COMPOSITES`.
        canonizers: zennit canonizers; ``None`` takes the registry entry's or those of a known torchvision family.
        composite_kwargs: extra arguments of the zennit composite (e.g. ``zero_params="bias"``, ``epsilon=0.25``).

    Example:
        >>> import torch
        >>> from lit_xai.models.architectures import build_architecture
        >>> net = build_architecture("tiny_vgg", num_classes=2).eval()
        >>> lrp_relevance(net, torch.rand(1, 3, 32, 32), 1).shape
        torch.Size([1, 3, 32, 32])
    """
    norm_types = nn.modules.batchnorm._BatchNorm
    training = [name for name, m in model.named_modules() if m.training and isinstance(m, norm_types)]
    if training:
        raise ValueError(
            f"lrp_relevance needs the model in eval() mode (batch norms {training[:3]} are training); call "
            "model.eval() or use lit_xai.explainers.LRP, which explains an eval-mode copy"
        )
    comp = make_composite(composite, resolve_canonizers(model, canonizers), **(composite_kwargs or {}))
    # zennit's composite with its Conv2d/Linear Epsilon/ZPlus/Gamma hooks replaced by single-pass rule layers
    # (_fast_rules: same arithmetic, no discarded ordinary backward, no re-run forwards); the rest is zennit's
    rules = FastRules(comp)
    with torch.inference_mode(False), torch.enable_grad():
        x = prepare_input(images, model)
        try:
            rules.register(model)
        except BaseException:
            rules.remove()  # revert whatever canonizers/hooks were applied before the failure
            raise
        try:
            out = model(x)
            if out.ndim != 2:
                raise ValueError(f"model must return logits of shape (N, num_classes), got {tuple(out.shape)}")
            t = as_targets(targets, x.shape[0], out.device)
            if bool(((t < 0) | (t >= out.shape[1])).any()):
                raise ValueError(f"targets {t.tolist()} out of range for {out.shape[1]} logits")
            rows = torch.arange(len(t), device=out.device)
            init = torch.zeros_like(out)
            init[rows, t] = out[rows, t].detach()
            (relevance,) = torch.autograd.grad(out, x, grad_outputs=init)
        finally:
            rules.remove()
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
        composite_kwargs: extra arguments of the zennit composite, e.g. ``{"zero_params": "bias"}``.

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
        composite_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.composite = composite
        self.canonizers = canonizers
        self.batch_size = batch_size
        self.copy_model = copy_model
        self.composite_kwargs = dict(composite_kwargs or {})

    def composite_for(self, model: nn.Module) -> str:
        """The composite name used for ``model``: the explicit one, else the registry default."""
        if self.composite is not None:
            return self.composite
        spec = spec_of(model)
        return spec.default_composite if spec is not None else "epsilon_plus_flat"

    def relevance(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor | int) -> torch.Tensor:
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
                    # zennit canonizers are templates: apply() registers fresh copies, so reuse across calls is safe
                    canonizers=self.canonizers,
                    composite_kwargs=self.composite_kwargs,
                )
                for i in range(0, images.shape[0], self.batch_size)
            ]
        return torch.cat(chunks).to(images.device)

    def __call__(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor | int) -> torch.Tensor:
        return self.relevance(model, images, targets).sum(1)
