"""The one schedule rule of the monitors (measurements, pictures, discovery): pure, below callbacks and shortcuts."""

from __future__ import annotations

from typing import Optional

__all__ = ["due"]


def due(epoch: int, every_n_epochs: int, max_epochs: Optional[int] = None) -> bool:
    """Every ``every_n_epochs``-th epoch and the last one: the one schedule rule of the monitors (measurements,
    pictures, discovery).

    Example:
        >>> [e for e in range(5) if due(e, 2, max_epochs=5)]
        [1, 3, 4]
    """
    last = max_epochs is not None and max_epochs > 0 and epoch + 1 >= max_epochs
    return last or (epoch + 1) % max(1, every_n_epochs) == 0
