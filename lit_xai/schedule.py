"""The one schedule rule of the monitors (measurements, pictures, discovery): pure, below callbacks and shortcuts."""

from __future__ import annotations

from typing import Literal, Optional

__all__ = ["Schedule", "Spacing", "due"]

#: how due epochs are spaced: ``"even"`` every N-th epoch; ``"doubling"`` the N-th, 2N-th, 4N-th, 8N-th, ... epoch
#: (the gaps double: dense early, while the model and its explanations change fast, sparse later)
Spacing = Literal["even", "doubling"]


def due(epoch: int, every_n_epochs: int, max_epochs: Optional[int] = None, spacing: Spacing = "even") -> bool:
    """Every ``every_n_epochs``-th epoch (``spacing="doubling"``: the N-th, 2N-th, 4N-th, ... epoch) and the last
    one: the one schedule rule of the monitors (measurements, pictures, discovery).

    Example:
        >>> [e for e in range(5) if due(e, 2, max_epochs=5)]
        [1, 3, 4]
        >>> [e for e in range(20) if due(e, 1, max_epochs=20, spacing="doubling")]
        [0, 1, 3, 7, 15, 19]
    """
    if spacing not in ("even", "doubling"):
        raise ValueError(f"spacing must be 'even' or 'doubling', got {spacing!r}")
    last = max_epochs is not None and max_epochs > 0 and epoch + 1 >= max_epochs
    every = max(1, every_n_epochs)
    if last or (epoch + 1) % every != 0:
        return last
    if spacing == "even":
        return True
    k = (epoch + 1) // every
    return k & (k - 1) == 0  # a power of two


class Schedule:
    """When a monitor measures, as one value for its ``every_n_epochs`` argument (YAML: ``class_path``).

    Args:
        every_n_epochs: the period N (>= 1).
        spacing: ``"even"`` (every N-th epoch) or ``"doubling"`` (the N-th, 2N-th, 4N-th, ... epoch), the last
            epoch always (see :func:`due`).

    Example:
        >>> s = Schedule(1, "doubling")
        >>> [e for e in range(8) if s.due(e, max_epochs=8)]
        [0, 1, 3, 7]
    """

    def __init__(self, every_n_epochs: int = 1, spacing: Spacing = "doubling") -> None:
        if every_n_epochs < 1:
            raise ValueError(f"Schedule(every_n_epochs=...) must be >= 1, got {every_n_epochs}")
        if spacing not in ("even", "doubling"):
            raise ValueError(f"Schedule(spacing=...) must be 'even' or 'doubling', got {spacing!r}")
        self.every_n_epochs = every_n_epochs
        self.spacing = spacing

    def due(self, epoch: int, max_epochs: Optional[int] = None) -> bool:
        return due(epoch, self.every_n_epochs, max_epochs, self.spacing)

    def __repr__(self) -> str:
        return f"Schedule(every_n_epochs={self.every_n_epochs}, spacing={self.spacing!r})"
