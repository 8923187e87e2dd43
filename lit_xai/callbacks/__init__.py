"""Thin Lightning callbacks on one monitor base: schedule, pick probes, call the pure explainers/metrics/detectors,
log what they render."""

from ..contracts import ModelSpec
from ..correction import CAVSettings, CorrectionBudget, PenaltySettings  # ShortcutCorrection's settings
from .base import MonitorBase
from .correction import ShortcutCorrection
from .explanation_monitor import ExplanationMonitor, Pictures
from .quality_monitor import ExplanationQualityMonitor, QualitySettings
from .report import RunReport
from .shortcut_monitor import ShortcutBudget, ShortcutMonitor

__all__ = [
    "CAVSettings",
    "CorrectionBudget",
    "ExplanationMonitor",
    "ExplanationQualityMonitor",
    "ModelSpec",
    "MonitorBase",
    "PenaltySettings",
    "Pictures",
    "QualitySettings",
    "RunReport",
    "ShortcutCorrection",
    "ShortcutBudget",
    "ShortcutMonitor",
]
