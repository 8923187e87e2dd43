"""The one chart core: axis ranges, round ticks, tick labels and the series palette, for every chart lit_xai draws.

The PNG charts (:mod:`~lit_xai.visualization.charts`, logged to TensorBoard) and the report's SVG charts
(:mod:`lit_xai.report.charts`) both take their axes and colours from here, so a curve looks the same, on the same
ticks, wherever it is read. Plain Python (no torch, no numpy): the report stays torch-free.

Example:
    >>> ax = axis([0.03, 0.42])
    >>> ax.ticks, ax.labels
    ([0.1, 0.2, 0.3, 0.4], ['0.1', '0.2', '0.3', '0.4'])
    >>> epoch_axis([1, 2, 3, 4, 5, 6, 7, 8]).labels
    ['1', '2', '3', '4', '5', '6', '7', '8']
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Optional

__all__ = [
    "PALETTE",
    "PALETTE_HEX",
    "Axis",
    "axis",
    "data_range",
    "epoch_axis",
    "hex_colour",
    "nice_ticks",
    "tick_label",
    "tick_labels",
    "tint",
]

#: series colours in order (Okabe-Ito, colour-blind safe; its black left out: black is the axes' ink)
PALETTE_HEX: tuple[str, ...] = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442")
#: the same colours as RGB triples (PIL)
PALETTE: tuple[tuple[int, int, int], ...] = tuple(
    (int(h[1:3], 16), int(h[3:5], 16), int(h[5:7], 16)) for h in PALETTE_HEX
)
#: colours of reference lines (thresholds): greys, apart from every series colour
REFERENCE_RGB: tuple[tuple[int, int, int], ...] = ((70, 70, 70), (150, 150, 150))
#: the colour of alert markers
ALERT_RGB: tuple[int, int, int] = (200, 0, 0)


def hex_colour(rgb: Sequence[int]) -> str:
    """``(r, g, b)`` as ``#RRGGBB``.

    >>> hex_colour((0, 114, 178))
    '#0072B2'
    """
    return "#" + "".join(f"{int(c):02X}" for c in rgb[:3])


def tint(rgb: Sequence[int], strength: float = 0.28) -> tuple[int, int, int]:
    """A light version of ``rgb`` (``strength`` of the colour over white): the colour of an interval band."""
    return tuple(int((1 - strength) * 255 + strength * c) for c in rgb[:3])  # type: ignore[return-value]


def _finite(values: Iterable[float]) -> list[float]:
    out = []
    for v in values:
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f):
            out.append(f)
    return out


def nice_ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    """Round tick positions (1, 2, 2.5, 5 x 10^k steps) inside ``[lo, hi]``, about ``target`` of them.

    >>> nice_ticks(0.0, 1.0)
    [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    """
    if not math.isfinite(lo) or not math.isfinite(hi):
        return [0.0]
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, target)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    k = 0
    while first + k * step <= hi + 1e-9 * step:
        t = round(first + k * step, 12)  # no float dust (0.30000000000000004)
        ticks.append(0.0 if abs(t) < step * 1e-9 else float(t))
        k += 1
    return ticks


def tick_label(value: float, ticks: Sequence[float]) -> str:
    """``value`` written with as many decimals as the tick step needs (all ticks of an axis alike).

    >>> tick_label(0.25, [0.0, 0.25, 0.5]), tick_label(2.0, [0.0, 2.0, 4.0]), tick_label(3e5, [0.0, 3e5])
    ('0.25', '2', '3e+05')
    """
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else abs(value) or 1.0
    if max(abs(t) for t in ticks) >= 1e5 or step < 1e-3:
        return f"{value:.2g}"
    decimals = max(0, int(-math.floor(math.log10(step) + 1e-9)))
    if decimals == 0 and not float(step).is_integer():
        decimals = 1
    return f"{value:.{decimals + (1 if round(step * 10**decimals, 9) % 1 else 0)}f}"


def tick_labels(ticks: Sequence[float]) -> list[str]:
    """Every tick's label (:func:`tick_label`)."""
    return [tick_label(t, ticks) for t in ticks]


def data_range(
    values: Iterable[float], *, include: Iterable[float] = (), ylim: Optional[tuple[float, float]] = None,
    pad: float = 0.05,
) -> tuple[float, float]:
    """The value range an axis shows: every finite value and every ``include`` (thresholds, interval bounds; nothing
    is clipped as an outlier), widened by ``pad`` of the span on each side; at least ``ylim`` when given. A
    constant series gets a band of 10 % of its value around it (0.5 at 0); no finite value gives ``(0, 1)``.

    >>> data_range([0.2, 0.4], pad=0.0), data_range([2.0]), data_range([float("nan")])
    ((0.2, 0.4), (1.8, 2.2), (0.0, 1.0))
    """
    finite = _finite(values) + _finite(include)
    if not finite:
        return 0.0, 1.0
    if ylim is not None:
        finite += _finite(ylim)
    lo, hi = min(finite), max(finite)
    if hi <= lo:
        width = abs(lo) * 0.1 or 0.5
        return lo - width, hi + width
    if ylim is not None:
        return min(lo, ylim[0]), max(hi, ylim[1])
    margin = (hi - lo) * pad
    return lo - margin, hi + margin


@dataclass(frozen=True)
class Axis:
    """One axis: its range, tick positions and tick labels."""

    lo: float
    hi: float
    ticks: list[float]
    labels: list[str]

    def fraction(self, value: float) -> float:
        """Where ``value`` lies on the axis, 0 at ``lo`` and 1 at ``hi``."""
        return (value - self.lo) / (self.hi - self.lo)


def axis(
    values: Iterable[float], *, include: Iterable[float] = (), ylim: Optional[tuple[float, float]] = None,
    pad: float = 0.05, target: int = 5,
) -> Axis:
    """A value axis (:func:`data_range`, :func:`nice_ticks`, :func:`tick_labels`), widened to hold its outer ticks."""
    lo, hi = data_range(values, include=include, ylim=ylim, pad=pad)
    ticks = nice_ticks(lo, hi, target)
    lo, hi = min(lo, ticks[0]), max(hi, ticks[-1])
    return Axis(lo, hi, ticks, tick_labels(ticks))


def epoch_axis(values: Iterable[float], *, include: Iterable[float] = (), target: int = 8) -> Axis:
    """The x axis of every lit_xai chart, epochs done: no padding, a single value gets +-0.5 around it, and whole
    values (epochs) get whole ticks only: every one of them up to ``target`` + 2, else round steps.

    >>> epoch_axis([1, 8]).ticks, epoch_axis([3]).ticks
    ([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], [3.0])
    """
    finite = _finite(values) + _finite(include)
    if not finite:
        return Axis(0.0, 1.0, [0.0, 1.0], ["0", "1"])
    lo, hi = min(finite), max(finite)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    ticks = nice_ticks(lo, hi, target)
    if all(float(v).is_integer() for v in finite):
        whole = [t for t in ticks if float(t).is_integer()]
        every = [float(v) for v in range(math.ceil(lo), math.floor(hi) + 1)]
        ticks = every if len(every) <= target + 2 else whole if len(whole) >= 2 else every or ticks
    return Axis(lo, hi, ticks, tick_labels(ticks))
