"""The verdict of a shortcut watch in one sentence, and the effect series behind it (pure; no Lightning).

Reads what :class:`~lit_xai.callbacks.ShortcutMonitor` keeps: its history entries (one per measured epoch and
watched (artifact, class), with the sham-controlled ``counterfactual`` (insertion) and ``removal`` tests of
:func:`~lit_xai.shortcuts.measure_reliance`) and its alerts. The verdict picture
(:func:`lit_xai.visualization.verdict_picture`) draws the series under the sentence.

Example:
    >>> tests = [{"effect": v, "interval": [v - 0.05, v + 0.05]} for v in (0.1, 0.4)]
    >>> history = [{"epoch": e, "artifact": "ring", "class": "melanoma", "counterfactual": t}
    ...            for e, t in enumerate(tests)]
    >>> series = effect_series(history, "ring", "melanoma")
    >>> series.epochs, series.effects["insertion"]
    ([0, 1], [0.1, 0.4])
    >>> verdict_text(series, "ring", "melanoma", alert_epoch=1, threshold=0.15)[0]
    "SHORTCUT after 2 epochs: the model relies on the ring for 'melanoma'"

Epochs are counted as *epochs done* (Lightning's epoch ``e`` is ``e + 1`` done), the x axis of the verdict's
chart and of every lit_xai chart, so the words and the chart's alert marker name the same number.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

__all__ = ["EffectSeries", "effect_series", "lead_key", "verdict_text"]

#: evidence keys of the causal tests and the names the verdict uses for them
_TESTS = (("counterfactual", "insertion"), ("removal", "removal"))


@dataclass
class EffectSeries:
    """Per measured epoch, the sham-corrected effect of each causal test and its interval (NaN: not run)."""

    epochs: list[int] = field(default_factory=list)
    effects: dict[str, list[float]] = field(default_factory=dict)
    low: dict[str, list[float]] = field(default_factory=dict)
    high: dict[str, list[float]] = field(default_factory=dict)

    @property
    def intervals(self) -> dict[str, tuple[list[float], list[float]]]:
        return {name: (self.low[name], self.high[name]) for name in self.effects}


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def effect_series(history: Sequence[dict[str, Any]], artifact: str, cls: str) -> EffectSeries:
    """The effects of ``artifact`` on ``cls`` over the measured epochs (tests that never ran are left out)."""
    rows = sorted((h for h in history if h.get("artifact") == artifact and h.get("class") == cls), key=_epoch)
    series = EffectSeries(epochs=[int(h["epoch"]) for h in rows])
    for key, name in _TESTS:
        tests = [h.get(key) if isinstance(h.get(key), dict) else {} for h in rows]
        if not any("effect" in t for t in tests):
            continue
        series.effects[name] = [_number(t.get("effect")) for t in tests]
        series.low[name] = [_number((t.get("interval") or [math.nan, math.nan])[0]) for t in tests]
        series.high[name] = [_number((t.get("interval") or [math.nan, math.nan])[1]) for t in tests]
    return series


def _epoch(entry: dict[str, Any]) -> int:
    return int(entry.get("epoch", 0))


def lead_key(history: Sequence[dict[str, Any]], alerts: Sequence[dict[str, Any]]) -> Optional[tuple[str, str]]:
    """The (artifact, class) the verdict is about: the first alert's, else the one with the largest latest lower
    interval bound of a causal test; None when nothing with a causal test was measured."""
    for alert in alerts:
        if alert.get("artifact") != "roi":
            return str(alert["artifact"]), str(alert["class"])
    best: Optional[tuple[float, tuple[str, str]]] = None
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for h in sorted(history, key=_epoch):
        if any(isinstance(h.get(key), dict) for key, _ in _TESTS):
            latest[(str(h["artifact"]), str(h["class"]))] = h
    for key, h in latest.items():
        tests = [h[k] for k, _ in _TESTS if isinstance(h.get(k), dict)]
        lows = [_number((t.get("interval") or [math.nan])[0]) for t in tests]
        low = max((v for v in lows if not math.isnan(v)), default=-math.inf)
        if best is None or low > best[0]:
            best = (low, key)
    return None if best is None else best[1]


def verdict_text(
    series: EffectSeries,
    artifact: str,
    cls: str,
    alert_epoch: Optional[int],
    threshold: float,
    patience: int = 2,
    others: Sequence[str] = (),
) -> tuple[str, str]:
    """The verdict as ``(headline, detail)``: a shortcut after ``alert_epoch + 1`` epochs done, a rule met but not yet
    ``patience`` times (``WATCH``), or no alert; the detail gives the latest strongest causal evidence.
    """
    strongest = _strongest(series)
    if alert_epoch is not None:
        headline = f"SHORTCUT after {_done(alert_epoch)}: the model relies on the {artifact} for '{cls}'"
    elif strongest is not None and strongest[3] > threshold:
        headline = f"WATCH: the {artifact} drives '{cls}' after {_done(strongest[1])}"
    else:
        headline = f"No shortcut alert for the {artifact} and '{cls}'"
    if strongest is None:
        detail = f"no causal test of the {artifact} for '{cls}' has run yet"
    else:
        name, epoch, effect, low, high = strongest
        edit = f"inserting the {artifact} raises" if name == "insertion" else f"removing the {artifact} lowers"
        detail = (
            f"{edit} P({cls}) by {effect:.2f} beyond a sham edit (after {_done(epoch)}, "
            f"95 % CI {low:.2f} to {high:.2f})"
        )
    if others:
        detail += "; also alerted: " + "; ".join(others)
    return headline, detail


def _done(epoch: int) -> str:
    """Lightning's 0-based ``epoch`` as epochs done: ``"1 epoch"``, ``"2 epochs"``."""
    done = int(epoch) + 1
    return f"{done} epoch" + ("" if done == 1 else "s")


def _strongest(series: EffectSeries) -> Optional[tuple[str, int, float, float, float]]:
    """(test, epoch, effect, low, high) of the latest epoch's test with the largest lower bound."""
    if not series.epochs:
        return None
    for i in reversed(range(len(series.epochs))):
        found = [
            (series.low[name][i], name)
            for name in series.effects
            if not math.isnan(series.effects[name][i]) and not math.isnan(series.low[name][i])
        ]
        if found:
            _, name = max(found)
            return name, series.epochs[i], series.effects[name][i], series.low[name][i], series.high[name][i]
    return None
