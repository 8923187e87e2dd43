"""Did the correction remove the shortcut? Before (an uncorrected run) against after (this run), from the records the
monitors write: ``shortcut_report.json`` (the sham-controlled insertion / removal effects with their intervals, the
alerts) and the validation accuracy.

Pure apart from reading a run folder (:func:`read_run_record`); :class:`lit_xai.callbacks.ShortcutCorrection` prints
:func:`outcome_text` when fit ends and writes :func:`correction_outcome`'s record as ``correction.json``, which the
run report shows (:mod:`lit_xai.report`).

Example:
    >>> before = {"alerts": [{"artifact": "ring", "class": "melanoma", "epoch": 1}], "history": [
    ...     {"epoch": 7, "artifact": "ring", "class": "melanoma",
    ...      "counterfactual": {"effect": 0.95, "interval": [0.94, 0.95]}}]}
    >>> after = {"alerts": [], "history": [{"epoch": 7, "artifact": "ring", "class": "melanoma",
    ...     "counterfactual": {"effect": -0.02, "interval": [-0.04, 0.0]}}]}
    >>> out = correction_outcome("A-ClArC", "ring", after, 0.978, before, 0.983, "runs/demo/version_0")
    >>> out["gone"], out["classes"]["melanoma"]["after"]["effect"], round(out["accuracy_cost"], 3)
    (True, -0.02, 0.005)
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional

__all__ = ["correction_outcome", "outcome_text", "read_run_record"]

SHORTCUT_REPORT = "shortcut_report.json"


def _runs(folder: Path) -> list[Path]:
    """``folder`` itself when it holds a report, else its ``version_*`` children that do, newest first."""
    if (folder / SHORTCUT_REPORT).exists():
        return [folder]
    found = [p for p in folder.glob("version_*") if (p / SHORTCUT_REPORT).exists()]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def read_run_record(folder: str | Path) -> tuple[Path, dict[str, Any], Optional[float]]:
    """An earlier run's shortcut record and last validation accuracy.

    Args:
        folder: a run folder (``lightning_logs/demo/version_0``) or the folder of its versions (``lightning_logs/demo``:
            the newest version that holds a ``shortcut_report.json``).

    Returns:
        ``(run folder, shortcut report, val/acc of the last epoch or None)``.

    Raises:
        FileNotFoundError: when no run there holds a ``shortcut_report.json``.
    """
    runs = _runs(Path(folder))
    if not runs:
        raise FileNotFoundError(
            f"no {SHORTCUT_REPORT} in {folder} or its version_* folders: train the uncorrected run first (e.g. "
            "python train.py --config configs/demo.yaml), or pass the folder of a run with a ShortcutMonitor"
        )
    run = runs[0]
    report = json.loads((run / SHORTCUT_REPORT).read_text())
    accuracy = None
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        events = EventAccumulator(str(run), size_guidance={"scalars": 0})
        events.Reload()
        if "val/acc" in events.Tags().get("scalars", []):
            accuracy = float(events.Scalars("val/acc")[-1].value)
    except Exception:  # noqa: BLE001 - no readable events: the comparison goes on without the accuracy
        accuracy = None
    return run, report, accuracy


def _last(report: dict[str, Any], artifact: str) -> dict[str, dict[str, Any]]:
    """The last measured insertion / removal effect of ``artifact`` per class."""
    out: dict[str, dict[str, Any]] = {}
    for entry in report.get("history") or []:
        if entry.get("artifact") != artifact:
            continue
        for key, name in (("counterfactual", "insertion"), ("removal", "removal")):
            test = entry.get(key)
            if isinstance(test, dict) and isinstance(test.get("effect"), (int, float)):
                interval = test.get("interval") or [math.nan, math.nan]
                out.setdefault(entry["class"], {})[name] = {
                    "epoch": entry.get("epoch"),
                    "effect": test["effect"],
                    "low": interval[0],
                    "high": interval[1],
                }
    return out


def correction_outcome(
    method: str,
    artifact: str,
    after: dict[str, Any],
    after_accuracy: Optional[float],
    before: Optional[dict[str, Any]] = None,
    before_accuracy: Optional[float] = None,
    before_run: Optional[str] = None,
) -> dict[str, Any]:
    """The record of a correction: per class the last insertion effect before and after, whether an alert remains
    (``gone`` = the uncorrected run alerted on ``artifact`` and this one does not), and the accuracy cost."""
    alerted = {a.get("class") for a in (after.get("alerts") or []) if a.get("artifact") == artifact}
    was = {a.get("class") for a in ((before or {}).get("alerts") or []) if a.get("artifact") == artifact}
    now, then = _last(after, artifact), _last(before or {}, artifact)
    classes = {}
    for cls in sorted(set(now) | set(then) | alerted | was):
        classes[cls] = {
            "before": then.get(cls, {}).get("insertion"),
            "after": now.get(cls, {}).get("insertion"),
            "alert_before": cls in was if before is not None else None,
            "alert_after": cls in alerted,
        }
    cost = None
    if before_accuracy is not None and after_accuracy is not None:
        cost = before_accuracy - after_accuracy
    return {
        "method": method,
        "artifact": artifact,
        "before_run": before_run,
        "classes": classes,
        "gone": (not alerted) and (bool(was) if before is not None else None),
        "remains": sorted(alerted),
        "accuracy_before": before_accuracy,
        "accuracy_after": after_accuracy,
        "accuracy_cost": cost,
    }


def _effect(value: Optional[dict[str, Any]]) -> str:
    if not value:
        return "not measured"
    return f"{value['effect']:+.2f} (95 % CI {value['low']:+.2f} to {value['high']:+.2f}, epoch {value['epoch']})"


def outcome_text(outcome: dict[str, Any]) -> str:
    """The correction's result in a few lines for the console and the report."""
    artifact, method = outcome["artifact"], outcome["method"]
    if outcome["remains"]:
        head = f"the {artifact} shortcut REMAINS for {', '.join(repr(c) for c in outcome['remains'])} after {method}"
    elif outcome["gone"]:
        head = f"the {artifact} shortcut is GONE after {method}: no alert (the uncorrected run alerted)"
    elif outcome["before_run"] is None:
        head = f"no {artifact} shortcut alert after {method} (no uncorrected run given to compare: baseline=...)"
    else:
        head = f"no {artifact} shortcut alert after {method}, and the uncorrected run had none either"
    lines = [head]
    for cls, row in outcome["classes"].items():
        before = f"{_effect(row['before'])} -> " if outcome["before_run"] is not None else ""
        lines.append(f"  insertion effect on '{cls}': {before}{_effect(row['after'])}")
    if outcome["accuracy_after"] is not None:
        if outcome["accuracy_cost"] is not None:
            lines.append(
                f"  val accuracy: {outcome['accuracy_before']:.3f} -> {outcome['accuracy_after']:.3f} "
                f"(cost {100 * outcome['accuracy_cost']:+.1f} points)"
            )
        else:
            lines.append(f"  val accuracy: {outcome['accuracy_after']:.3f}")
    if outcome["before_run"] is not None:
        lines.append(f"  uncorrected run: {outcome['before_run']}")
    return "\n".join(lines)
