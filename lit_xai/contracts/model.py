"""Contracts shared by models, data, explainers and callbacks: task names, logits -> probabilities, reading an item
or a batch (tuple, list or dict), finding a split's dataset, adapting single-logit binary models, the value range
of model inputs, and the :class:`ModelContract` every monitor resolves once at fit start.

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

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

import torch
from torch import nn

__all__ = [
    "IMAGE_KEYS",
    "TARGET_KEYS",
    "TASKS",
    "ModelContract",
    "ModelSpec",
    "Probes",
    "TwoLogitBinary",
    "ValueRange",
    "adapt_binary",
    "check_logits",
    "check_task",
    "class_name",
    "count_outputs",
    "explained_module",
    "infer_task",
    "minmax01",
    "probabilities",
    "read_item",
    "resolve_class_names",
    "resolve_contract",
    "resolve_task",
    "split_batch",
    "split_dataset",
    "stand_in_labels",
    "value_range",
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


def check_logits(logits: Any, task: str | None = None) -> torch.Tensor:
    """``logits`` if it is an ``(N, K)`` tensor the explainers can use, else an error saying how to fix the model.

    Two-logit binary models: a single logit is refused for ``task`` binary/multiclass (and for ``task=None``, where a
    class index must be explained) with the way out, :class:`TwoLogitBinary`.

    Example:
        >>> check_logits(torch.zeros(2, 3)).shape
        torch.Size([2, 3])
    """
    if not isinstance(logits, torch.Tensor):
        raise TypeError(
            f"the model returned {type(logits).__name__}, not a logits tensor (N, K); point lit_xai at the submodule "
            "that maps images to logits (monitors: model=ModelSpec(module_attr='<name>'))"
        )
    if logits.ndim != 2:
        raise ValueError(f"the model must return logits of shape (N, K), got {tuple(logits.shape)}")
    if logits.shape[1] == 1 and task != "multilabel":
        raise ValueError(
            "the model returns a single logit: lit_xai explains class indices of two-logit binary models. Wrap it "
            "with lit_xai.contracts.TwoLogitBinary(model) (the monitors do this themselves)"
        )
    return logits


def probabilities(logits: torch.Tensor, task: str) -> torch.Tensor:
    """Class probabilities: sigmoid per label for ``multilabel``, softmax over logits otherwise."""
    check_task(task)
    return torch.sigmoid(logits) if task == "multilabel" else logits.softmax(-1)


def infer_task(targets: torch.Tensor, num_outputs: int) -> str:
    """The task implied by a batch of targets and the model's number of outputs.

    ``(N, K)`` targets are multi-label; class indices with one or two outputs are binary, else multiclass.

    Example:
        >>> infer_task(torch.tensor([0, 1]), 2), infer_task(torch.tensor([0, 4]), 5), infer_task(torch.ones(2, 3), 3)
        ('binary', 'multiclass', 'multilabel')
    """
    if targets.ndim == 2:
        return "multilabel"
    return "binary" if num_outputs <= 2 else "multiclass"


def stand_in_labels(targets: torch.Tensor) -> torch.Tensor:
    """One class index per item: class indices as they are; for multi-hot ``(N, K)`` targets the first positive
    label stands for the item (NaN = unknown counts as negative), ``-1`` when it has none ("no finding").

    This is the one rule every part uses where a multi-label item needs a single class (probe stratification,
    concept references, the reliance pool, quality metrics); callers skip ``-1`` rows or explain their prediction.

    Example:
        >>> stand_in_labels(torch.tensor([[0.0, 1.0, 1.0], [0.0, 0.0, float("nan")]])).tolist()
        [1, -1]
        >>> stand_in_labels(torch.tensor([2, 0])).tolist()
        [2, 0]
    """
    t = torch.as_tensor(targets)
    if t.ndim <= 1:
        return t.long()
    pos = torch.nan_to_num(t.float(), nan=0.0) > 0.5
    return torch.where(pos.any(1), pos.float().argmax(1), torch.full((len(t),), -1, dtype=torch.long))


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


class ValueRange:
    """Conversions between model inputs and images in [0, 1] (for display, detectors and inserters).

    Args:
        to01: model input -> [0, 1].
        from01: [0, 1] -> model input.
        source: where the conversion came from (for messages).
    """

    def __init__(
        self,
        to01: Callable[[torch.Tensor], torch.Tensor],
        from01: Callable[[torch.Tensor], torch.Tensor],
        source: str,
    ) -> None:
        self.to01, self.from01, self.source = to01, from01, source


def value_range(
    datamodule: Any,
    normalization: Optional[tuple[Sequence[float], Sequence[float]]] = None,
    input_range: Optional[tuple[float, float]] = None,
) -> Optional[ValueRange]:
    """How model inputs map to [0, 1]: an explicit ``normalization=(mean, std)`` or ``input_range=(lo, hi)``,
    else the datamodule's ``normalize``/``denormalize``; ``None`` when nothing says.

    Example:
        >>> vr = value_range(None, input_range=(0, 255))
        >>> vr.to01(torch.tensor([0.0, 127.5, 300.0])).tolist(), vr.source
        ([0.0, 0.5, 1.0], 'input_range')
    """
    if normalization is not None and input_range is not None:
        raise ValueError("give normalization=(mean, std) or input_range=(low, high), not both")
    if normalization is not None:
        mean = torch.as_tensor(normalization[0], dtype=torch.float32)[None, :, None, None]
        std = torch.as_tensor(normalization[1], dtype=torch.float32)[None, :, None, None]
        return ValueRange(
            lambda x: (x * std.to(x) + mean.to(x)).clamp(0, 1),
            lambda x: (x - mean.to(x)) / std.to(x),
            "normalization=(mean, std)",
        )
    if input_range is not None:
        lo, hi = float(input_range[0]), float(input_range[1])
        if hi <= lo:
            raise ValueError(f"input_range must be (low, high) with high > low, got {input_range}")
        return ValueRange(lambda x: ((x - lo) / (hi - lo)).clamp(0, 1), lambda x: x * (hi - lo) + lo, "input_range")
    if (
        datamodule is not None
        and callable(getattr(datamodule, "denormalize", None))
        and callable(getattr(datamodule, "normalize", None))
    ):
        return ValueRange(lambda x: datamodule.denormalize(x).clamp(0, 1), datamodule.normalize, "the datamodule")
    return None


def minmax01(x: torch.Tensor) -> torch.Tensor:
    """Per-image min-max scaling to [0, 1] (display fallback when the value range is unknown).

    Example:
        >>> minmax01(torch.tensor([[[[2.0, 4.0]]]])).tolist()
        [[[[0.0, 1.0]]]]
    """
    flat = x.flatten(1)
    lo, hi = flat.amin(1)[:, None, None, None], flat.amax(1)[:, None, None, None]
    return ((x - lo) / (hi - lo).clamp_min(1e-12)).clamp(0, 1)


def explained_module(owner: nn.Module, module_attr: Optional[str], knob: str = "module_attr") -> nn.Module:
    """The module mapping images to logits: ``owner`` itself or its (dotted) attribute ``module_attr``.

    Example:
        >>> explained_module(nn.Sequential(nn.Linear(2, 2)), "0")
        Linear(in_features=2, out_features=2, bias=True)
    """
    if not module_attr:
        return owner
    module = owner
    for part in module_attr.split("."):
        if not hasattr(module, part):
            children = [n for n, _ in owner.named_children()]
            raise AttributeError(
                f"{type(owner).__name__} has no attribute {module_attr!r}; set {knob} to the submodule that maps "
                f"images to logits (its children: {children}), or leave it empty to explain the module's forward"
            )
        module = getattr(module, part)
    return module


def count_outputs(module: nn.Module, images: torch.Tensor, knob: str = "module_attr") -> int:
    """Run ``module`` (in eval mode, without gradients; modes restored) on ``images``: its number of logits.

    Raises:
        ValueError: when the output is not an ``(N, K)`` (or ``(N,)``) tensor, naming the argument that fixes it.

    Example:
        >>> count_outputs(nn.Flatten(), torch.zeros(2, 3, 1, 1))
        3
    """
    with torch.no_grad():
        modes = [(m, m.training) for m in module.modules()]
        try:
            module.eval()
            param = next(module.parameters(), None)
            x = images.to(param.device, param.dtype) if param is not None and param.is_floating_point() else images
            out = module(x)
        finally:
            for m, mode in modes:
                m.training = mode
    if not isinstance(out, torch.Tensor):
        raise ValueError(
            f"the model returned {type(out).__name__}, not a logits tensor (N, K); pass {knob}='<name>' naming the "
            "submodule of your LightningModule that maps images to logits"
        )
    if out.ndim == 1:
        return 1
    if out.ndim != 2:
        raise ValueError(
            f"the model must return logits of shape (N, K), got {tuple(out.shape)}; pass {knob}='<name>' naming the "
            "submodule that does"
        )
    return int(out.shape[1])


def adapt_binary(module: nn.Module, num_outputs: int) -> nn.Module:
    """A single-logit binary model wrapped as two logits (see :class:`TwoLogitBinary`); others unchanged."""
    return TwoLogitBinary(module) if num_outputs == 1 else module


def resolve_task(given: Optional[str], owners: Sequence[Any], targets: torch.Tensor, num_outputs: int) -> str:
    """The task: ``given``, else the first ``task`` attribute among ``owners`` (e.g. the LightningModule, then the
    datamodule), else :func:`infer_task` from the targets and the number of outputs.

    Example:
        >>> resolve_task(None, [object()], torch.tensor([0, 1]), 1)
        'binary'
    """
    if given is not None:
        check_task(given)
        task = given
    else:
        found = [getattr(o, "task", None) for o in owners]
        task = next((str(t) for t in found if t in TASKS), None) or infer_task(targets, num_outputs)
    if task == "multilabel" and targets.ndim != 2:
        raise ValueError("task='multilabel' needs (N, K) multi-hot targets; set task= to the right one")
    return task


def resolve_class_names(given: Optional[Sequence[str]], owners: Sequence[Any], num_classes: int) -> list[str]:
    """Class names, one priority order everywhere: ``given``, else the first owner's non-empty ``class_names``
    (callers pass the datamodule before the module: the data knows its classes, a module may carry placeholders),
    else the class indices as text.

    Raises:
        ValueError: when the names found do not match the model's number of classes.

    Example:
        >>> class _Data:
        ...     class_names = ["benign", "melanoma"]
        >>> resolve_class_names(None, [None, _Data()], 2), resolve_class_names(None, [], 3)
        (['benign', 'melanoma'], ['0', '1', '2'])
    """
    names = list(given) if given else None
    source = "class_names="
    if names is None:
        for owner in owners:
            found = getattr(owner, "class_names", None)
            if found:
                names, source = [str(n) for n in found], f"{type(owner).__name__}.class_names"
                break
    if names is None:
        return [str(k) for k in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(
            f"{len(names)} class names {names} (from {source}) for a model with {num_classes} classes; pass "
            "class_names= with one name per class"
        )
    return [str(n) for n in names]


@dataclass
class ModelSpec:
    """What a monitor cannot find out by itself about a model; every field is optional.

    In YAML a plain mapping: ``model: {module_attr: backbone, input_range: [0, 255]}``.

    Args:
        module_attr: attribute of the LightningModule that maps images to logits (None = its forward).
        task: ``"binary"``, ``"multiclass"`` or ``"multilabel"``; None = the module's / datamodule's ``task``,
            else inferred from the targets and the number of outputs.
        class_names: names for captions and reports; None = the datamodule's, else the module's, else indices.
        normalization: ``(mean, std)`` the model inputs were normalized with (when the datamodule does not say).
        input_range: ``(low, high)`` value range of raw model inputs, e.g. ``(0, 255)`` (or ``normalization``).

    Example:
        >>> ModelSpec(input_range=(0, 255)).value_range(None).source
        'input_range'
    """

    module_attr: Optional[str] = None
    task: Optional[Literal["binary", "multiclass", "multilabel"]] = None
    class_names: Optional[list[str]] = None
    normalization: Optional[tuple[list[float], list[float]]] = None
    input_range: Optional[tuple[float, float]] = None

    def __post_init__(self) -> None:
        if self.task is not None:
            check_task(self.task)
        self.value_range(None)  # validates normalization / input_range now, not at the first epoch

    def value_range(self, datamodule: Any) -> Optional[ValueRange]:
        """The inputs' value range: this spec's, else the datamodule's (None when nothing says)."""
        return value_range(datamodule, self.normalization, self.input_range)


@dataclass
class ModelContract:
    """Everything a monitor needs to know about the model, resolved once at fit start (:func:`resolve_contract`).

    Attributes:
        module_attr: where the logits come from (None = the LightningModule's forward).
        num_outputs: logits of the model (1 = a single-logit binary model, explained as two logits).
        task: the task name.
        class_names: one name per class (indices as text when nobody says).
        value_range: model inputs <-> [0, 1], or None when unknown (display falls back to min-max scaling).
    """

    module_attr: Optional[str]
    num_outputs: int
    task: str
    class_names: list[str] = field(default_factory=list)
    value_range: Optional[ValueRange] = None

    @property
    def num_classes(self) -> int:
        return 2 if self.num_outputs == 1 else self.num_outputs

    def module(self, owner: nn.Module) -> nn.Module:
        """The explained module of ``owner`` (adapted to two logits when it has one)."""
        return adapt_binary(explained_module(owner, self.module_attr), self.num_outputs)

    def to01(self, images: torch.Tensor) -> torch.Tensor:
        """Model inputs as images in [0, 1] (per-image min-max when the value range is unknown)."""
        return self.value_range.to01(images) if self.value_range is not None else minmax01(images)

    def name(self, k: int) -> str:
        """The name of class ``k`` (``"-"`` for ``-1``, no class)."""
        return class_name(k, self.class_names)


def resolve_contract(
    spec: Optional[ModelSpec],
    owner: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    datamodule: Any = None,
) -> ModelContract:
    """Resolve a :class:`ModelContract` from a spec, the LightningModule ``owner``, a few sample images and targets
    and the datamodule: the explained module, its number of outputs, the task, the class names and the value range.

    Raises:
        AttributeError / ValueError: what is wrong and which ``ModelSpec`` field fixes it.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
        >>> c = resolve_contract(None, net, torch.zeros(2, 3, 2, 2), torch.tensor([0, 2]))
        >>> c.task, c.class_names, c.num_classes
        ('multiclass', ['0', '1', '2'], 3)
    """
    spec = spec if spec is not None else ModelSpec()
    module = explained_module(owner, spec.module_attr, knob="ModelSpec.module_attr")
    outputs = count_outputs(module, images, knob="ModelSpec.module_attr")
    task = resolve_task(spec.task, [owner, datamodule], targets, outputs)
    classes = 2 if outputs == 1 else outputs
    names = resolve_class_names(spec.class_names, [datamodule, owner], classes)
    return ModelContract(spec.module_attr, outputs, task, names, spec.value_range(datamodule))


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
