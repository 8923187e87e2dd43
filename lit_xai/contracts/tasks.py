"""Task names and what follows from them: validation, class names, logits -> probabilities, the task of targets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["TASKS", "check_logits", "check_task", "class_name", "infer_task", "probabilities", "stand_in_labels"]

TASKS: tuple[str, ...] = ("binary", "multiclass", "multilabel")


def check_task(task: str, num_classes: int | None = None) -> None:
    """Validate ``task`` and its consistency with ``num_classes``; errors list the valid choices.

    Binary tasks use two logits (softmax, class 1 = positive), so every explainer target is a class index.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of: {', '.join(TASKS)}")
    if num_classes is None:
        return
    if task == "binary" and num_classes != 2:
        raise ValueError(
            f"task='binary' uses two logits (negative, positive) but num_classes={num_classes}; set num_classes=2, "
            "or task='multiclass' / 'multilabel' (a single-logit model: wrap it with lit_xai.contracts.TwoLogitBinary)"
        )
    if task == "multiclass" and num_classes < 2:
        raise ValueError(f"task='multiclass' needs num_classes >= 2, got {num_classes}")
    if task == "multilabel" and num_classes < 1:
        raise ValueError(f"task='multilabel' needs num_classes >= 1, got {num_classes}")


def class_name(k: int, names: Sequence[str] | None = None) -> str:
    """The name of class index ``k`` (its index as text when no names are known; ``"-"`` for ``k < 0``, no class).

    Example:
        >>> class_name(1, ["benign", "melanoma"]), class_name(3), class_name(-1, ["a"])
        ('melanoma', '3', '-')
    """
    if k < 0:
        return "-"
    return str(names[k]) if names and k < len(names) else str(k)


def check_logits(logits: Any, task: str | None = None) -> torch.Tensor:
    """``logits`` if it is an ``(N, K)`` tensor the explainers can use, else an error saying how to fix the model.

    Two-logit binary models: a single logit is refused for ``task`` binary/multiclass (and for ``task=None``, where a
    class index must be explained) with the way out, :class:`TwoLogitBinary`.

    Example:
        >>> check_logits(torch.zeros(2, 3)).shape
        torch.Size([2, 3])
    """
    if not isinstance(logits, torch.Tensor):
        raise TypeError(
            f"the model returned {type(logits).__name__}, not a logits tensor (N, K); point lit_xai at the submodule "
            "that maps images to logits (monitors: model=ModelSpec(module_attr='<name>'))"
        )
    if logits.ndim != 2:
        raise ValueError(f"the model must return logits of shape (N, K), got {tuple(logits.shape)}")
    if logits.shape[1] == 1 and task != "multilabel":
        raise ValueError(
            "the model returns a single logit: lit_xai explains class indices of two-logit binary models. Wrap it "
            "with lit_xai.contracts.TwoLogitBinary(model) (the monitors do this themselves)"
        )
    return logits


def probabilities(logits: torch.Tensor, task: str) -> torch.Tensor:
    """Class probabilities: sigmoid per label for ``multilabel``, softmax over logits otherwise."""
    check_task(task)
    return torch.sigmoid(logits) if task == "multilabel" else logits.softmax(-1)


def infer_task(targets: torch.Tensor, num_outputs: int) -> str:
    """The task implied by a batch of targets and the model's number of outputs.

    ``(N, K)`` targets are multi-label; class indices with one or two outputs are binary, else multiclass.

    Example:
        >>> infer_task(torch.tensor([0, 1]), 2), infer_task(torch.tensor([0, 4]), 5), infer_task(torch.ones(2, 3), 3)
        ('binary', 'multiclass', 'multilabel')
    """
    if targets.ndim == 2:
        return "multilabel"
    return "binary" if num_outputs <= 2 else "multiclass"


def stand_in_labels(targets: torch.Tensor) -> torch.Tensor:
    """One class index per item: class indices as they are; for multi-hot ``(N, K)`` targets the first positive
    label stands for the item (NaN = unknown counts as negative), ``-1`` when it has none ("no finding").

    This is the one rule every part uses where a multi-label item needs a single class (probe stratification,
    concept references, the reliance pool, quality metrics); callers skip ``-1`` rows or explain their prediction.

    Example:
        >>> stand_in_labels(torch.tensor([[0.0, 1.0, 1.0], [0.0, 0.0, float("nan")]])).tolist()
        [1, -1]
        >>> stand_in_labels(torch.tensor([2, 0])).tolist()
        [2, 0]
    """
    t = torch.as_tensor(targets)
    if t.ndim <= 1:
        return t.long()
    pos = torch.nan_to_num(t.float(), nan=0.0) > 0.5
    return torch.where(pos.any(1), pos.float().argmax(1), torch.full((len(t),), -1, dtype=torch.long))
