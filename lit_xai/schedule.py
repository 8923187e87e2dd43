"""The one schedule rule of the monitors (measurements, pictures, discovery): pure, below callbacks and shortcuts."""

from __future__ import annotations

from typing import Literal, Optional

__all__ = ["OverBudget", "Schedule", "Spacing", "due", "over_budget"]

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


class OverBudget(str):
    """A reason not to measure that is the time budget's (:func:`over_budget`): a ``str``, the console's words, whose
    type tells a postponement from the schedule's other reasons."""

    __slots__ = ()


def over_budget(
    budget: Optional[float], spent: float, training: float, expected: Optional[float]
) -> Optional[OverBudget]:
    """Whether a due measurement would take a monitor over its time ``budget``: ``None`` = measure, else why not.

    ``budget`` is the largest share of the training time the monitor may add (0.1: 10 %); ``spent`` its own seconds
    so far, ``training`` the fit's seconds so far without the monitors', ``expected`` what the next measurement will
    take (the seconds of the monitor's last one of its kind; ``None`` before the first, which is always made: its
    cost is unknown until then).

    Example:
        >>> over_budget(0.1, spent=1.0, training=30.0, expected=1.5) is None  # 2.5 s <= 3.0 s
        True
        >>> over_budget(0.1, spent=1.0, training=20.0, expected=1.5)
        'over budget: 1.0 s so far + 1.5 s would be 12% of 20.0 s of training (budget 10%)'
        >>> over_budget(None, 9.0, 1.0, 9.0) is None, over_budget(0.1, 0.0, 0.0, None) is None
        (True, True)
    """
    if budget is None or expected is None:
        return None
    if spent + expected <= budget * training:
        return None
    share = (spent + expected) / training if training > 0 else float("inf")
    return OverBudget(
        f"over budget: {spent:.1f} s so far + {expected:.1f} s would be {share:.0%} of {training:.1f} s of training "
        f"(budget {budget:.0%})"
    )


class Schedule:
    """When a monitor measures, as one value for its ``every_n_epochs`` argument (YAML: ``class_path``).

    Args:
        every_n_epochs: the period N (>= 1).
        spacing: ``"even"`` (every N-th epoch) or ``"doubling"`` (the N-th, 2N-th, 4N-th, ... epoch), the last
            epoch always (see :func:`due`).
        time_budget: the largest share of the training time the monitor may add, e.g. ``0.05`` (None: no limit). A due
            epoch whose measurement would take the monitor's own time (its setup at fit start, measuring, pictures,
            logging) over ``time_budget`` x the fit's time without the monitors is postponed, and made at the first
            later epoch where it fits (see :func:`over_budget`); the console says so. The first measurement is
            always made (its cost is unknown until then); the next one is expected to cost what the monitor's last
            one of the same kind did (the ShortcutMonitor's discovery epochs and the ExplanationMonitor's picture
            epochs are kinds of their own), and the first of a kind its work (``MonitorBase.cost_units``: the
            ShortcutMonitor's LRP maps) times the most seconds per unit so far. Meant for machines whose cores are
            busy, and for large models or pools: a budget trades early evidence for time (a shortcut alert needs
            measured epochs). Not the ShortcutMonitor's ``budget`` (its pool sizes).

    Example:
        >>> s = Schedule(1, "doubling")
        >>> [e for e in range(8) if s.due(e, max_epochs=8)]
        [0, 1, 3, 7]
        >>> Schedule(1, "doubling", time_budget=0.05)
        Schedule(every_n_epochs=1, spacing='doubling', time_budget=0.05)
    """

    def __init__(
        self, every_n_epochs: int = 1, spacing: Spacing = "doubling", time_budget: Optional[float] = None
    ) -> None:
        if every_n_epochs < 1:
            raise ValueError(f"Schedule(every_n_epochs=...) must be >= 1, got {every_n_epochs}")
        if spacing not in ("even", "doubling"):
            raise ValueError(f"Schedule(spacing=...) must be 'even' or 'doubling', got {spacing!r}")
        if time_budget is not None and not 0.0 < time_budget <= 1.0:
            raise ValueError(
                f"Schedule(time_budget=...) is a share of the training time, in (0, 1] (0.05: 5 %), got {time_budget!r}"
            )
        self.every_n_epochs = every_n_epochs
        self.spacing = spacing
        self.time_budget = time_budget

    def due(self, epoch: int, max_epochs: Optional[int] = None) -> bool:
        return due(epoch, self.every_n_epochs, max_epochs, self.spacing)

    def __repr__(self) -> str:
        budget = "" if self.time_budget is None else f", time_budget={self.time_budget}"
        return f"Schedule(every_n_epochs={self.every_n_epochs}, spacing={self.spacing!r}{budget})"
