"""Thin Lightning callbacks on one monitor base: schedule, pick probes, call the pure explainers/metrics/detectors,
log what they render."""

from ..contracts import ModelSpec
from .base import MonitorBase
from .correction import ShortcutCorrection
from .explanation_monitor import ExplanationMonitor, Pictures
from .quality_monitor import ExplanationQualityMonitor, QualitySettings
from .report import RunReport
from .shortcut_monitor import ShortcutBudget, ShortcutMonitor

__all__ = [
    "ExplanationMonitor",
    "ExplanationQualityMonitor",
    "ModelSpec",
    "MonitorBase",
    "Pictures",
    "QualitySettings",
    "RunReport",
    "ShortcutCorrection",
    "ShortcutBudget",
    "ShortcutMonitor",
]
