"""Old import paths of moved names, kept for one release: attribute access forwarded to the new module.

The forwarding is lazy (PEP 562 module ``__getattr__``), so an old package never imports the layer that took its
names over and no import arrow runs back up; ``from lit_xai.artifacts import AlertRule`` still works.

Example:
    >>> import types
    >>> old = types.ModuleType("old")
    >>> old.__getattr__ = forward("old", {"sqrt": "math"})
    >>> from math import sqrt
    >>> old.sqrt is sqrt
    True
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["forward", "forward_all"]


def forward(old: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` giving each of ``names`` (name -> module that now holds it) from its new home."""

    def __getattr__(name: str) -> Any:
        if name in names:
            return getattr(importlib.import_module(names[name]), name)
        raise AttributeError(f"module {old!r} has no attribute {name!r}")

    return __getattr__


def forward_all(old: str, *new: str) -> Callable[[str], Any]:
    """A module ``__getattr__`` giving every attribute of the modules ``new`` (first that has it): module ``old``
    moved there, or was split into them."""

    def __getattr__(name: str) -> Any:
        for module in new:
            value = getattr(importlib.import_module(module), name, _MISSING)
            if value is not _MISSING:
                return value
        raise AttributeError(f"module {old!r} (moved to {', '.join(new)}) has no attribute {name!r}")

    return __getattr__


_MISSING = object()
