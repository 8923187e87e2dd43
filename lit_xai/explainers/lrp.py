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

from ._core import COMPOSITES, as_targets, build_composite, default_composite, explanation_model
from ._fast_rules import Ledger
from .base import Explainer, register_explainer
from .conservation import ConservationCheck, confirm, conservation_check, network_name, warn_if_not_conserved
from .inputs import check_images
from .lrp_pass import lrp_pass, lrp_relevance

__all__ = ["LRP", "lrp_relevance"]


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
        fast_rules: ``False`` explains with zennit's own hooks instead of the fast rule layers (the same map to
            rounding, slower): any map can be checked against zennit (also ``lit_xai.explainers.fast_rules(False)``
            or ``LIT_XAI_FAST_RULES=0`` for every explainer).

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
        fast_rules: bool = True,
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
        self.fast_rules = fast_rules
        self.last_check: ConservationCheck | None = None
        # count the relevance the rule layers absorb (the guard's free account, ~2-3 % of a ResNet-50 pass) while the
        # latest call had maps outside the band: a network whose maps conserve as they are skips the count, one
        # whose biases absorb much gets it instead of a second pass (the first call counts; a change costs at most
        # one bias-free pass, never a different verdict)
        self._account = True

    #: canonizers and the conservation guard rebind ``.data``, nothing writes weights in place: the explained copy
    #: shares the model's weight storage (no copy of the weights per call: ResNet-50 94 MB, VGG-16 0.5 GB)
    share_tensors = True

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
        chunks, ledgers = [], []
        account = getattr(self, "_account", True)
        for i in range(0, images.shape[0], self.batch_size):
            batch = images[i : i + self.batch_size]
            # what the rule layers absorb: judges the maps outside the band
            ledgers.append(Ledger(batch.shape[0]) if account else None)
            chunks.append(
                lrp_pass(
                    net,
                    batch,
                    targets[i : i + self.batch_size],
                    composite=composite,
                    # zennit canonizers are templates: apply() registers fresh copies, so reuse across calls is safe
                    canonizers=self.canonizers,
                    composite_kwargs=self.composite_kwargs,
                    fast_rules=self.fast_rules,
                    ledger=ledgers[-1],
                )
            )
        relevance = torch.cat([r for r, _ in chunks])
        logits = torch.cat([z for _, z in chunks])
        counted = account and all(ledger.usable for ledger in ledgers)
        absorbed = torch.cat([ledger.absorbed for ledger in ledgers]) if counted else None
        min_logit = max((ledger.min_logit for ledger in ledgers if ledger is not None), default=0.0)
        check = conservation_check(
            relevance.flatten(1).sum(1),
            logits,
            network=network_name(net),
            absorbed=absorbed,
            account_min_logit=min_logit,
        )
        self._account = bool((~check.accounted_ratios.isnan()).any() or (~check.ok).any())
        confirm(check, net, images, targets, composite, self.canonizers, self.composite_kwargs, self.fast_rules)
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
