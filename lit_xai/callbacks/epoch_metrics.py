"""Validation and test metrics again at the epoch step of the XAI outputs, so accuracy and shortcut line up.

Lightning logs ``val/acc`` at the global step (24, 49, ... for 25 batches an epoch); the monitors log at the number
of completed epochs (:func:`~lit_xai.callbacks.base.epoch_step`). :func:`log_epoch_metrics` copies the metrics
the LightningModule logged (``trainer.callback_metrics`` whose names start with ``val/`` or ``test/``, or
``val_`` / ``test_``) at that epoch step: validation under ``<root>/1_epoch/...`` (``XAI/1_epoch/val/acc``: right after
the verdict in TensorBoard's first group), test under ``<root>/2_epoch/...`` (``XAI/2_epoch/test/acc``: one point at
the end, so after the validation curves). It works in any Lightning project; each trainer step is logged once, however
many monitors call it.

Example:
    >>> epoch_metric_names({"val/acc": 1.0, "train/loss": 2.0, "test_f1": 0.5, "val/acc_step": 0.3})
    ['test_f1', 'val/acc']
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from lightning.pytorch import Trainer

from .sinks import log_scalars

__all__ = ["EPOCH_GROUPS", "epoch_metric_names", "log_epoch_metrics"]

#: sub-group of the monitors' tag root that receives each stage's copies (``XAI/1_epoch/val/acc``,
#: ``XAI/2_epoch/test/acc``): TensorBoard sorts tags by name, so the validation curves come right after the verdict
EPOCH_GROUPS = {"val": "1_epoch", "test": "2_epoch"}

# trainer -> (stage, step) already logged, so two monitors do not log the same point twice
_LOGGED: weakref.WeakKeyDictionary[Trainer, set[tuple[str, int]]] = weakref.WeakKeyDictionary()


def epoch_metric_names(metrics: Iterable[str], prefixes: tuple[str, ...] = ("val", "test")) -> list[str]:
    """The names among ``metrics`` that are epoch-level validation / test metrics (``*_step`` copies left out)."""
    found = [
        name
        for name in metrics
        if any(name.startswith(f"{p}/") or name.startswith(f"{p}_") for p in prefixes) and not name.endswith("_step")
    ]
    return sorted(found)


def _value(value: Any) -> float:
    if isinstance(value, torch.Tensor):
        return float(value.detach().float().mean()) if value.numel() else math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def log_epoch_metrics(trainer: Trainer, root: str, step: int, stage: str) -> dict[str, float]:
    """Log ``stage``'s (``"val"`` or ``"test"``) metrics of ``trainer.callback_metrics`` at ``step`` under
    ``<root>/<EPOCH_GROUPS[stage]>/...``, once per trainer, stage and step; returns what was logged (empty when
    nothing new).

    Call it after Lightning has collected the epoch's metrics (``on_validation_end``, ``on_test_end``).
    """
    seen = _LOGGED.setdefault(trainer, set())
    if (stage, step) in seen or trainer.sanity_checking:
        return {}
    metrics: Mapping[str, Any] = trainer.callback_metrics
    group = EPOCH_GROUPS.get(stage, EPOCH_GROUPS["val"])
    scalars = {f"{root}/{group}/{name}": _value(metrics[name]) for name in epoch_metric_names(metrics, (stage,))}
    scalars = {k: v for k, v in scalars.items() if math.isfinite(v)}
    if scalars:
        seen.add((stage, step))
        log_scalars(trainer, scalars, step)
    return scalars
