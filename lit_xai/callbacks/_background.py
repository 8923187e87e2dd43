"""The background worker of an ``asynchronous=True`` monitor: one thread, jobs in order, errors raised on collect;
and the frozen weight snapshot a job explains while training goes on."""

from __future__ import annotations

import contextlib
import copy
import os
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Optional

import torch

__all__ = ["Background", "snapshot"]


def snapshot(module: torch.nn.Module) -> torch.nn.Module:
    """A frozen eval-mode copy of ``module`` for explaining in the background while the original keeps training.

    Buffers and parameters are copied, so later optimizer steps never reach it; ``requires_grad`` is off (the
    explainers differentiate with respect to the input only).

    Example:
        >>> net = torch.nn.Linear(2, 2)
        >>> frozen = snapshot(net)
        >>> frozen.training, frozen.weight.requires_grad, frozen.weight.data_ptr() != net.weight.data_ptr()
        (False, False, True)
    """
    with torch.no_grad():
        copied = copy.deepcopy(module)
    copied.eval()
    copied.requires_grad_(False)
    param = next(copied.parameters(), None)
    if param is not None and param.is_cuda:
        # the copies were only enqueued, on this thread's current stream; the worker thread may run on another
        # stream (a training loop on a side stream), so finish them before the snapshot changes hands (once per job)
        torch.cuda.current_stream(param.device).synchronize()
    return copied


def _one_thread() -> None:
    # the explanation thread computes with one intra-op thread: training keeps its own thread count (OpenMP's is
    # per calling thread) and the machine is not oversubscribed by a second full team
    torch.set_num_threads(1)
    # and at the lowest CPU priority (Linux: per thread): it takes the cores only when training leaves them idle
    # (data loading, Python overhead). At equal priority it preempted training's OpenMP team and the whole team
    # waited for the preempted thread: the demo got slower than explaining synchronously (1.47 vs 1.35)
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


class Background:
    """Jobs of one callback on one worker thread, run in submission order; results collected on the main thread.

    The worker runs torch with one intra-op thread and never touches the global RNG (the jobs must not either:
    RNG state is process-wide, so restoring it from another thread would rewind training's stream). A job's
    exception is raised again, unchanged, by the :meth:`collect` that reaches it; :meth:`close` waits for the jobs
    and ends the thread, so nothing outlives the callback.

    Example:
        >>> bg = Background("demo")
        >>> bg.submit(sum, [1, 2, 3])
        >>> bg.collect(wait=True)
        [6]
        >>> bg.close()
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._executor: Optional[ThreadPoolExecutor] = None
        self._pending: deque[Future] = deque()
        self.lock = threading.Lock()  # held by a job while it changes state the main thread reads (checkpoints)

    @property
    def pending(self) -> int:
        """Jobs submitted and not collected yet."""
        return len(self._pending)

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"lit_xai-{self.name}", initializer=_one_thread)
        self._pending.append(self._executor.submit(fn, *args))

    def collect(self, wait: bool = False) -> list[Any]:
        """Results of finished jobs (all jobs with ``wait=True``), oldest first; a job's error is raised here."""
        results = []
        while self._pending and (wait or self._pending[0].done()):
            results.append(self._pending.popleft().result())
        return results

    def close(self, wait: bool = True) -> None:
        """End the worker thread: after the pending jobs (``wait=True``), else dropping the ones not started."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=not wait)
            self._executor = None
        if not wait:
            self._pending.clear()

    def __getstate__(self) -> dict[str, Any]:  # a deep-copied / pickled callback starts without a thread
        return {"name": self.name}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["name"])
