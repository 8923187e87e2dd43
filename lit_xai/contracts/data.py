"""Reading data as the package expects it: an item or a batch (tuple, list or dict), a split's dataset (from a
datamodule or a trainer's loaders), and the fixed probe set every monitor explains."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional

import torch

__all__ = ["IMAGE_KEYS", "TARGET_KEYS", "Probes", "read_item", "split_batch", "split_dataset"]

#: keys under which dict items/batches carry the image and the target (torchgeo uses "image"/"label")
IMAGE_KEYS: tuple[str, ...] = ("image", "images", "input", "x")
TARGET_KEYS: tuple[str, ...] = ("target", "targets", "label", "labels", "y")


def _pick(item: Mapping[str, Any], keys: tuple[str, ...], what: str) -> Any:
    for key in keys:
        if key in item:
            return item[key]
    raise KeyError(f"dict items need an {what} under one of the keys {list(keys)}; got keys {sorted(item)}")


def read_item(item: Any) -> dict[str, Any]:
    """One dataset item (dict, or ``(image, target, ...)`` tuple/list) as a dict with ``image`` and ``target``.

    Other dict keys (``artifact``, ``artifact_mask``, ``roi_mask``, ``index``) are kept.
    """
    if isinstance(item, Mapping):
        out = dict(item)
        out["image"] = _pick(item, IMAGE_KEYS, "image")
        out["target"] = _pick(item, TARGET_KEYS, "target")
        return out
    if isinstance(item, (tuple, list)) and len(item) >= 2:
        return {"image": item[0], "target": item[1]}
    raise TypeError(
        f"unsupported dataset item {type(item).__name__}: return a dict with 'image'/'target' keys or an "
        "(image, target) tuple"
    )


def split_batch(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images, targets)`` of a collated batch: a dict (``image``/``target`` or ``label`` keys) or a tuple/list."""
    item = read_item(batch)
    return item["image"], item["target"]


def split_dataset(datamodule: Any, split: str, trainer: Any = None) -> Any:
    """The dataset of ``split`` ("train", "val", "test"): ``datamodule.dataset(split)``, else the dataset of the
    datamodule's loader, else (no datamodule) the dataloader passed to ``trainer.fit``/``validate``.

    Raises:
        ValueError: when no source for the split exists (the message says what to pass).
    """
    loader_fn = {"train": "train_dataloader", "val": "val_dataloader", "test": "test_dataloader"}[split]
    if datamodule is not None:
        if callable(getattr(datamodule, "dataset", None)):
            try:
                return datamodule.dataset(split)
            except (KeyError, ValueError, RuntimeError, NotImplementedError):
                pass
        try:
            loader = getattr(datamodule, loader_fn)()
        except Exception as err:  # noqa: BLE001 - any failure means: no such split here
            raise ValueError(
                f"{type(datamodule).__name__}.{loader_fn}() failed ({err}); cannot read the {split} split"
            ) from err
        return _first_loader(loader).dataset
    return _trainer_dataset(trainer, split)


def _first_loader(loader: Any) -> Any:
    if isinstance(loader, (list, tuple)):
        loader = loader[0]
    if isinstance(loader, Mapping):
        loader = next(iter(loader.values()))
    return loader


def _trainer_dataset(trainer: Any, split: str) -> Any:
    # Lightning loads dataloaders lazily, after setup/on_fit_start: read the source the user passed instead
    if trainer is None:
        raise ValueError(f"no {split} data: pass a datamodule or {split} dataloaders to the trainer")
    fn = str(getattr(trainer.state.fn, "value", trainer.state.fn))
    if split == "train":
        loop = trainer.fit_loop
    elif split == "val":
        loop = trainer.validate_loop if fn == "validate" else trainer.fit_loop.epoch_loop.val_loop
    else:
        loop = trainer.test_loop
    source = getattr(loop, "_data_source", None)
    if source is None or not source.is_defined():
        raise ValueError(
            f"no {split} data to read: pass a datamodule or {split}_dataloaders to the trainer"
            + (", or give probe tensors" if split == "val" else "")
        )
    return _first_loader(source.dataloader()).dataset


@dataclass
class Probes:
    """A fixed probe set.

    Attributes:
        images: model input ``(N, C, H, W)`` (normalised as the model expects).
        targets: ``(N,)`` class indices, or ``(N, K)`` multi-hot labels for multi-label tasks.
        ids: dataset indices (or ``-1..-N`` for tensors given by the user).
        artifact: ``(N,)`` bool, True where the dataset flags an artifact (False when unknown).
        artifact_masks: ``(N, H, W)`` bool ground-truth artifact masks, or None when the dataset has none.
        roi_masks: ``(N, H, W)`` bool region of interest (e.g. lung masks), or None.
    """

    images: torch.Tensor
    targets: torch.Tensor
    ids: list[int]
    artifact: torch.Tensor
    artifact_masks: Optional[torch.Tensor] = None
    roi_masks: Optional[torch.Tensor] = None

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, rows: Sequence[int]) -> Probes:
        """The probes at positions ``rows``."""
        idx = torch.as_tensor(list(rows), dtype=torch.long)
        pick = lambda t: None if t is None else t[idx]  # noqa: E731
        return Probes(
            self.images[idx], self.targets[idx], [self.ids[int(i)] for i in idx], self.artifact[idx],
            pick(self.artifact_masks), pick(self.roi_masks),
        )  # fmt: skip

    def clone(self) -> Probes:
        """A copy whose tensors are normal (non-inference) tensors, safe to use under autograd."""
        with torch.inference_mode(False):
            c = lambda t: None if t is None else t.clone()  # noqa: E731
            return Probes(
                c(self.images), c(self.targets), list(self.ids), c(self.artifact), c(self.artifact_masks),
                c(self.roi_masks),
            )  # fmt: skip
