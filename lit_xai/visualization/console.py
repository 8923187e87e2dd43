"""What the monitors print on the console, as plain text: an alert as one readable block between progress-bar lines,
and the end-of-fit summary (per class: shortcut / clean / not judged, the top evidence, where to look next).

Pure functions of the monitor's records (``alerts``, ``history`` as in ``shortcut_report.json``); the callback only
prints what they return.

Example:
    >>> test = {"effect": 0.61, "interval": [0.58, 0.65], "n": 64, "sham_shift": -0.01, "split": "val"}
    >>> alert = {"artifact": "ring", "class": "melanoma", "epoch": 1, "evidence": {"counterfactual": test}}
    >>> print(alert_block(alert))  # doctest: +NORMALIZE_WHITESPACE
    ------------------------------------------------------------------------------------------------
    SHORTCUT ALERT at epoch 1: the model relies on the ring for 'melanoma'
      insertion  +0.61 (95 % CI +0.58 to +0.65)  the ring drawn into 64 clean val images of other classes; sham -0.01
    ------------------------------------------------------------------------------------------------
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Optional

__all__ = ["alert_block", "evidence_line", "fit_summary"]

RULE = "-" * 96


def _ci(test: dict[str, Any], confidence: float) -> str:
    low, high = (test.get("interval") or [math.nan, math.nan])[:2]
    return f"{test.get('effect', math.nan):+.2f} ({100 * confidence:.0f} % CI {low:+.2f} to {high:+.2f})"


def evidence_line(key: str, test: dict[str, Any], artifact: str, cls: str, confidence: float = 0.95) -> str:
    """One causal test in one line: effect with its interval, then what was done to which images, and the sham."""
    where = test.get("split", "val")
    if key == "counterfactual":
        name, what = "insertion", f"the {artifact} drawn into {test.get('n', 0)} clean {where} images of other classes"
    else:
        name, what = "removal", f"the {artifact} inpainted away on {test.get('n', 0)} '{cls}' {where} images"
    sham = test.get("sham_shift")
    sham_text = f"; sham {sham:+.2f}" if isinstance(sham, (int, float)) and math.isfinite(sham) else ""
    return f"{name:<10} {_ci(test, test.get('confidence', confidence))}  {what}{sham_text}"


def _tests(evidence: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(key, evidence[key]) for key in ("counterfactual", "removal") if isinstance(evidence.get(key), dict)]


def alert_block(alert: dict[str, Any], where: Optional[str] = None, confidence: float = 0.95) -> str:
    """An alert as a block of short lines: the verdict with class, artifact and epoch, each causal test's evidence
    with its interval, the supporting evidence, and where the details are (``where``)."""
    artifact, cls, evidence = alert["artifact"], alert["class"], alert.get("evidence") or {}
    lines = [RULE, f"SHORTCUT ALERT at epoch {alert['epoch']}: the model relies on the {artifact} for '{cls}'"]
    tests = _tests(evidence)
    lines += [f"  {evidence_line(key, test, artifact, cls, confidence)}" for key, test in tests]
    if not tests and alert.get("message"):  # e.g. relevance outside the region of interest: the rule's own words
        lines[1] = f"SHORTCUT ALERT at epoch {alert['epoch']} for '{cls}'"
        lines += [f"  {line}" for line in str(alert["message"]).splitlines()]
    ratio = evidence.get("relevance_ratio")
    if isinstance(ratio, (int, float)) and math.isfinite(ratio):
        lines.append(f"  {'supporting':<10} LRP puts {ratio:.1f}x the area-proportional relevance on the {artifact}")
    if where:
        lines.append(f"  {'details':<10} {where}")
    lines.append(RULE)
    return "\n".join(lines)


def fit_summary(
    class_names: Sequence[str],
    history: Sequence[dict[str, Any]],
    alerts: Sequence[dict[str, Any]],
    report: Optional[str] = None,
    logdir: Optional[str] = None,
    confidence: float = 0.95,
) -> str:
    """The end-of-fit summary: one line per class (SHORTCUT with the artifact, epoch and latest evidence; clean with
    the largest effect measured; not judged when no watched artifact could be tested on it), then the report's path
    and the exact TensorBoard command."""
    width = max([len(str(c)) for c in class_names] + [6])
    measured = [h for h in history if _tests(h)]
    lines = [RULE, "lit_xai: what the model relies on (ShortcutMonitor, sham-controlled tests)"]
    for cls in class_names:
        entries = [h for h in measured if h.get("class") == cls]
        fired = [a for a in alerts if a.get("class") == cls]
        if fired:
            first = fired[0]
            latest = [h for h in entries if h.get("artifact") == first["artifact"]] or [first["evidence"]]
            last = latest[-1]
            tests = "; ".join(
                f"{'insertion' if key == 'counterfactual' else 'removal'} {_ci(test, confidence)}"
                for key, test in _tests(last)
            ) or str(first.get("message", "")).splitlines()[0]
            epoch = f" at epoch {last['epoch']}" if "epoch" in last else ""
            lines.append(
                f"  {cls:<{width}}  SHORTCUT    the {first['artifact']} since epoch {first['epoch']}: {tests}{epoch}"
            )
        elif entries:
            best = max(
                ((h, key, t) for h in entries for key, t in _tests(h)),
                key=lambda item: item[2].get("effect", -math.inf) if math.isfinite(item[2].get("effect", math.nan))
                else -math.inf,
            )
            h, key, test = best
            name = "insertion" if key == "counterfactual" else "removal"
            artifacts = ", ".join(sorted({e["artifact"] for e in entries}))
            lines.append(
                f"  {cls:<{width}}  clean       {artifacts} tested; largest effect {name} {_ci(test, confidence)} "
                f"(epoch {h.get('epoch')}), no alert"
            )
        else:
            lines.append(f"  {cls:<{width}}  not judged  no watched artifact was tested for this class")
    if report:
        lines.append(f"  {'report':<{width}}  {report}")
    if logdir:
        lines.append(f"  {'look':<{width}}  tensorboard --logdir {logdir} --samples_per_plugin images=1000")
    lines.append(RULE)
    return "\n".join(lines)
