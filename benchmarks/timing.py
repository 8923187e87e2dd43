"""The benchmarks' shared timing: interleaved repeats after a warm-up, min / median, ratios, machine info, JSON.

Every side-by-side comparison in ``benchmarks/`` runs the compared calls once each per repeat, in order, so background
load on a shared machine hits them alike; the minimum over repeats is the figure quoted (least disturbed), the median
is printed beside it.

Example:
    >>> times = time_interleaved({"a": lambda: None, "b": lambda: None}, repeats=3)
    >>> sorted(times), len(times["a"])
    (['a', 'b'], 3)
    >>> summary([1.0, 3.0, 2.0])
    {'min': 1.0, 'median': 2.0, 'repeats': 3}
    >>> ratio([2.0, 4.0], [1.0, 1.0])
    {'min': 2.0, 'median': 3.0}
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["machine_info", "ratio", "summary", "time_interleaved", "write_json"]


def time_interleaved(
    calls: Mapping[str, Callable[[], object]],
    repeats: int,
    warmup: int = 1,
    sync: Callable[[], object] | None = None,
) -> dict[str, list[float]]:
    """Seconds per call, every round running all ``calls`` once in order; the first ``warmup`` rounds are dropped.
    ``sync`` runs before and after each timed call (e.g. ``torch.cuda.synchronize``: a GPU call is timed to its end).
    """
    times: dict[str, list[float]] = {name: [] for name in calls}
    for round_ in range(warmup + repeats):
        for name, call in calls.items():
            if sync is not None:
                sync()
            start = time.perf_counter()
            call()
            if sync is not None:
                sync()
            if round_ >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


def summary(seconds: list[float]) -> dict[str, float]:
    """``{"min", "median", "repeats"}`` of one call's seconds."""
    return {"min": min(seconds), "median": statistics.median(seconds), "repeats": len(seconds)}


def ratio(numerator: list[float], denominator: list[float]) -> dict[str, float]:
    """Ratio of two interleaved series: of the minima (``min``) and the median of the per-round ratios."""
    return {
        "min": min(numerator) / min(denominator),
        "median": statistics.median(n / d for n, d in zip(numerator, denominator)),
    }


def machine_info() -> dict[str, Any]:
    """What a figure was measured on: CPU, cores, threads, Python, torch and the GPU if any."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
    }
    try:
        import torch

        info |= {"torch": torch.__version__, "torch_threads": torch.get_num_threads()}
        if torch.cuda.is_available():
            info["cuda_device"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def write_json(path: str | os.PathLike, results: Mapping[str, Any], suite: str | None = None) -> Path:
    """Write ``results`` with ``machine`` (and ``suite``) added, as indented JSON; returns the path."""
    out = {"suite": suite, **results} if suite is not None else dict(results)
    out.setdefault("machine", machine_info())
    path = Path(path)
    path.write_text(json.dumps(out, indent=2, default=str))
    return path
