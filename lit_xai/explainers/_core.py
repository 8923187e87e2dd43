"""Shared machinery of the explainers, one module per job and re-exported here: composites and canonizers
(:mod:`.composites`), layer lookup (:mod:`.layers`), the side-effect-free model copy (:mod:`.model_copy`); the target
helpers below.
"""

from __future__ import annotations

import torch

from .composites import (
    COMPOSITES,
    build_composite,
    default_composite,
    make_composite,
    profile_layer_map,
    resolve_canonizers,
)
from .layers import (
    default_attention_layer,
    default_concept_layer,
    default_gradcam_layer,
    resolve_layer_name,
    resolve_module,
)
from .model_copy import explanation_model, prepare_input

__all__ = [
    "COMPOSITES",
    "as_targets",
    "check_logit_shape",
    "target_init",
    "build_composite",
    "default_attention_layer",
    "default_composite",
    "default_concept_layer",
    "default_gradcam_layer",
    "explanation_model",
    "make_composite",
    "prepare_input",
    "profile_layer_map",
    "resolve_canonizers",
    "resolve_layer_name",
    "resolve_module",
]


def as_targets(targets: torch.Tensor | int | list, n: int, device: torch.device) -> torch.Tensor:
    """Class indices as a ``LongTensor`` of shape ``(n,)`` (an int is broadcast)."""
    t = torch.as_tensor(targets, device=device).long().clone()
    if t.ndim == 0:
        t = t.expand(n).clone()
    if t.shape != (n,):
        raise ValueError(f"targets must be class indices of shape ({n},), got shape {tuple(t.shape)}")
    return t


def check_logit_shape(out: torch.Tensor) -> torch.Tensor:
    """``out`` if the explained network returned logits ``(N, K)``, else an error naming the shape it returned."""
    if out.ndim != 2:
        raise ValueError(f"model must return logits of shape (N, num_classes), got {tuple(out.shape)}")
    return out


def target_init(out: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The backward seed of an LRP/CRP pass: each row's target logit, zeros elsewhere (targets checked in range).

    Example:
        >>> target_init(torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.tensor([1, 0])).tolist()
        [[0.0, 2.0], [3.0, 0.0]]
    """
    check_logit_shape(out)
    if bool(((targets < 0) | (targets >= out.shape[1])).any()):
        raise ValueError(f"targets {targets.tolist()} out of range for {out.shape[1]} logits")
    rows = torch.arange(out.shape[0], device=out.device)
    init = torch.zeros_like(out)
    init[rows, targets] = out[rows, targets].detach()
    return init
