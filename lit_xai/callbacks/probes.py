"""Fixed probe images for explanation callbacks, drawn once and reproducibly from a validation set."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["Probes", "select_probes", "probes_from_tensors", "read_item", "validation_dataset"]


@dataclass
class Probes:
    """A fixed probe set.

    Attributes:
        images: model input ``(N, C, H, W)`` (normalised as the model expects).
        targets: ``(N,)`` class indices, or ``(N, K)`` multi-hot labels for multi-label tasks.
        ids: dataset indices (or ``-1..-N`` for tensors given by the user).
        artifact: ``(N,)`` bool, True where the dataset flags an artifact (False when unknown).
        artifact_masks: ``(N, H, W)`` bool ground-truth artifact masks, or None when the dataset has none.
    """

    images: torch.Tensor
    targets: torch.Tensor
    ids: list[int]
    artifact: torch.Tensor
    artifact_masks: Optional[torch.Tensor] = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)


def read_item(item: Any) -> dict[str, Any]:
    """Normalise one dataset item (dict or ``(image, target, ...)`` tuple) to a dict with image/target keys."""
    if isinstance(item, dict):
        if "image" not in item or "target" not in item:
            raise KeyError(f"dataset items need 'image' and 'target' keys, got {sorted(item)}")
        return item
    if isinstance(item, (tuple, list)) and len(item) >= 2:
        return {"image": item[0], "target": item[1]}
    raise TypeError(f"unsupported dataset item {type(item).__name__}: return a dict or an (image, target) tuple")


def validation_dataset(datamodule: Any, trainer: Any = None) -> Dataset:
    """The validation dataset: ``datamodule.dataset('val')``, its val dataloader's dataset, or -- without a
    datamodule -- the dataset of the val dataloader given to ``trainer.fit``/``validate``."""
    if datamodule is None:
        return _trainer_val_dataset(trainer)
    if hasattr(datamodule, "dataset") and callable(datamodule.dataset):
        try:
            return datamodule.dataset("val")
        except (KeyError, ValueError, RuntimeError):
            pass
    loader = datamodule.val_dataloader()
    if isinstance(loader, (list, tuple)):
        loader = loader[0]
    return loader.dataset


def _trainer_val_dataset(trainer: Any) -> Dataset:
    # Lightning loads val dataloaders lazily, after setup/on_fit_start; read the source the user passed instead.
    loop = (
        trainer.validate_loop
        if str(getattr(trainer.state.fn, "value", "")) == "validate"
        else trainer.fit_loop.epoch_loop.val_loop
    )
    source = getattr(loop, "_data_source", None)
    if source is None or not source.is_defined():
        raise ValueError(
            "no validation data to pick probe images from: pass a datamodule or val_dataloaders to the trainer, "
            "or give probes=... and probe_targets=..."
        )
    loader = source.dataloader()
    if isinstance(loader, (list, tuple)):
        loader = loader[0]
    return loader.dataset


def _label_of(target: Any) -> int:
    t = torch.as_tensor(target)
    if t.ndim == 0:
        return int(t)
    # multi-label: stratify by the first positive label (or -1 for "no finding")
    pos = (torch.nan_to_num(t.float(), nan=0.0) > 0.5).nonzero()
    return int(pos[0]) if len(pos) else -1


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
        items = {i: read_item(dataset[i]) for i in pool}
        chosen = _stratify(items, pool, num_probes, num_artifact)
    return _stack(items, chosen)


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
    targets = torch.stack([torch.as_tensor(items[i]["target"]) for i in chosen])
    artifact = torch.tensor([bool(items[i].get("artifact", False)) for i in chosen])
    masks = None
    if all("artifact_mask" in items[i] for i in chosen):
        masks = torch.stack([torch.as_tensor(items[i]["artifact_mask"]).bool() for i in chosen])
    return Probes(images=images, targets=targets, ids=list(chosen), artifact=artifact, artifact_masks=masks)


def probes_from_tensors(images: torch.Tensor, targets: torch.Tensor) -> Probes:
    """Wrap user-given probe tensors."""
    if images.ndim != 4:
        raise ValueError(f"probes must be an (N, C, H, W) tensor, got shape {tuple(images.shape)}")
    if targets is None or len(targets) != len(images):
        raise ValueError("probe_targets must be given with probes, one target per image")
    n = len(images)
    return Probes(
        images=images.detach().float().cpu(),
        targets=torch.as_tensor(targets).cpu(),
        ids=list(range(-1, -n - 1, -1)),
        artifact=torch.zeros(n, dtype=torch.bool),
    )
