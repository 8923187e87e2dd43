"""What a dataset knows before loading any image (:class:`SampleTable`) and how it is split: stratified, grouped by
patient or lesion (no group crosses splits), predefined splits completed with the datamodule's fractions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["SPLITS", "SampleTable", "split_indices"]

SPLITS: tuple[str, ...] = ("train", "val", "test")


def _strata(targets: np.ndarray) -> np.ndarray:
    """One stratum per sample: the label, or for multilabel the rarest positive label (K if none)."""
    if targets.ndim == 1:
        return targets.astype(np.int64)
    positive = np.nan_to_num(targets.astype(np.float64), nan=0.0) > 0.5
    # Rarest-first so that rare findings are spread over all splits rather than swamped by common ones.
    order = np.argsort(positive.sum(axis=0), kind="stable")
    strata = np.full(len(targets), targets.shape[1], dtype=np.int64)
    for label in order[::-1]:
        strata[positive[:, label]] = label
    return strata


def split_indices(
    targets: np.ndarray | Sequence[Any],
    val_fraction: float,
    test_fraction: float,
    seed: int = 0,
    groups: np.ndarray | Sequence[Any] | None = None,
) -> dict[str, np.ndarray]:
    """Stratified (and, with ``groups``, group-preserving) train/val/test split of sample indices.

    Each group (e.g. a patient) goes wholly to one split. Groups are stratified by their rarest member class, so a
    patient with any melanoma counts as a melanoma patient. Within each stratum the groups are shuffled (seeded) and
    laid end to end; a group goes to test, val or train depending on where its midpoint falls, so each split gets
    close to its fraction of the *images* of that stratum even when group sizes differ.

    Args:
        targets: ``(N,)`` class indices, or ``(N, K)`` multilabel targets (NaN = unknown counts as negative).
        val_fraction, test_fraction: fractions of the samples for validation and test, each in [0, 1), sum < 1.
        seed: seed of the shuffle.
        groups: optional ``(N,)`` group ids (any values with a stable ``str``); ``None`` treats every sample as its
            own group, and so does a missing id (``None``, NaN, empty string) within ``groups``.

    Returns:
        ``{"train": idx, "val": idx, "test": idx}`` sorted int64 index arrays partitioning ``range(N)``.

    Example:
        >>> parts = split_indices([0, 1] * 10, 0.2, 0.2, seed=0)
        >>> [len(parts[s]) for s in ("train", "val", "test")]
        [12, 4, 4]
    """
    _check_fractions(val_fraction, test_fraction)
    targets = np.asarray(targets)
    n = len(targets)
    if groups is None:
        group_ids = np.arange(n)
    else:
        if len(groups) != n:
            raise ValueError(f"groups has {len(groups)} entries but targets has {n}")
        # A missing id (None, NaN, "") is unknown, not shared: each such sample is its own group.
        keys = [f"\0sample{i}" if _missing(g) else str(g) for i, g in enumerate(groups)]
        _, group_ids = np.unique(np.asarray(keys, dtype=object).astype(str), return_inverse=True)
    n_groups = int(group_ids.max()) + 1 if n else 0
    strata = _strata(targets)
    counts = np.bincount(strata, minlength=1)
    # A group's stratum is its member class that is rarest in the whole dataset.
    rarity = counts[strata]
    group_stratum = np.zeros(n_groups, dtype=np.int64)
    group_rarity = np.full(n_groups, np.iinfo(np.int64).max)
    np.minimum.at(group_rarity, group_ids, rarity)
    is_rarest = rarity == group_rarity[group_ids]
    group_stratum[group_ids[is_rarest]] = strata[is_rarest]
    group_size = np.bincount(group_ids, minlength=n_groups)

    rng = np.random.default_rng(seed)
    assignment = np.zeros(n_groups, dtype=np.int64)  # 0 train, 1 val, 2 test
    for stratum in np.unique(group_stratum):
        members = np.flatnonzero(group_stratum == stratum)
        members = members[rng.permutation(len(members))]
        sizes = group_size[members]
        midpoints = (np.cumsum(sizes) - sizes / 2.0) / sizes.sum()
        assignment[members[midpoints < test_fraction + val_fraction]] = 1
        assignment[members[midpoints < test_fraction]] = 2
    sample_split = assignment[group_ids]
    return {name: np.flatnonzero(sample_split == code) for code, name in ((0, "train"), (1, "val"), (2, "test"))}


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or (isinstance(value, str) and not value)


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {value}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(
            f"val_fraction + test_fraction must be < 1 to leave training data, got {val_fraction} + {test_fraction}"
        )


@dataclass(frozen=True)
class SampleTable:
    """What a dataset subclass knows about its samples before loading any image.

    Attributes:
        targets: ``(N,)`` int class indices (binary/multiclass) or ``(N, K)`` float multilabel targets.
        paths: optional ``N`` image file paths, read by the default :class:`FileImageReader`.
        groups: optional ``(N,)`` group ids (patient, lesion); no group crosses splits.
        splits: optional ``(N,)`` predefined split names in ``{"train", "val", "test"}``. A split that is absent is
            carved out of ``train`` with the datamodule's fractions (e.g. official train + test, no val).
        artifacts: optional ``(N,)`` bool artifact flags (e.g. annotated vignettes).
        roi_paths: optional ``N`` region-of-interest mask files (e.g. lung masks), read by
            :class:`FileImageReader` and served as the item's ``roi_mask``.
    """

    targets: np.ndarray
    paths: Sequence[str] | None = None
    groups: np.ndarray | None = None
    splits: np.ndarray | None = None
    artifacts: np.ndarray | None = None
    roi_paths: Sequence[str] | None = None

    def __post_init__(self) -> None:
        n = len(self.targets)
        for name in ("paths", "groups", "splits", "artifacts", "roi_paths"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ValueError(f"SampleTable.{name} has {len(value)} entries but targets has {n}")
        if self.splits is not None:
            unknown = set(np.unique(np.asarray(self.splits).astype(str))) - set(SPLITS)
            if unknown:
                raise ValueError(f"SampleTable.splits may only contain {SPLITS}, found {sorted(unknown)}")

    def __len__(self) -> int:
        return len(self.targets)
