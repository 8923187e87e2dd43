"""Checks the monitors run once at fit start on what they are given (probe images, their tags), so that bad input
fails before the first epoch with the monitor's name, not after an epoch deep inside an explainer."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..explainers.inputs import check_finite, check_images

__all__ = ["check_probes", "check_unique_tags", "warn_missing_classes", "warn_resume_into_same_version"]


def check_probes(probes: Any, who: str) -> None:
    """Raise when the probe set is empty, not an ``(N, C, H, W)`` float batch, or holds NaN/Inf images (named by id).

    Example:
        >>> import torch
        >>> from lit_xai.probes import Probes
        >>> images = torch.zeros(2, 3, 8, 8); images[1, 0, 0, 0] = float("nan")
        >>> check_probes(Probes(images, torch.tensor([0, 1]), [4, 7], torch.zeros(2, dtype=torch.bool)), "Monitor")
        Traceback (most recent call last):
        ...
        ValueError: Monitor: 1 of 2 probe images contain NaN/Inf (#7); their explanations would be NaN. Fix the data \
(decoding, normalisation by a zero std) or leave those images out
    """
    check_images(probes.images, who, what="probe images")
    check_finite(probes.images, who, ids=list(probes.ids), what="probe images")


def check_unique_tags(callbacks: Iterable[Any]) -> None:
    """Raise when two lit_xai monitors of one class share a ``tag`` (their pictures, scalars and checkpoint state
    would overwrite each other); Lightning's own message ("state_key must be unique") does not name ``tag``.

    Example:
        >>> from lit_xai.callbacks import ExplanationMonitor
        >>> check_unique_tags([ExplanationMonitor(tag="XAI"), ExplanationMonitor(tag="XAI")])
        Traceback (most recent call last):
        ...
        ValueError: two ExplanationMonitor callbacks have tag='XAI': give each its own tag (e.g. tag='XAI' and \
tag='XAI_2'); the tag prefixes everything a monitor logs and is its checkpoint state_key
    """
    seen: set[tuple[str, str]] = set()
    for cb in callbacks:
        # a lit_xai monitor (MonitorBase, which imports this module: matched by its tag and its package instead)
        if not isinstance(getattr(cb, "tag", None), str) or not type(cb).__module__.startswith("lit_xai.callbacks"):
            continue
        key = (type(cb).__name__, cb.tag)
        if key in seen:
            raise ValueError(
                f"two {key[0]} callbacks have tag={cb.tag!r}: give each its own tag (e.g. tag={cb.tag!r} and "
                f"tag='{cb.tag}_2'); the tag prefixes everything a monitor logs and is its checkpoint state_key"
            )
        seen.add(key)


def warn_resume_into_same_version(trainer: Any) -> bool:
    """Warn (once per run folder) when a fit resumes from a checkpoint into a TensorBoard run folder that already
    holds event files: the epochs after the checkpoint that the earlier run logged are logged again, and TensorBoard
    shows both. ``lit-xai report`` keeps the newest of each tag from the step it is logged again on (as TensorBoard's
    ``purge_step`` does); a new logger version keeps the runs apart. Returns whether it warned."""
    from pathlib import Path

    from lightning.pytorch.utilities import rank_zero_warn

    from .sinks import find_tensorboard

    ckpt = getattr(trainer, "ckpt_path", None)
    tb = find_tensorboard(trainer)
    if not ckpt or tb is None:
        return False
    folder = Path(tb.log_dir)
    files = list(folder.glob("events.out.tfevents.*")) if folder.is_dir() else []
    earlier = len(files) - (getattr(tb, "_experiment", None) is not None)  # less this run's own (open) file
    if earlier <= 0 or str(folder) in _WARNED_FOLDERS:
        return False
    _WARNED_FOLDERS.add(str(folder))
    rank_zero_warn(
        f"resuming from {ckpt} into {folder}, which already holds {earlier} event file(s) of the run being "
        "resumed: what it logged after the checkpoint's epoch is logged again, so TensorBoard shows those steps twice. "
        "`lit-xai report` keeps the newest points of each tag (like TensorBoard's purge_step). To keep the runs "
        "apart, resume with a new logger version (TensorBoardLogger(version=...))"
    )
    return True


_WARNED_FOLDERS: set[str] = set()


def warn_missing_classes(targets: Any, class_names: list[str], task: str, who: str) -> list[str]:
    """Warn when a single-label probe set large enough to hold every class lacks some (the validation items the
    selector read hold none of them: their explanations are never shown); the missing class names.

    Example:
        >>> import torch, warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     warn_missing_classes(torch.tensor([0, 0, 1]), ["a", "b", "c"], "multiclass", "ExplanationMonitor")
        ['c']
    """
    import torch
    from lightning.pytorch.utilities import rank_zero_warn

    t = torch.as_tensor(targets)
    if task == "multilabel" or t.ndim != 1 or len(t) < len(class_names):
        return []
    present = {int(v) for v in t.tolist() if v == v}
    missing = [name for k, name in enumerate(class_names) if k not in present]
    if missing:
        rank_zero_warn(
            f"{who}: no probe of class {', '.join(repr(m) for m in missing)}: the validation items the probe selector "
            "read hold no image of it, so its explanations are never shown; check the validation split (or pass "
            "ProbeSelector(indices=[...]) / probes_from_tensors)"
        )
    return missing
