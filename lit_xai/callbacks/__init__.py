"""Thin Lightning callbacks: schedule, pick probes, call the pure explainers/metrics/detectors, log."""

from .explanation_monitor import ExplanationMonitor, ProbeExplanations, explain_probes
from .probes import Probes, select_probes
from .shortcut_monitor import ShortcutMonitor, alert_decision, measure_reliance

__all__ = [
    "ExplanationMonitor",
    "ProbeExplanations",
    "Probes",
    "ShortcutMonitor",
    "alert_decision",
    "explain_probes",
    "measure_reliance",
    "select_probes",
]
