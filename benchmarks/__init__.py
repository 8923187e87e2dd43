"""lit_xai's benchmarks: one entry, ``python -m benchmarks <suite> [the suite's options]``, from the repository root.

Each suite is one script of this folder (run as ``__main__``, so ``python benchmarks/<script>.py`` still works);
:mod:`benchmarks.timing` is their shared timing (warm-up, interleaved repeats, min / median, ratios, machine info,
JSON). ``python -m benchmarks list`` prints the suites; benchmarks/README.md names the suite behind every figure.
Not part of the default test run.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["SUITES", "script"]

HERE = Path(__file__).resolve().parent

#: suite name -> script of this folder
SUITES: dict[str, str] = {
    "speed": "run.py",  # all speed ratios of issue 11 in one run (LRP, CRP, zennit-crp, monitors, loader, scaling)
    "lrp_timing": "lrp_timing.py",
    "lrp_floor": "lrp_floor.py",  # issue 35: LRP / gradient at 224 px, agreement, profile by operator class
    "lrp_memory": "lrp_memory.py",  # issue 35: peak memory of LRP vs gradient, growth over repeated calls
    "lrp_conservation": "lrp_conservation.py",
    "checkerboard": "checkerboard.py",
    "lattice": "lattice.py",  # issue 31: the lattice index of ResNet-50 LRP maps per candidate composite
    "crp_timing": "crp_timing.py",
    "crp_vs_zennit_crp": "crp_vs_zennit_crp.py",
    "backbones": "backbones.py",
    "loader_throughput": "loader_throughput.py",
    "bad_image_check": "bad_image_check.py",
    "audit_scale": "audit_scale.py",
    "calibration": "calibration.py",
    "saturation": "saturation.py",
    "discovery": "discovery.py",
    "discovery_cost": "discovery_cost.py",  # issue 32 item 4: discovery + candidate tests / an epoch
    "discovery_recall": "discovery_recall.py",  # issue 32 item 2: weak planted artifacts, verified, clean control
    "colour_groups": "colour_groups.py",  # issue 32 item 2: would a colour view find a learned cast? (no model)
    "correction": "correction.py",
    "quality_demo": "quality_demo.py",
    "quality_vs_quantus": "quality_vs_quantus.py",  # issue 35: AOPC, max-sensitivity, infidelity vs Quantus 0.6
    "monitor_cost": "monitor_cost.py",  # issue 35: the demo with / without the monitors, one core kept busy
    "gpu_check": "gpu_check.py",
}


def script(suite: str) -> Path:
    """The script of ``suite``; the error lists the suites."""
    name = {"run": "speed"}.get(suite, suite)  # run.py's old name
    if name not in SUITES:
        raise SystemExit(f"unknown benchmark suite {suite!r}; choose one of: {', '.join(SUITES)}")
    return HERE / SUITES[name]
