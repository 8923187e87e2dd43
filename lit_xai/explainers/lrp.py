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

from ._core import (
    COMPOSITES,
    as_targets,
    build_composite,
    check_logit_shape,
    default_composite,
    explanation_model,
    prepare_input,
    target_init,
)
from ._fast_rules import FastRules
from .base import Explainer, register_explainer
from .conservation import ConservationCheck, confirm, conservation_check, network_name, warn_if_not_conserved
from .inputs import check_images

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
    return _lrp_pass(model, images, targets, composite, canonizers, composite_kwargs)[0]


def _lrp_pass(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor | int,
    composite: str = "epsilon_plus_flat",
    canonizers: list | None = None,
    composite_kwargs: dict[str, Any] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`lrp_relevance` and the explained logit of each image ``(N,)`` (for the conservation guard)."""
    norm_types = nn.modules.batchnorm._BatchNorm
    training = [name for name, m in model.named_modules() if m.training and isinstance(m, norm_types)]
    if training:
        raise ValueError(
            f"lrp_relevance needs the model in eval() mode (batch norms {training[:3]} are training); call "
            "model.eval() or use lit_xai.explainers.LRP, which explains an eval-mode copy"
        )
    comp = build_composite(composite, model, canonizers, composite_kwargs)
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
            out = check_logit_shape(model(x))
            t = as_targets(targets, x.shape[0], out.device)
            init = target_init(out, t)
            rows = torch.arange(len(t), device=out.device)
            (relevance,) = torch.autograd.grad(out, x, grad_outputs=init)
        finally:
            rules.remove()
    return relevance.detach(), out[rows, t].detach()


@register_explainer("lrp")
class LRP(Explainer):
    """LRP heatmaps ``(N, H, W)``, signed, summed over colour channels.

    Args:
        composite: zennit composite name, see :data:`lit_xai.explainers.COMPOSITES`; ``None`` takes the model's
            explanation profile default (``epsilon_plus_flat`` otherwise).
        canonizers: zennit canonizers; ``None`` takes them from the model's explanation profile (registry entry,
            torchvision or timm family). Pass ``[]`` for none.
        batch_size: images per backward pass (bounds memory).
        copy_model: explain a deep copy (default) so the caller's model cannot change.
        composite_kwargs: extra arguments of the zennit composite, e.g. ``{"zero_params": "bias"}``.

    Every call runs the conservation guard (:mod:`lit_xai.explainers.conservation`): ``last_check`` holds the
    :class:`~lit_xai.explainers.conservation.ConservationCheck` of the latest call (per-image ``ratios`` and ``ok``),
    and a :class:`~lit_xai.explainers.conservation.ConservationWarning` is issued once per network class when a
    map's relevance sum leaves the band.

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
        if composite is not None and composite not in COMPOSITES:
            raise ValueError(f"unknown LRP composite {composite!r}; choose one of: {', '.join(sorted(COMPOSITES))}")
        self.composite = composite
        self.canonizers = canonizers
        self.batch_size = batch_size
        self.copy_model = copy_model
        self.composite_kwargs = dict(composite_kwargs or {})
        self.last_check: ConservationCheck | None = None

    @property
    def label(self) -> str:
        return "lrp" if self.composite is None else f"lrp_{self.composite}"

    def describe(self, model: nn.Module | None = None) -> str:
        composite = self.composite if model is None else self.composite_for(model)
        return f"LRP ({composite or 'profile default'})"

    def composite_for(self, model: nn.Module) -> str:
        """The composite name used for ``model``: the explicit one, else the profile default."""
        return self.composite if self.composite is not None else default_composite(model)

    def check(self, model: nn.Module) -> None:
        build_composite(self.composite_for(model), model, self.canonizers, self.composite_kwargs)

    def relevance_on(self, net: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per-channel input relevance ``(N, C, H, W)`` on a prepared ``net``."""
        composite = self.composite_for(net)
        chunks = [
            _lrp_pass(
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
        relevance = torch.cat([r for r, _ in chunks])
        logits = torch.cat([z for _, z in chunks])
        check = conservation_check(relevance.flatten(1).sum(1), logits, network=network_name(net))
        confirm(check, net, images, targets, composite, self.canonizers, self.composite_kwargs)
        warn_if_not_conserved(check, "LRP", stacklevel=5)
        self.last_check = check
        return relevance

    def relevance(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor | int) -> torch.Tensor:
        """Per-channel input relevance ``(N, C, H, W)``."""
        check_images(images, "LRP")
        targets = as_targets(targets, images.shape[0], torch.device("cpu"))
        with explanation_model(model, self.copy_model, share_tensors=True) as net:
            return self.relevance_on(net, images, targets).to(images.device)

    def explain(self, net: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.relevance_on(net, images, targets).sum(1)
