"""How many torch threads a training command should use on a machine whose cores may already be busy.

torch starts one intra-op thread per core. When another process already keeps some cores busy, a parallel region
waits for its slowest thread, which shares a core with that process: on 2 cores with one of them busy, training on 2
threads took longer *and* burned more CPU (OpenMP threads spin while they wait) than on 1. :func:`configure_threads`
looks at how busy the cores are before training starts and leaves the busy ones alone. It is called by the training
command (``python train.py``, ``lit-xai train``), never on import: a library must not change its host's threads.

An explicit choice always wins: ``OMP_NUM_THREADS`` (read by torch itself) or ``LIT_XAI_THREADS=N``;
``LIT_XAI_THREADS=all`` keeps torch's default.

Example:
    >>> choose_threads(cores=2, busy=1.1, default=2)
    1
    >>> choose_threads(cores=8, busy=0.2, default=8)
    8
"""

from __future__ import annotations

import os
import time
from typing import Optional

__all__ = ["busy_cores", "choose_threads", "configure_threads"]


def _cpu_times() -> Optional[tuple[float, float]]:
    """(idle, total) jiffies of all cores from /proc/stat (Linux), None elsewhere."""
    try:
        with open("/proc/stat") as fh:
            fields = fh.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    values = [float(v) for v in fields[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0.0)  # idle + iowait
    return idle, sum(values[:8])  # guest time is already counted in user


def busy_cores(interval: float = 0.3) -> Optional[float]:
    """How many of the machine's cores other processes keep busy, sampled over ``interval`` seconds (None where
    /proc/stat is not available)."""
    first = _cpu_times()
    if first is None:
        return None
    time.sleep(interval)
    second = _cpu_times()
    if second is None or second[1] <= first[1]:
        return None
    idle_share = (second[0] - first[0]) / (second[1] - first[1])
    return max(0.0, 1.0 - idle_share) * (os.cpu_count() or 1)


def choose_threads(cores: int, busy: float, default: int) -> int:
    """Threads for the cores this process may use (``cores``) minus the busy ones (rounded), at least 1 and at most
    torch's ``default``."""
    free = cores - int(busy + 0.5)
    return max(1, min(default, free))


def configure_threads() -> Optional[str]:
    """Set torch's intra-op threads for a training command; returns a one-line note for the console when it changed
    them (None when it kept them)."""
    import torch

    choice = os.environ.get("LIT_XAI_THREADS", "").strip().lower()
    if choice and choice != "auto":
        if choice == "all":
            return None
        try:
            threads = int(choice)
        except ValueError:
            raise ValueError(f"LIT_XAI_THREADS={choice!r}: use a number of threads, 'auto' or 'all'") from None
        torch.set_num_threads(max(1, threads))
        return None
    if os.environ.get("OMP_NUM_THREADS"):
        return None  # torch already follows it
    busy = busy_cores()
    if busy is None:
        return None
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    default = torch.get_num_threads()
    threads = choose_threads(cores, busy, default)
    if threads >= default:
        return None
    torch.set_num_threads(threads)
    return (
        f"lit_xai: training on {threads} torch thread{'s' if threads > 1 else ''} of {default}: {busy:.1f} of "
        f"{cores} cores were busy before the start (set OMP_NUM_THREADS or LIT_XAI_THREADS=N to choose)"
    )
