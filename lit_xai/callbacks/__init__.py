"""Thin Lightning callbacks: schedule, pick probes, call the pure explainers/metrics/detectors, log."""

from .correction import ShortcutCorrection
from .explanation_monitor import ExplanationMonitor
from .quality_monitor import ExplanationQualityMonitor
from .shortcut_monitor import ShortcutMonitor

__all__ = ["ExplanationMonitor", "ExplanationQualityMonitor", "ShortcutCorrection", "ShortcutMonitor"]
