"""Artifact labels for CAV fitting, and a bounded, seeded sample of a dataset to fit on.

Three sources, in order of trust:

* ``"field"`` — the dataset's own per-item ``artifact`` flag (ground truth where a datamodule provides it);
* ``"detector"`` — a registered artifact detector (:func:`lit_xai.artifacts.get_artifact`) thresholded on the
  images in [0, 1];
* a list of dataset indices the user marked as carrying the artifact (e.g. from the audit or SpRAy).

Example:
    >>> import torch
    >>> from lit_xai.artifacts import insert_ring
    >>> skin = torch.tensor([0.85, 0.62, 0.5])[None, :, None, None].expand(2, 3, 64, 64).clone()
    >>> ringed, _ = insert_ring(skin[:1], torch.Generator().manual_seed(0))
    >>> detector_labels(torch.cat([skin[:1], ringed]), "ring").tolist()
    [False, True]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Optional, Union

import torch

from ..artifacts import get_artifact
from ..contracts import read_item

__all__ = ["LabelSource", "artifact_rates", "detector_labels", "sample_labeled"]

#: ``"field"``, ``"detector"`` or the indices of the items with the artifact
LabelSource = Union[str, Sequence[int]]


def detector_labels(images01: torch.Tensor, artifact: str = "ring") -> torch.Tensor:
    """``(N,)`` bool: the registered detector of ``artifact`` flags the image (score >= its threshold)."""
    art = get_artifact(artifact)
    scores, _ = art.detect(images01.float().clamp(0, 1))
    return scores >= art.threshold


def _flag(item: dict, index: int, marked: Optional[set[int]], source: LabelSource) -> Optional[bool]:
    """The item's artifact label from the marked indices or its ``artifact`` field; ``None`` when a detector decides."""
    if marked is not None:
        return index in marked
    if source != "field":
        return None
    if "artifact" not in item:
        raise ValueError(
            "the dataset's items have no 'artifact' field; use labels='detector' (a registered detector) or "
            "pass the indices of the items with the artifact"
        )
    return bool(item["artifact"])


def _detected(
    images: torch.Tensor, to01: Optional[Callable[[torch.Tensor], torch.Tensor]], artifact: str
) -> torch.Tensor:
    """The registered detector's labels of model-input ``images`` (mapped to [0, 1] by ``to01``)."""
    if to01 is None:
        raise ValueError(
            "labels='detector' needs to map model inputs to [0, 1]: use a datamodule with normalize/denormalize "
            "or give normalization=(mean, std)"
        )
    return detector_labels(to01(images), artifact)


def sample_labeled(
    dataset: Any,
    max_samples: int,
    source: LabelSource = "field",
    artifact: str = "ring",
    to01: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
    generator: Optional[torch.Generator] = None,
    within_class: Optional[int] = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A seeded random sample of at most ``max_samples`` items: ``(images, artifact labels, indices)``.

    With an index list as ``source``, the listed items are always taken (up to half of ``max_samples``) and the
    rest is drawn from the other items, so a rare artifact is not missed.

    Args:
        dataset: map-style dataset of items readable by :func:`lit_xai.contracts.read_item`.
        to01: model input -> images in [0, 1], needed for ``source="detector"``.
        generator: randomness of the sample (the global RNG is not touched by the choice of indices).
        within_class: take only items of this class (e.g. the class the artifact co-occurs with), so the CAV
            contrasts artifact vs clean images *of one class* and does not also pick up that class's features.

    Raises:
        ValueError: an unknown source, a missing ``artifact`` field or a missing ``to01``, naming the fix.
    """
    n = len(dataset)
    if n == 0:
        raise ValueError("the dataset is empty; nothing to fit a CAV on")
    order = torch.randperm(n, generator=generator)
    if isinstance(source, str):
        if source not in ("field", "detector"):
            raise ValueError(f"unknown label source {source!r}; use 'field', 'detector' or a list of indices")
        indices = order if within_class is not None else order[:max_samples]
        marked: Optional[set[int]] = None
    else:
        marked = {int(i) for i in source}
        if not marked or min(marked) < 0 or max(marked) >= n:
            raise ValueError(
                f"artifact indices must be a non-empty list of indices in [0, {n}), got {sorted(marked)[:5]}"
            )
        is_marked = torch.zeros(n, dtype=torch.bool)
        is_marked[list(marked)] = True
        art_part = order[is_marked[order]][: max(1, max_samples // 2)]
        clean_part = order[~is_marked[order]][: max_samples - len(art_part)]
        indices = torch.cat([art_part, clean_part])
    images, labels, taken = [], [], []
    for i in indices.tolist():
        if len(images) >= max_samples:
            break
        item = read_item(dataset[i])
        if within_class is not None and int(item["target"]) != within_class:
            continue
        taken.append(i)
        images.append(torch.as_tensor(item["image"]))
        labels.append(_flag(item, i, marked, source))
    if not images:
        raise ValueError(f"no items of class {within_class} in the dataset; check within_class")
    stacked = torch.stack(images).float()
    if source == "detector":
        label_tensor = _detected(stacked, to01, artifact)
    else:
        label_tensor = torch.tensor(labels, dtype=torch.bool)
    return stacked, label_tensor, torch.tensor(taken, dtype=torch.long)


def artifact_rates(
    dataset: Any,
    max_samples: int,
    source: LabelSource = "field",
    artifact: str = "ring",
    to01: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
    generator: Optional[torch.Generator] = None,
    num_classes: Optional[int] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The artifact's rate in each class, on a seeded sample of at most ``max_samples`` items.

    Labels as :func:`sample_labeled` (``"field"``, ``"detector"`` or an index list; with an index list every item is
    counted, since the list says exactly which items carry it).

    Returns:
        ``(rates (K,), counts (K,))``: the fraction of each class's sampled items with the artifact, and how many items
        of the class were sampled (a class that was not sampled has rate 0 and count 0).

    Example:
        >>> import torch
        >>> data = [{"image": torch.zeros(3, 4, 4), "target": i % 2, "artifact": i % 4 == 1} for i in range(8)]
        >>> rates, counts = artifact_rates(data, 8)
        >>> rates.tolist(), counts.tolist()
        ([0.0, 0.5], [4, 4])
    """
    n = len(dataset)
    if n == 0:
        raise ValueError("the dataset is empty; no artifact rates to estimate")
    marked = None if isinstance(source, str) else {int(i) for i in source}
    if isinstance(source, str) and source not in ("field", "detector"):
        raise ValueError(f"unknown label source {source!r}; use 'field', 'detector' or a list of indices")
    order = torch.arange(n) if marked is not None else torch.randperm(n, generator=generator)[:max_samples]
    targets, flags, images = [], [], []
    for i in order.tolist():
        item = read_item(dataset[i])
        targets.append(int(item["target"]))
        flag = _flag(item, i, marked, source)
        if flag is None:
            images.append(torch.as_tensor(item["image"]).float())
        flags.append(flag)
    if images:
        flags = _detected(torch.stack(images), to01, artifact).tolist()
    t = torch.tensor(targets, dtype=torch.long)
    k = max(int(t.max()) + 1, int(num_classes or 0))
    counts = torch.bincount(t, minlength=k)
    hits = torch.bincount(t, weights=torch.tensor(flags, dtype=torch.float32), minlength=k)
    return hits / counts.clamp_min(1), counts
