"""Reading a dataset for the audit: which items (seeded sample, one rank's shard), each item as ``(images, targets,
artifact flags)``, failing items as markers to count, and a split's dataset without its random augmentation."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from ...contracts import read_item, split_dataset

__all__ = ["eval_dataset", "sample_indices"]


class _Failure:
    """Marker yielded in place of an item that raised, so the audit counts it with its dataset index."""

    def __init__(self, index: int, err: Exception) -> None:
        self.message = f"index {index}: {type(err).__name__}: {err}"

    def __str__(self) -> str:
        return self.message


def _items(dataset: Any, indices: Sequence[int]) -> Iterator[Any]:
    """Items ``indices`` of a map-style dataset; a failing item becomes a :class:`_Failure`, not an exception."""
    for i in indices:
        try:
            yield dataset[i]
        except Exception as err:
            yield _Failure(i, err)


def _split_item(item: Any) -> tuple[torch.Tensor, Any, Any]:
    """``(image(s), target(s), artifact flag(s) or None)`` of a dataset item or a collated batch."""
    try:
        read = read_item(item)
    except (KeyError, TypeError) as err:
        raise ValueError(str(err)) from None
    return read["image"], read["target"], read.get("artifact")


def _as_batch(image: Any, target: Any, flag: Any, task: str) -> tuple[torch.Tensor, np.ndarray, np.ndarray | None]:
    image = torch.as_tensor(image)
    single = image.ndim == 3
    if single:
        image = image[None]
    if image.ndim != 4:
        raise ValueError(f"images must be (C, H, W) or (N, C, H, W), got {tuple(image.shape)}")
    t = torch.as_tensor(target).detach().cpu().numpy()
    if task == "multilabel":
        t = t.reshape(len(image), -1)
    else:
        t = t.reshape(len(image))
    a = None if flag is None else torch.as_tensor(flag).detach().cpu().numpy().astype(bool).reshape(len(image))
    return image, t, a


def sample_indices(
    n: int, max_samples: int | None = None, seed: int = 0, shard: tuple[int, int] | None = None
) -> list[int]:
    """The item indices an audit of a dataset of ``n`` items reads: a seeded random subset of ``max_samples``
    (sorted, so a dataset ordered by class is still sampled fairly; all items when ``max_samples`` is None), and of
    those the contiguous block ``shard=(rank, world_size)``. The blocks of all ranks partition the subset, so their
    counts merge into the whole audit (:func:`merge_counts`), and failure messages merged by rank keep their order.

    Example:
        >>> sample_indices(10, shard=(0, 3)), sample_indices(10, shard=(2, 3))
        ([0, 1, 2, 3], [7, 8, 9])
        >>> len(sample_indices(1000, max_samples=64, seed=1))
        64
    """
    indices = np.arange(n)
    if max_samples is not None and max_samples < n:
        indices = np.sort(np.random.default_rng(seed).choice(n, size=max_samples, replace=False))
    if shard is not None:
        rank, world = (int(v) for v in shard)
        if world < 1 or not 0 <= rank < world:
            raise ValueError(f"shard must be (rank, world_size) with 0 <= rank < world_size, got {tuple(shard)}")
        indices = np.array_split(indices, world)[rank]
    return [int(i) for i in indices]


def eval_dataset(dataset: Any, dm: Any) -> Any:
    """``dataset`` as stored, not augmented: a shallow copy with the datamodule's evaluation transform when both
    offer one (the datamodule is untouched), else ``dataset`` itself."""
    if hasattr(dataset, "transform") and callable(getattr(dm, "transform", None)):
        dataset = copy.copy(dataset)
        dataset.transform = dm.transform(train=False)
    return dataset


def _split_dataset(dm: Any, split: str, augmented: bool) -> Any:
    """The split's dataset (:func:`lit_xai.contracts.split_dataset`: ``dm.dataset(split)``, else its loader's)."""
    if hasattr(dm, "setup") and not (hasattr(dm, "dataset") and callable(dm.dataset)):
        dm.setup(None)
    ds = split_dataset(dm, split)
    # audit the stored images, not a random augmentation of them
    return ds if augmented else eval_dataset(ds, dm)
