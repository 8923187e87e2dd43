"""Contracts shared by models, data, explainers and callbacks: task names, logits -> probabilities, reading an item
or a batch (tuple, list or dict), finding a split's dataset, and adapting single-logit binary models.

Nothing here imports Lightning; every function works on plain tensors, datasets and modules.

Example:
    >>> import torch
    >>> check_task("binary", 2)
    >>> probabilities(torch.tensor([[0.0, 0.0]]), "multiclass")
    tensor([[0.5000, 0.5000]])
    >>> read_item((torch.zeros(3, 4, 4), 1))["target"]
    1
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

__all__ = [
    "IMAGE_KEYS",
    "TARGET_KEYS",
    "TASKS",
    "TwoLogitBinary",
    "check_task",
    "class_name",
    "infer_task",
    "probabilities",
    "read_item",
    "split_batch",
    "split_dataset",
]

TASKS: tuple[str, ...] = ("binary", "multiclass", "multilabel")
#: keys under which dict items/batches carry the image and the target (torchgeo uses "image"/"label")
IMAGE_KEYS: tuple[str, ...] = ("image", "images", "input", "x")
TARGET_KEYS: tuple[str, ...] = ("target", "targets", "label", "labels", "y")


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


def probabilities(logits: torch.Tensor, task: str) -> torch.Tensor:
    """Class probabilities: sigmoid per label for ``multilabel``, softmax over logits otherwise."""
    check_task(task)
    return torch.sigmoid(logits) if task == "multilabel" else logits.softmax(-1)


def infer_task(targets: torch.Tensor, num_outputs: int) -> str:
    """The task implied by a batch of targets and the model's number of outputs.

    ``(N, K)`` float targets are multi-label; integer class indices with two outputs are binary, else multiclass.
    """
    if targets.ndim == 2 and targets.shape[1] == num_outputs and num_outputs > 1:
        return "multilabel"
    return "binary" if num_outputs <= 2 else "multiclass"


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


class TwoLogitBinary(nn.Module):
    """Adapts a single-logit binary classifier ``z`` to the two-logit contract: ``[-z/2, z/2]``.

    ``softmax([-z/2, z/2])[1] = sigmoid(z)``, so probabilities are unchanged. The split is a frozen ``nn.Linear``
    (weights ``-1/2``, ``+1/2``), so LRP treats it with its ordinary linear rule: explaining class 1 conserves ``z/2``
    and class 0 gives the mirrored map.

    Example:
        >>> net = TwoLogitBinary(nn.Linear(4, 1))
        >>> net(torch.ones(3, 4)).shape
        torch.Size([3, 2])
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.split = nn.Linear(1, 2, bias=False)
        with torch.no_grad():
            self.split.weight.copy_(torch.tensor([[-0.5], [0.5]]))
        self.split.weight.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.model(x)
        if z.ndim == 1:
            z = z[:, None]
        return self.split(z)
