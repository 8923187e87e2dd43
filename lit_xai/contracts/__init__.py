"""Contracts shared by models, data, explainers and callbacks: task names, logits -> probabilities, reading an item
or a batch (tuple, list or dict), finding a split's dataset, adapting single-logit binary models, the value range
of model inputs, and the :class:`ModelContract` every monitor resolves once at fit start.

Split by job: :mod:`.tasks` (task names, probabilities), :mod:`.data` (items, batches, a split's dataset, probes),
:mod:`.values` (the inputs' value range), :mod:`.model` (the model contract). Imports nothing of lit_xai, nor Lightning.

Example:
    >>> import torch
    >>> check_task("binary", 2)
    >>> probabilities(torch.tensor([[0.0, 0.0]]), "multiclass")
    tensor([[0.5000, 0.5000]])
    >>> read_item((torch.zeros(3, 4, 4), 1))["target"]
    1
"""

from .data import IMAGE_KEYS, TARGET_KEYS, Probes, read_item, split_batch, split_dataset
from .model import (
    ModelContract,
    ModelSpec,
    TwoLogitBinary,
    adapt_binary,
    count_outputs,
    explained_module,
    resolve_class_names,
    resolve_contract,
    resolve_task,
)
from .tasks import TASKS, check_logits, check_task, class_name, infer_task, probabilities, stand_in_labels
from .values import ValueRange, minmax01, value_range

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
