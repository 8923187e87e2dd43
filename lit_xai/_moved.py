"""Old import paths of moved names and old argument names, kept for one release: attribute access forwarded to the
new module (:func:`forward`, :func:`forward_all`); an old argument read with a :class:`LitXaiDeprecationWarning` that
names the new spelling (:func:`renamed_argument`).

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
import warnings
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["LitXaiDeprecationWarning", "forward", "forward_all", "renamed_argument"]


class LitXaiDeprecationWarning(DeprecationWarning):
    """An old lit_xai spelling (argument, value) that still works for one release; the message names the new one."""


# shown once per place, also when the call does not come from __main__ (a LightningCLI config), as Lightning does for
# its LightningDeprecationWarning; pytest's and the user's own filters still apply on top
warnings.filterwarnings("default", category=LitXaiDeprecationWarning)


def renamed_argument(owner: str, old: str, new: str, stacklevel: int = 3) -> None:
    """Warn that ``owner(old=...)`` (or the command ``owner``'s option ``--old``) is deprecated in favour of ``new``
    (a spelling a user can copy).

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     renamed_argument("Thing", "n", "Thing(count=...)")
        >>> str(caught[0].message)
        'Thing(n=...) is deprecated and will be removed in the next release; use Thing(count=...)'
    """
    spelled = f"{owner} {old}" if old.startswith("--") else f"{owner}({old}=...)"  # a command line option
    warnings.warn(
        f"{spelled} is deprecated and will be removed in the next release; use {new}",
        LitXaiDeprecationWarning,
        stacklevel=stacklevel,
    )


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
