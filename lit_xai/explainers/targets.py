"""Class-index targets of the explainers: one validation used by LRP, CRP and Grad-CAM alike.

A negative index would wrap around (``-1`` explains the last class) and an index past the last logit would fail deep
inside autograd, so every explainer checks its targets against the logits with :func:`validate_targets` before the
backward pass.
"""

from __future__ import annotations

import torch

__all__ = ["as_targets", "check_logit_shape", "target_init", "validate_targets"]


def as_targets(targets: torch.Tensor | int | list, n: int, device: torch.device) -> torch.Tensor:
    """Class indices as a ``LongTensor`` of shape ``(n,)`` (an int is broadcast).

    Floating-point targets are accepted only when they hold whole numbers (``1.0``); ``1.7`` is an error rather
    than a silent ``1``.

    Example:
        >>> as_targets(2, 3, torch.device("cpu")).tolist()
        [2, 2, 2]
    """
    t = torch.as_tensor(targets, device=device)
    if t.is_floating_point() or t.is_complex():
        if not bool(torch.isfinite(t).all()) or not bool((t == t.round()).all()):
            raise ValueError(
                f"targets must be whole class indices, got {t.flatten()[:8].tolist()}; pass integer class ids "
                "(e.g. labels.long()), not probabilities or one-hot rows"
            )
    t = t.long().clone()
    if t.ndim == 0:
        t = t.expand(n).clone()
    if t.shape != (n,):
        raise ValueError(f"targets must be class indices of shape ({n},), got shape {tuple(t.shape)}")
    return t


def validate_targets(targets: torch.Tensor, num_classes: int, method: str = "explainer") -> torch.Tensor:
    """``targets`` if every class index lies in ``[0, num_classes)``; else a ``ValueError`` naming the bad values,
    the number of classes and the fix (negative indices are refused, never wrapped to the last classes).

    Example:
        >>> validate_targets(torch.tensor([0, 2]), 3).tolist()
        [0, 2]
        >>> validate_targets(torch.tensor([-1]), 3, "Grad-CAM")
        Traceback (most recent call last):
        ...
        ValueError: Grad-CAM: target class -1 is out of range for a model with 3 classes (logits of shape (N, 3)); \
pass class indices 0..2 (negative indices are not wrapped)
    """
    bad = (targets < 0) | (targets >= num_classes)
    if bool(bad.any()):
        values = sorted({int(v) for v in targets[bad].flatten().tolist()})
        shown = ", ".join(str(v) for v in values[:8]) + (", ..." if len(values) > 8 else "")
        noun = "class" if len(values) == 1 else "classes"
        raise ValueError(
            f"{method}: target {noun} {shown} {'is' if len(values) == 1 else 'are'} out of range for a model with "
            f"{num_classes} classes (logits of shape (N, {num_classes})); pass class indices 0..{num_classes - 1} "
            "(negative indices are not wrapped)"
        )
    return targets


def check_logit_shape(out: torch.Tensor) -> torch.Tensor:
    """``out`` if the explained network returned logits ``(N, K)``, else an error naming the shape it returned."""
    if out.ndim != 2:
        raise ValueError(f"model must return logits of shape (N, num_classes), got {tuple(out.shape)}")
    return out


def target_init(out: torch.Tensor, targets: torch.Tensor, method: str = "LRP") -> torch.Tensor:
    """The backward seed of an LRP/CRP pass: each row's target logit, zeros elsewhere (targets checked in range).

    Example:
        >>> target_init(torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.tensor([1, 0])).tolist()
        [[0.0, 2.0], [3.0, 0.0]]
    """
    check_logit_shape(out)
    validate_targets(targets, out.shape[1], method)
    rows = torch.arange(out.shape[0], device=out.device)
    init = torch.zeros_like(out)
    init[rows, targets] = out[rows, targets].detach()
    return init
