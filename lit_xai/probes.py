"""Probe images for explanations: chosen once and reproducibly from a validation set (stratified by class, with
artifact-flagged items, every multi-label class covered), or given as tensors; plus per-epoch outcome probes (true /
false positives / negatives) picked from validation predictions.

Pure: datasets and tensors in, :class:`Probes` out; no Lightning.

Example:
    >>> import torch
    >>> data = [(torch.rand(3, 8, 8), i % 2) for i in range(20)]
    >>> probes = ProbeSelector(num_probes=4).select(data)
    >>> len(probes), sorted(probes.targets.tolist())
    (4, [0, 0, 1, 1])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from .contracts import Probes, read_item, split_dataset, stand_in_labels

__all__ = ["ProbeSelector", "Probes", "outcome_indices", "probes_from_tensors", "select_probes", "validation_dataset"]


def validation_dataset(datamodule: Any, trainer: Any = None) -> Dataset:
    """The validation dataset (see :func:`lit_xai.contracts.split_dataset`)."""
    return split_dataset(datamodule, "val", trainer)


def _label_of(target: Any) -> int:
    # multi-label: stratify by the stand-in label (the first positive one, -1 for "no finding")
    t = torch.as_tensor(target)
    return int(stand_in_labels(t[None])[0])


def select_probes(
    dataset: Dataset,
    num_probes: int = 8,
    seed: int = 0,
    num_artifact: int = 2,
    indices: Optional[Sequence[int]] = None,
    candidates: int = 256,
) -> Probes:
    """Pick probes from ``dataset``: stratified by class, including up to ``num_artifact`` artifact-flagged ones.

    The choice depends only on ``seed`` and the dataset (never on global RNG state), so every DDP rank and every
    resumed run picks the same probes. Only a seeded subset of at most ``candidates`` items is read.

    Args:
        dataset: items are dicts (``image``, ``target``, optional ``artifact``, ``artifact_mask``) or tuples.
        num_probes: total number of probes.
        seed: selection seed.
        num_artifact: how many probes should carry a flagged artifact (if the dataset flags any).
        indices: explicit dataset indices; skips the selection.
        candidates: size of the seeded candidate pool that is read from the dataset.
    """
    n = len(dataset)  # type: ignore[arg-type]
    if n == 0:
        raise ValueError("the validation dataset is empty: cannot pick probe images")
    if indices is not None:
        bad = [i for i in indices if not 0 <= int(i) < n]
        if bad:
            raise ValueError(f"probe indices {bad} are out of range for a validation set of {n} items")
        chosen = [int(i) for i in indices]
        items = {i: read_item(dataset[i]) for i in chosen}
    else:
        rng = np.random.default_rng(seed)
        pool = rng.permutation(n)[: min(n, max(candidates, num_probes))].tolist()
        pool += [i for i in _label_coverage(dataset, rng) if i not in pool]
        items = {i: read_item(dataset[i]) for i in pool}
        chosen = _stratify(items, pool, num_probes, num_artifact)
        chosen = _cover_labels(items, pool, chosen)
    return _stack(items, chosen)


def _label_coverage(dataset: Any, rng: np.random.Generator) -> list[int]:
    """For multi-label datasets exposing ``targets`` ``(N, K)``: one seeded positive index per class that has one."""
    targets = getattr(dataset, "targets", None)
    if targets is None:
        return []
    t = np.asarray(targets, dtype=np.float64)
    if t.ndim != 2:
        return []
    positive = np.nan_to_num(t, nan=0.0) > 0.5
    return [int(rng.choice(np.flatnonzero(positive[:, k]))) for k in range(t.shape[1]) if positive[:, k].any()]


def _positives(target: Any) -> set[int]:
    t = torch.as_tensor(target)
    if t.ndim == 0:
        return set()
    return set((torch.nan_to_num(t.float(), nan=0.0) > 0.5).nonzero().flatten().tolist())


def _cover_labels(items: dict[int, dict], pool: list[int], chosen: list[int]) -> list[int]:
    """Multi-label: add probes until every class positive somewhere in the pool is positive in some probe."""
    if torch.as_tensor(items[pool[0]]["target"]).ndim == 0:
        return chosen
    covered = set().union(*(_positives(items[i]["target"]) for i in chosen)) if chosen else set()
    wanted = set().union(*(_positives(items[i]["target"]) for i in pool)) - covered
    added = list(chosen)
    while wanted:
        # greedy: the candidate positive for most still-uncovered classes (ties: lowest index, for determinism)
        best = max(
            (i for i in pool if i not in added), key=lambda i: (len(_positives(items[i]["target"]) & wanted), -i)
        )
        gain = _positives(items[best]["target"]) & wanted
        if not gain:
            break
        added.append(best)
        wanted -= gain
    return sorted(added, key=lambda i: (_label_of(items[i]["target"]), i))


def _stratify(items: dict[int, dict], pool: list[int], num_probes: int, num_artifact: int) -> list[int]:
    by_class: dict[int, list[int]] = {}
    for i in pool:
        by_class.setdefault(_label_of(items[i]["target"]), []).append(i)
    flagged = [i for i in pool if bool(items[i].get("artifact", False))]
    chosen: list[int] = []
    # artifact probes first, spread over the classes that have them
    for i in flagged:
        if len(chosen) >= min(num_artifact, num_probes):
            break
        cls = _label_of(items[i]["target"])
        if sum(_label_of(items[j]["target"]) == cls for j in chosen) <= len(chosen) // max(1, len(by_class)):
            chosen.append(i)
    for i in flagged:
        if len(chosen) >= min(num_artifact, num_probes):
            break
        if i not in chosen:
            chosen.append(i)
    # then round-robin over classes (in class order) until num_probes
    queues = {c: [i for i in idx if i not in chosen] for c, idx in sorted(by_class.items())}
    while len(chosen) < min(num_probes, len(pool)):
        progressed = False
        for c in sorted(queues, key=lambda c: (sum(_label_of(items[j]["target"]) == c for j in chosen), c)):
            if queues[c] and len(chosen) < num_probes:
                chosen.append(queues[c].pop(0))
                progressed = True
                break
        if not progressed:
            break
    return sorted(chosen, key=lambda i: (_label_of(items[i]["target"]), i))


def _stack(items: dict[int, dict], chosen: list[int]) -> Probes:
    images = torch.stack([torch.as_tensor(items[i]["image"]).float() for i in chosen])
    roi = None
    if all("roi_mask" in items[i] for i in chosen):
        roi = torch.stack([torch.as_tensor(items[i]["roi_mask"]).bool() for i in chosen])
    targets = torch.stack([torch.as_tensor(items[i]["target"]) for i in chosen])
    artifact = torch.tensor([bool(items[i].get("artifact", False)) for i in chosen])
    masks = None
    if all("artifact_mask" in items[i] for i in chosen):
        masks = torch.stack([torch.as_tensor(items[i]["artifact_mask"]).bool() for i in chosen])
    return Probes(
        images=images, targets=targets, ids=list(chosen), artifact=artifact, artifact_masks=masks, roi_masks=roi
    )


def outcome_indices(
    probs: torch.Tensor, targets: torch.Tensor, per_outcome: int = 2, positive_class: int = 1, seed: int = 0
) -> dict[str, list[int]]:
    """Indices of up to ``per_outcome`` true/false positives/negatives among validation predictions (seeded).

    For multiclass tasks "positive" means predicting ``positive_class``; the most confident errors come first, so
    the "incorrect predictions" view shows what the model gets most wrong.

    Args:
        probs: ``(N, K)`` predicted probabilities.
        targets: ``(N,)`` true class indices.
        per_outcome: how many per outcome.
        positive_class: the class treated as positive.
        seed: tie-breaking seed among equally confident predictions.

    Example:
        >>> probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4]])
        >>> outcome_indices(probs, torch.tensor([0, 1, 0, 1]), per_outcome=1)
        {'TP': [1], 'FP': [2], 'TN': [0], 'FN': [3]}
    """
    targets = torch.as_tensor(targets).long().cpu()
    probs = probs.detach().float().cpu()
    pred_pos = probs.argmax(1) == positive_class
    true_pos = targets == positive_class
    confidence = probs[:, positive_class]
    jitter = torch.from_numpy(np.random.default_rng(seed).random(len(targets)) * 1e-6).float()
    out: dict[str, list[int]] = {}
    for name, mask, score in (
        ("TP", pred_pos & true_pos, confidence),
        ("FP", pred_pos & ~true_pos, confidence),
        ("TN", ~pred_pos & ~true_pos, 1 - confidence),
        ("FN", ~pred_pos & true_pos, 1 - confidence),
    ):
        idx = mask.nonzero().flatten()
        order = (score[idx] + jitter[idx]).argsort(descending=True)
        out[name] = idx[order][:per_outcome].tolist()
    return out


class ProbeSelector:
    """How probes are chosen (a small object LightningCLI/YAML can configure with ``class_path``).

    Args:
        num_probes: number of probes (multi-label: more if needed to cover every class with a known positive).
        num_artifact: how many should carry a flagged artifact (if the dataset flags any).
        indices: explicit validation-set indices instead of the stratified draw.
        seed: selection seed (independent of global RNG, so all DDP ranks and resumed runs agree).
        candidates: size of the seeded candidate pool read from the dataset.
        per_outcome: additionally explain up to this many true/false positives/negatives, picked again at every
            explained epoch from the validation predictions (0 = off).
        outcome_pool: validation items scored to find the outcome probes.

    Example:
        >>> ProbeSelector(num_probes=4, per_outcome=1).per_outcome
        1
    """

    def __init__(
        self,
        num_probes: int = 8,
        num_artifact: int = 2,
        indices: Optional[list[int]] = None,
        seed: int = 0,
        candidates: int = 256,
        per_outcome: int = 0,
        outcome_pool: int = 256,
    ) -> None:
        if num_probes < 1:
            raise ValueError(f"num_probes must be >= 1, got {num_probes}")
        if num_artifact < 0 or per_outcome < 0 or candidates < 1 or outcome_pool < 1:
            raise ValueError("num_artifact and per_outcome must be >= 0, candidates and outcome_pool >= 1")
        self.num_probes = num_probes
        self.num_artifact = num_artifact
        self.indices = indices
        self.seed = seed
        self.candidates = candidates
        self.per_outcome = per_outcome
        self.outcome_pool = outcome_pool

    def select(self, dataset: Dataset) -> Probes:
        """The fixed probes of ``dataset``."""
        return select_probes(dataset, self.num_probes, self.seed, self.num_artifact, self.indices, self.candidates)

    def reference_candidates(self, dataset: Dataset, size: int = 32) -> Probes:
        """The seeded validation pool searched for CRP concept references."""
        return select_probes(dataset, size, self.seed + 2, 0, candidates=size)

    def outcome_candidates(self, dataset: Dataset) -> Probes:
        """The seeded validation pool scored every epoch for the outcome probes."""
        return select_probes(dataset, self.outcome_pool, self.seed + 1, 0, candidates=self.outcome_pool)

    def __repr__(self) -> str:
        return f"ProbeSelector({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"


def probes_from_tensors(images: torch.Tensor, targets: torch.Tensor) -> Probes:
    """Wrap user-given probe tensors (checked: a non-empty floating-point ``(N, C, H, W)`` batch)."""
    from .explainers.inputs import check_images

    check_images(images, "probes_from_tensors", what="probe images")
    if targets is None or len(targets) != len(images):
        raise ValueError("probe_targets must be given with probes, one target per image")
    n = len(images)
    return Probes(
        images=images.detach().float().cpu(),
        targets=torch.as_tensor(targets).cpu(),
        ids=list(range(-1, -n - 1, -1)),
        artifact=torch.zeros(n, dtype=torch.bool),
    )
