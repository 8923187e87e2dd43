"""Dataset audit, the scan: run image-space detectors (:data:`lit_xai.artifacts.DETECTORS`) over any iterable of
items or batches and count the flags per class (:func:`count_dataset`), then the report (:func:`audit_dataset`);
:func:`audit_datamodule` does it for a split of a ``lit_xai`` datamodule (denormalizing with ``dm.denormalize``,
deterministic subset, failed items counted, counts cached on disk).

When an artifact counts as "label-predictive" is :mod:`lit_xai.shortcuts.audit.statistics`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...artifacts.detectors import Detector
from ...artifacts.registry import DEFAULT_THRESHOLDS, get_detector
from ...explainers.inputs import finite_rows
from .cache import (
    _CACHE_VERSION,
    _callable_name,
    _digest,
    _read_cache,
    _write_cache,
    dataset_files,
    dataset_fingerprint,
    dataset_identity,
)
from .items import _as_batch, _Failure, _items, _split_dataset, _split_item, sample_indices
from .report import _MAX_FAILURE_MESSAGES, AuditCounts, AuditReport
from .statistics import ALPHA, MIN_ODDS_RATIO, MIN_SUPPORT, _table_counts, report_from_counts

__all__ = ["add_skipped", "audit_datamodule", "audit_dataset", "audit_sample", "count_dataset", "count_sample"]

_MAX_CONSECUTIVE_FAILURES = 50


class _Collector:
    """Accumulates images into same-shape batches, runs the detectors, keeps flags, labels and annotations."""

    def __init__(
        self,
        detectors: dict[str, tuple[Detector, float]],
        denormalize: Callable[[torch.Tensor], torch.Tensor] | None,
        batch_size: int,
    ) -> None:
        self.detectors = detectors
        self.denormalize = denormalize
        self.batch_size = batch_size
        self.flags: dict[str, list[np.ndarray]] = {name: [] for name in detectors}
        self.labels: list[np.ndarray] = []
        self.annotations: list[np.ndarray] = []
        self.has_annotations = True
        self._images: list[torch.Tensor] = []
        self.n = 0

    def add(self, images: torch.Tensor, labels: np.ndarray, annotations: np.ndarray | None) -> None:
        if self._images and self._images[0].shape[1:] != images.shape[1:]:
            self.flush()  # detectors need one shape per batch; raw datasets may mix sizes
        self._images.append(images)
        self.labels.append(labels)
        if annotations is None:
            self.has_annotations = False
        else:
            self.annotations.append(annotations)
        self.n += len(images)
        if sum(len(x) for x in self._images) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        if not self._images:
            return
        x = torch.cat(self._images).detach().float().cpu()
        self._images = []
        if self.denormalize is not None:
            x = self.denormalize(x)
        if x.min() < -0.25 or x.max() > 1.25:
            raise ValueError(
                f"audit images must be in [0, 1] but range over [{x.min():.2f}, {x.max():.2f}]; they look normalized: "
                "pass denormalize=datamodule.denormalize (audit_datamodule does this for you)"
            )
        x = x.clamp(0.0, 1.0)
        for name, (fn, threshold) in self.detectors.items():
            scores, _ = fn(x)
            self.flags[name].append((scores >= threshold).numpy())


def audit_dataset(
    items: Iterable[Any],
    detectors: Sequence[str] | dict[str, Detector] = ("ring",),
    class_names: Sequence[str] | None = None,
    denormalize: Callable[[torch.Tensor], torch.Tensor] | None = None,
    threshold: float | dict[str, float] | None = None,
    max_samples: int | None = None,
    task: str = "multiclass",
    batch_size: int = 64,
    alpha: float = ALPHA,
    min_odds_ratio: float = MIN_ODDS_RATIO,
    min_support: int = MIN_SUPPORT,
) -> AuditReport:
    """Audit artifact prevalence and label association over ``items``.

    Args:
        items: a dataset, a list or a DataLoader yielding dict items/batches (``image``, ``target``, optional
            ``artifact``, per ``docs/CONTRACTS.md``) or ``(image, target)`` pairs. Images are ``(C, H, W)`` or
            batches ``(N, C, H, W)``, in [0, 1] unless ``denormalize`` is given.
        detectors: names in :data:`lit_xai.artifacts.DETECTORS`, or a dict name -> detector function.
        class_names: label names; default ``class_0 ...`` sized by the largest label seen.
        denormalize: maps model-input images back to [0, 1] (e.g. ``datamodule.denormalize``).
        threshold: score threshold, one for all detectors or per name; default each detector's own.
        max_samples: stop after this many images (the *first* ones; :func:`audit_datamodule` samples evenly).
        task: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        alpha, min_odds_ratio, min_support: criteria for "label-predictive" (module docstring).

    Returns:
        An :class:`AuditReport`. Items that raise while being read are counted in ``n_failed``.

    Example:
        >>> import torch
        >>> from lit_xai.artifacts import insert_ring
        >>> skin = torch.tensor([0.85, 0.62, 0.5])[None, :, None, None].expand(40, 3, 32, 32).clone()
        >>> ringed, _ = insert_ring(skin[:20], torch.Generator().manual_seed(0))
        >>> items = [(img, 1) for img in ringed] + [(img, 0) for img in skin[20:]]
        >>> report = audit_dataset(items, class_names=["benign", "melanoma"], task="binary")
        >>> report.label_predictive("ring"), report.verdicts[0][:50]
        (True, 'ring: 100 % of images with ring are melanoma vs 50')
    """
    counts = count_dataset(items, detectors, class_names, denormalize, threshold, max_samples, task, batch_size)
    return report_from_counts(counts, alpha, min_odds_ratio, min_support)


def count_dataset(
    items: Iterable[Any],
    detectors: Sequence[str] | dict[str, Detector] = ("ring",),
    class_names: Sequence[str] | None = None,
    denormalize: Callable[[torch.Tensor], torch.Tensor] | None = None,
    threshold: float | dict[str, float] | None = None,
    max_samples: int | None = None,
    task: str = "multiclass",
    batch_size: int = 64,
) -> AuditCounts:
    """The raw, mergeable counts of :func:`audit_dataset` (same arguments, no criteria): images, failures, images
    per class and flagged images per class for each detector. :func:`report_from_counts` turns them into the
    report; :func:`merge_counts` adds the counts of shards.

    Example:
        >>> import torch
        >>> counts = count_dataset([(torch.rand(3, 16, 16), i % 2) for i in range(6)], class_names=["a", "b"])
        >>> counts.n_images, counts.class_counts
        (6, [3, 3])
    """
    if task not in ("binary", "multiclass", "multilabel"):
        raise ValueError(f"task must be 'binary', 'multiclass' or 'multilabel', got {task!r}")
    if max_samples is not None and max_samples < 1:
        raise ValueError(f"max_samples must be >= 1 or None, got {max_samples}")
    chosen = _resolve_detectors(detectors, threshold)
    collector = _Collector(chosen, denormalize, batch_size)
    failures: list[str] = []
    n_failed = 0
    iterator = iter(items)
    position = consecutive = 0

    def fail(message: str) -> None:
        nonlocal n_failed
        n_failed += 1
        if len(failures) < _MAX_FAILURE_MESSAGES:
            failures.append(message)

    while max_samples is None or collector.n < max_samples:
        try:
            item = next(iterator)
        except StopIteration:
            break
        except Exception as err:  # unreadable file, broken decode, ...: count it, keep going
            fail(f"item/batch {position}: {type(err).__name__}: {err}")
            position += 1
            consecutive += 1
            if consecutive >= _MAX_CONSECUTIVE_FAILURES:
                failures.append(f"stopped after {consecutive} consecutive failures")
                break
            continue
        position += 1
        if isinstance(item, _Failure):
            fail(str(item))
            continue
        if item is None:
            fail(f"item/batch {position - 1}: got None")
            continue
        consecutive = 0
        image, target, flag = _as_batch(*_split_item(item), task=task)
        finite = finite_rows(image) if image.is_floating_point() else None
        if finite is not None and not bool(finite.all()):  # NaN/Inf images are failures, not "no artifact"
            for row in (~finite).nonzero().flatten().tolist():
                fail(f"item/batch {position - 1}, image {row}: contains NaN/Inf")
            kept = finite.numpy()
            image, target, flag = image[finite], target[kept], None if flag is None else flag[kept]
            if len(image) == 0:
                continue
        if max_samples is not None and collector.n + len(image) > max_samples:
            keep = max_samples - collector.n
            image, target, flag = image[:keep], target[:keep], None if flag is None else flag[:keep]
        collector.add(image, target, flag)
    collector.flush()
    return _counts(collector, failures, n_failed, class_names, task)


def _resolve_detectors(
    detectors: Sequence[str] | dict[str, Detector], threshold: float | dict[str, float] | None
) -> dict[str, tuple[Detector, float]]:
    if isinstance(detectors, str):
        detectors = (detectors,)
    named = dict(detectors) if isinstance(detectors, dict) else {name: get_detector(name) for name in detectors}
    if not named:
        raise ValueError("give at least one detector, e.g. detectors=('ring',)")
    out = {}
    for name, fn in named.items():
        if isinstance(threshold, dict):
            t = threshold.get(name, DEFAULT_THRESHOLDS.get(name))
        else:
            t = threshold if threshold is not None else DEFAULT_THRESHOLDS.get(name)
        if t is None:
            raise ValueError(f"no default threshold for custom detector {name!r}; pass threshold={{{name!r}: ...}}")
        out[name] = (fn, float(t))
    return out


def _counts(
    col: _Collector, failures: list[str], n_failed: int, class_names: Sequence[str] | None, task: str
) -> AuditCounts:
    if col.n == 0:
        labels = np.zeros((0, len(class_names or [])) if task == "multilabel" else 0)
    else:
        labels = np.concatenate(col.labels)
    if class_names is None:
        k = labels.shape[1] if task == "multilabel" and labels.ndim == 2 else int(labels.max()) + 1 if col.n else 0
        k = max(k, 2) if task == "binary" else k
    else:
        k = len(class_names)
    annotations = np.concatenate(col.annotations) if col.has_annotations and col.annotations else None
    artifacts: dict[str, dict[str, Any]] = {}
    class_counts: np.ndarray = np.zeros(k, np.int64)
    for name, (_, t) in col.detectors.items():
        flags = np.concatenate(col.flags[name]) if col.flags[name] else np.zeros(0, bool)
        with_c, class_counts = _table_counts(flags, labels, k, task)
        artifacts[name] = {
            "threshold": t,
            "n_with": int(flags.sum()),
            "count_by_class": [int(x) for x in with_c],
            "true_positive": None if annotations is None else int((flags & annotations).sum()),
        }
    annotated = None
    if annotations is not None:
        with_c, class_counts = _table_counts(annotations, labels, k, task)
        annotated = {"n_with": int(annotations.sum()), "count_by_class": [int(x) for x in with_c]}
    return AuditCounts(
        n_images=col.n,
        n_failed=n_failed,
        failures=list(failures),
        task=task,
        class_names=None if class_names is None else [str(c) for c in class_names],
        class_counts=[int(x) for x in class_counts],
        artifacts=artifacts,
        annotated=annotated,
    )


def count_sample(
    dataset: Any,
    max_samples: int | None = None,
    seed: int = 0,
    shard: tuple[int, int] | None = None,
    cache_dir: str | os.PathLike | None = None,
    detectors: Sequence[str] | dict[str, Detector] = ("ring",),
    class_names: Sequence[str] | None = None,
    denormalize: Callable[[torch.Tensor], torch.Tensor] | None = None,
    threshold: float | dict[str, float] | None = None,
    task: str = "multiclass",
    batch_size: int = 64,
    cache_key: str | None = None,
) -> AuditCounts:
    """:func:`count_dataset` on the items :func:`sample_indices` picks (one rank's shard with ``shard``), read from
    / written to an on-disk cache with ``cache_dir``.

    The cache entry is keyed by :func:`dataset_fingerprint` (file names, sizes and modification times where the
    dataset exposes its files, else its length; plus a hash of a few items as the detectors see them, after
    ``denormalize``), ``cache_key``, the detectors and their thresholds, the task and class names,
    ``max_samples``, ``seed`` and ``shard``: a second run or a resume over unchanged data skips the audit; any
    change recomputes it. A dataset that names no files has no identity the fingerprint can trust (two generated
    sets of one length can share the few hashed items): it is cached only under :func:`dataset_identity` (its
    in-memory pixels hashed, or its own ``cache_identity``) or a ``cache_key`` the caller vouches for, else counted
    afresh.

    Args:
        dataset: a map-style dataset (items per ``docs/CONTRACTS.md`` or ``(image, target)`` pairs).
        shard: ``(rank, world_size)``: count only this rank's block of the sampled items.
        cache_dir: folder of the cache (created), e.g. :func:`default_cache_dir`; ``None`` = no cache.
        cache_key: the identity of a dataset without files that :func:`dataset_identity` cannot tell (required to
            cache one); added to the key of any dataset.
        max_samples, seed, detectors, class_names, denormalize, threshold, task, batch_size: see
            :func:`audit_dataset` and :func:`sample_indices`.

    Example:
        >>> import tempfile, torch
        >>> from lit_xai.shortcuts.audit import merge_counts
        >>> data = [(torch.rand(3, 16, 16), i % 2) for i in range(10)]
        >>> folder = tempfile.mkdtemp()
        >>> parts = [count_sample(data, shard=(r, 2), cache_dir=folder, cache_key="toy v1") for r in range(2)]
        >>> again = count_sample(data, shard=(1, 2), cache_dir=folder, cache_key="toy v1")
        >>> merge_counts(parts) == count_sample(data), again.from_cache
        (True, True)
        >>> count_sample(data, shard=(1, 2), cache_dir=folder).from_cache  # no files, no key: counted afresh
        False
    """
    indices = sample_indices(len(dataset), max_samples, seed, shard)
    entry = None
    if cache_key is None:
        cache_key = dataset_identity(dataset) if cache_dir is not None else None
    if cache_dir is not None and cache_key is None and dataset_files(dataset) is None:
        cache_dir = None
    if cache_dir is not None:
        chosen = _resolve_detectors(detectors, threshold)
        key = {
            "version": _CACHE_VERSION,
            "cache_key": cache_key,
            "dataset": dataset_fingerprint(dataset, denormalize=denormalize, seed=seed),
            "detectors": {name: [_callable_name(fn), t] for name, (fn, t) in chosen.items()},
            "task": task,
            "class_names": None if class_names is None else [str(c) for c in class_names],
            "max_samples": max_samples,
            "seed": seed,
            "shard": None if shard is None else [int(v) for v in shard],
        }
        entry = Path(cache_dir) / f"audit-{_digest(json.dumps(key, sort_keys=True))[:40]}.json"
        cached = _read_cache(entry, key)
        if cached is not None:
            return cached
    counts = count_dataset(
        _items(dataset, indices), detectors, class_names, denormalize, threshold, None, task, batch_size
    )
    if entry is not None:
        _write_cache(entry, key, counts)
    return counts


def audit_sample(
    dataset: Any,
    max_samples: int | None = None,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    alpha: float = ALPHA,
    min_odds_ratio: float = MIN_ODDS_RATIO,
    min_support: int = MIN_SUPPORT,
    **kwargs: Any,
) -> AuditReport:
    """:func:`audit_dataset` on a seeded random subset of ``max_samples`` items of a map-style dataset (sorted
    indices, so a dataset ordered by class is still sampled fairly); a failing item is counted, not raised. With
    ``cache_dir`` the counts are cached on disk (see :func:`count_sample`, which takes the other ``kwargs``).

    Example:
        >>> import torch
        >>> data = [(torch.rand(3, 16, 16), i % 2) for i in range(10)]
        >>> audit_sample(data, max_samples=6, class_names=["a", "b"]).n_images
        6
    """
    counts = count_sample(dataset, max_samples, seed, cache_dir=cache_dir, **kwargs)
    return report_from_counts(counts, alpha, min_odds_ratio, min_support)


def audit_datamodule(
    dm: Any,
    split: str = "train",
    detectors: Sequence[str] | dict[str, Detector] = ("ring",),
    threshold: float | dict[str, float] | None = None,
    max_samples: int | None = None,
    seed: int = 0,
    augmented: bool = False,
    batch_size: int = 64,
    alpha: float = ALPHA,
    min_odds_ratio: float = MIN_ODDS_RATIO,
    min_support: int = MIN_SUPPORT,
    cache_dir: str | os.PathLike | None = None,
) -> AuditReport:
    """Audit one split of a datamodule (``class_names``, ``task``, ``denormalize`` and ``dataset(split)``).

    Args:
        dm: a :class:`lit_xai.datamodules.ImageDataModule` (or anything exposing the same names).
        split: "train", "val" or "test".
        max_samples: audit a deterministic, seeded random subset of this many items (sorted indices), so a
            split ordered by class is still sampled fairly; ``None`` audits everything.
        augmented: audit images as the training loader sees them; default ``False`` swaps in the evaluation
            transform (on a shallow copy of the dataset; the datamodule is untouched).
        detectors, threshold, alpha, min_odds_ratio, min_support: see :func:`audit_dataset`.
        cache_dir: cache the counts there (see :func:`count_sample`); ``None`` = no cache.

    Example:
        >>> from lit_xai.datamodules import SyntheticShortcutDataModule
        >>> dm = SyntheticShortcutDataModule(num_train=200, num_val=8, num_test=8, image_size=32)
        >>> audit_datamodule(dm, "train").label_predictive("ring")
        True
    """
    for name in ("class_names", "task", "denormalize"):
        if not hasattr(dm, name):
            raise ValueError(f"{type(dm).__name__} has no {name!r}; use audit_dataset(...) with explicit arguments")
    report = audit_sample(
        _split_dataset(dm, split, augmented),
        max_samples=max_samples,
        seed=seed,
        detectors=detectors,
        class_names=list(dm.class_names),
        denormalize=dm.denormalize,
        threshold=threshold,
        task=str(dm.task),
        batch_size=batch_size,
        alpha=alpha,
        min_odds_ratio=min_odds_ratio,
        min_support=min_support,
        cache_dir=cache_dir,
    )
    return add_skipped(report, dm)


def add_skipped(report: AuditReport, dm: Any) -> AuditReport:
    """Count the files ``dm`` dropped at setup (``on_bad_image="skip"``) as failures of the audit: they are failures
    of the dataset, never silently absent."""
    skipped = list(getattr(dm, "skipped", None) or [])
    if skipped:
        report.n_failed += len(skipped)
        notes = [f"skipped at setup: {path} ({reason})" for path, reason in skipped]
        report.failures = (notes + report.failures)[:_MAX_FAILURE_MESSAGES]
    return report
