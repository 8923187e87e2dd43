"""The shared LRP pass: one backward through a zennit composite (fast rules swapped in), the input relevance and the
explained logits. Used by :class:`~lit_xai.explainers.LRP` and the conservation guard, below both of them.

Example:
    >>> import torch
    >>> from lit_xai.models.architectures import build_architecture
    >>> net = build_architecture("tiny_vgg", num_classes=2).eval()
    >>> relevance, logits = lrp_pass(net, torch.rand(2, 3, 32, 32), 1)
    >>> relevance.shape, logits.shape
    (torch.Size([2, 3, 32, 32]), torch.Size([2]))
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ._core import as_targets, build_composite, check_logit_shape, prepare_input, target_init
from ._fast_rules import FastRules, Ledger

__all__ = ["lrp_pass", "lrp_relevance"]


def lrp_relevance(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor | int,
    composite: str = "epsilon_plus_flat",
    canonizers: list | None = None,
    composite_kwargs: dict[str, Any] | None = None,
    fast_rules: bool = True,
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
        fast_rules: ``False`` runs zennit's own hooks instead of the fast rule layers (same map to rounding; for
            checking a map against zennit, see :mod:`lit_xai.explainers._fast_rules`).

    Example:
        >>> import torch
        >>> from lit_xai.models.architectures import build_architecture
        >>> net = build_architecture("tiny_vgg", num_classes=2).eval()
        >>> lrp_relevance(net, torch.rand(1, 3, 32, 32), 1).shape
        torch.Size([1, 3, 32, 32])
    """
    return lrp_pass(model, images, targets, composite, canonizers, composite_kwargs, fast_rules)[0]


def lrp_pass(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor | int,
    composite: str = "epsilon_plus_flat",
    canonizers: list | None = None,
    composite_kwargs: dict[str, Any] | None = None,
    fast_rules: bool = True,
    ledger: Ledger | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`lrp_relevance` and the explained logit of each image ``(N,)`` (for the conservation guard).
    ``fast_rules=False``: zennit's own hooks (see :mod:`lit_xai.explainers._fast_rules`). ``ledger``: a
    :class:`~lit_xai.explainers._fast_rules.Ledger` for this batch, filled with the relevance each fast rule layer
    absorbed."""
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
    rules = FastRules(comp, enabled=None if fast_rules else False, ledger=ledger)
    with torch.inference_mode(False), torch.enable_grad():
        x = prepare_input(images, model)
        try:
            rules.register(model)
        except BaseException:
            rules.remove()  # revert whatever canonizers/hooks were applied before the failure
            raise
        try:
            out = check_logit_shape(model(x))
            if ledger is not None:
                ledger.inspect(out, x)  # is everything on the relevance's path counted or a rule?
                ledger.regions.clear()
            t = as_targets(targets, x.shape[0], out.device)
            init = target_init(out, t)
            rows = torch.arange(len(t), device=out.device)
            (relevance,) = torch.autograd.grad(out, x, grad_outputs=init)
        finally:
            rules.remove()
    return relevance.detach(), out[rows, t].detach()
