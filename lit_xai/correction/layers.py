"""Resolve a layer of a model by its dotted name (as in ``model.named_modules()``), with errors that list the names.

Example:
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    >>> resolve_layer(net, "0")
    Conv2d(3, 4, kernel_size=(3, 3), stride=(1, 1))
"""

from __future__ import annotations

from torch import nn

__all__ = ["layer_names", "resolve_layer"]


def layer_names(model: nn.Module) -> list[str]:
    """The dotted names of every submodule of ``model`` (``named_modules`` order, the root excluded)."""
    return [name for name, _ in model.named_modules() if name]


def resolve_layer(model: nn.Module, name: str) -> nn.Module:
    """The submodule ``name`` of ``model``.

    Raises:
        ValueError: when there is no such submodule; the message lists the valid names (the first 40, then a count).
    """
    modules = dict(model.named_modules())
    if name and name in modules:
        return modules[name]
    names = layer_names(model)
    shown = ", ".join(names[:40]) + (f", ... ({len(names) - 40} more)" if len(names) > 40 else "")
    raise ValueError(
        f"{type(model).__name__} has no layer {name!r}; pass one of the names of model.named_modules(): {shown}"
    )
