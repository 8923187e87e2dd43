"""The model contract every monitor resolves once at fit start (:func:`resolve_contract`): the explained module, its
number of outputs (single-logit binary models adapted to two logits), the task, the class names and the value range.

Nothing here imports Lightning; every function works on plain tensors, datasets and modules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

import torch
from torch import nn

from .tasks import TASKS, check_task, class_name, infer_task
from .values import ValueRange, minmax01, value_range

__all__ = [
    "ModelContract",
    "ModelSpec",
    "TwoLogitBinary",
    "adapt_binary",
    "count_outputs",
    "explained_module",
    "resolve_class_names",
    "resolve_contract",
    "resolve_task",
]


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
