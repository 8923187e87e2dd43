"""Thin Lightning callbacks: schedule, pick probes, call the pure explainers/metrics/detectors, log."""

from .explanation_monitor import ExplanationMonitor, ProbeExplanations, explain_probes
from .probes import Probes, select_probes

__all__ = ["ExplanationMonitor", "ProbeExplanations", "Probes", "explain_probes", "select_probes"]
