"""Lightning plumbing shared by the callbacks: loggers, RNG preservation, scheduling, the explained module, value
ranges, and the one step convention every XAI output uses.

**Steps.** Everything the callbacks log for an explained epoch (images, text, scalars) uses the same step, the number
of completed training epochs: 0 is the untrained model (fit start), ``e + 1`` is the model after epoch ``e``. So the
step slider of TensorBoard's images and the x axis of the ``xai/``/``shortcut/`` scalars count epochs.
"""

from __future__ import annotations

import contextlib
import copy
import os
import random
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Optional

import numpy as np
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_warn

from ..contracts import TwoLogitBinary

__all__ = [
    "Background",
    "BackgroundHooks",
    "ValueRange",
    "adapt_binary",
    "check_logits",
    "class_names_of",
    "epoch_step",
    "explained_module",
    "find_tensorboard",
    "log_scalars",
    "minmax01",
    "notify",
    "preserve_rng",
    "publish",
    "should_run",
    "snapshot",
    "task_of",
    "value_range",
]


def find_tensorboard(trainer: Trainer) -> Optional[TensorBoardLogger]:
    """The first TensorBoard logger of the trainer, or None."""
    return next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)


def epoch_step(epoch: int) -> int:
    """The step of every XAI output of ``epoch`` (-1 = the untrained model at fit start): completed epochs."""
    return epoch + 1


@contextlib.contextmanager
def preserve_rng() -> Iterator[None]:
    """Restore Python, NumPy and torch (CPU and CUDA) RNG states afterwards, so callbacks never shift training."""
    py, np_state, cpu = random.getstate(), np.random.get_state(), torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        random.setstate(py)
        np.random.set_state(np_state)
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


def should_run(trainer: Trainer, every_n_epochs: int) -> bool:
    """Every ``every_n_epochs`` epochs and at the last epoch; always under ``fast_dev_run``."""
    if trainer.fast_dev_run:
        return True
    epoch = trainer.current_epoch
    last = trainer.max_epochs is not None and trainer.max_epochs > 0 and epoch + 1 >= trainer.max_epochs
    return (epoch + 1) % max(1, every_n_epochs) == 0 or last


def explained_module(
    pl_module: LightningModule, module_attr: Optional[str], knob: str = "module_attr"
) -> torch.nn.Module:
    """The module mapping images to logits: ``pl_module`` itself or its attribute ``module_attr``."""
    if not module_attr:
        return pl_module
    module = pl_module
    for part in module_attr.split("."):
        if not hasattr(module, part):
            children = [n for n, _ in pl_module.named_children()]
            raise AttributeError(
                f"{type(pl_module).__name__} has no attribute {module_attr!r}; set {knob} to the submodule that maps "
                f"images to logits (its children: {children}), or leave it empty to explain the module's forward"
            )
        module = getattr(module, part)
    return module


def check_logits(module: torch.nn.Module, images: torch.Tensor, knob: str = "module_attr") -> int:
    """Run ``module`` on ``images`` (eval copy semantics are the caller's) and return its number of outputs.

    Raises:
        ValueError: when the output is not an ``(N, K)`` tensor, naming the argument that fixes it.
    """
    with torch.no_grad():
        modes = [(m, m.training) for m in module.modules()]
        try:
            module.eval()
            param = next(module.parameters(), None)
            x = images.to(param.device, param.dtype) if param is not None and param.is_floating_point() else images
            out = module(x)
        finally:
            for m, mode in modes:
                m.training = mode
    if not isinstance(out, torch.Tensor):
        raise ValueError(
            f"the model returned {type(out).__name__}, not a logits tensor (N, K); pass {knob}='<name>' naming the "
            "submodule of your LightningModule that maps images to logits"
        )
    if out.ndim == 1:
        return 1
    if out.ndim != 2:
        raise ValueError(
            f"the model must return logits of shape (N, K), got {tuple(out.shape)}; pass {knob}='<name>' naming the "
            "submodule that does"
        )
    return int(out.shape[1])


def adapt_binary(module: torch.nn.Module, num_outputs: int) -> torch.nn.Module:
    """A single-logit binary model wrapped as two logits (see :class:`lit_xai.contracts.TwoLogitBinary`)."""
    return TwoLogitBinary(module) if num_outputs == 1 else module


class ValueRange:
    """Conversions between model inputs and images in [0, 1] (for display, detectors and inserters).

    Args:
        to01: model input -> [0, 1].
        from01: [0, 1] -> model input.
        source: where the conversion came from (for messages).
    """

    def __init__(
        self,
        to01: Callable[[torch.Tensor], torch.Tensor],
        from01: Callable[[torch.Tensor], torch.Tensor],
        source: str,
    ) -> None:
        self.to01, self.from01, self.source = to01, from01, source


def value_range(
    datamodule: Any,
    normalization: Optional[tuple[tuple[float, ...], tuple[float, ...]]] = None,
    input_range: Optional[tuple[float, float]] = None,
) -> Optional[ValueRange]:
    """How model inputs map to [0, 1]: an explicit ``normalization=(mean, std)`` or ``input_range=(lo, hi)``
    argument, else the datamodule's ``normalize``/``denormalize``; ``None`` when nothing says."""
    if normalization is not None:
        mean = torch.as_tensor(normalization[0], dtype=torch.float32)[None, :, None, None]
        std = torch.as_tensor(normalization[1], dtype=torch.float32)[None, :, None, None]
        return ValueRange(
            lambda x: (x * std.to(x) + mean.to(x)).clamp(0, 1),
            lambda x: (x - mean.to(x)) / std.to(x),
            "normalization=(mean, std)",
        )
    if input_range is not None:
        lo, hi = float(input_range[0]), float(input_range[1])
        if hi <= lo:
            raise ValueError(f"input_range must be (low, high) with high > low, got {input_range}")
        return ValueRange(lambda x: ((x - lo) / (hi - lo)).clamp(0, 1), lambda x: x * (hi - lo) + lo, "input_range")
    if (
        datamodule is not None
        and callable(getattr(datamodule, "denormalize", None))
        and callable(getattr(datamodule, "normalize", None))
    ):
        return ValueRange(lambda x: datamodule.denormalize(x).clamp(0, 1), datamodule.normalize, "the datamodule")
    return None


def minmax01(x: torch.Tensor) -> torch.Tensor:
    """Per-image min-max scaling to [0, 1] (display fallback when the value range is unknown)."""
    flat = x.flatten(1)
    lo, hi = flat.amin(1)[:, None, None, None], flat.amax(1)[:, None, None, None]
    return ((x - lo) / (hi - lo).clamp_min(1e-12)).clamp(0, 1)


def class_names_of(trainer: Trainer, pl_module: LightningModule, given: Optional[list[str]]) -> Optional[list[str]]:
    """Class names: the given ones, else the datamodule's or the LightningModule's ``class_names``."""
    if given:
        return list(given)
    # the datamodule first: it knows its data, while a module may only carry placeholder names (class_0, ...)
    for source in (getattr(trainer, "datamodule", None), pl_module):
        names = getattr(source, "class_names", None)
        if names:
            return [str(n) for n in names]
    return None


def task_of(trainer: Trainer, pl_module: LightningModule, given: Optional[str]) -> Optional[str]:
    """The task: the given one, else the LightningModule's or the datamodule's ``task``; None when nobody says."""
    if given is not None:
        return given
    for source in (pl_module, getattr(trainer, "datamodule", None)):
        task = getattr(source, "task", None)
        if task in ("binary", "multiclass", "multilabel"):
            return str(task)
    return None


def log_scalars(trainer: Trainer, scalars: dict[str, float], step: int) -> None:
    """Log scalars at ``step`` through every logger's ``log_metrics`` (rank 0; any Lightning logger)."""
    if not scalars or not trainer.is_global_zero:
        return
    for logger in trainer.loggers:
        logger.log_metrics(dict(scalars), step=step)


def publish(trainer: Trainer, scalars: Optional[dict[str, float]]) -> None:
    """Make broadcast scalars visible to other callbacks (``trainer.callback_metrics``: checkpointing, early
    stopping) on every rank, without logging them a second time at Lightning's own step."""
    for name, value in (scalars or {}).items():
        trainer.callback_metrics[name] = torch.tensor(float(value))


def notify(trainer: Trainer, message: str) -> None:
    """Print through the progress bar when there is one (keeps the bar intact), else plain print on rank 0."""
    if not trainer.is_global_zero:
        return
    bar = trainer.progress_bar_callback
    if bar is not None and hasattr(bar, "print"):
        bar.print(message)
    else:
        print(message)


def snapshot(module: torch.nn.Module) -> torch.nn.Module:
    """A frozen eval-mode copy of ``module`` for explaining in the background while the original keeps training.

    Buffers and parameters are copied, so later optimizer steps never reach it; ``requires_grad`` is off (the
    explainers differentiate with respect to the input only).
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


class BackgroundHooks:
    """The Lightning hooks of a monitor whose work may run on its :class:`Background` (``self._background``; jobs
    return the scalars to publish): collect finished jobs during training, wait for the last at train end, end the
    thread at teardown, drop queued jobs after an exception."""

    _background: Background
    asynchronous: bool

    def _check_single_process(self, trainer: Trainer) -> None:
        """``asynchronous`` off (with a warning) under multi-process training: results must reach every rank at the
        same epoch, which only the synchronous broadcast guarantees."""
        if self.asynchronous and trainer.world_size > 1:
            rank_zero_warn(
                f"{type(self).__name__}(asynchronous=True) runs synchronously under multi-process training (its "
                "results must reach every rank at the same epoch)"
            )
            self.asynchronous = False

    def _submit_snapshot(
        self, trainer: Trainer, module: torch.nn.Module, job: Callable[[torch.nn.Module], Any]
    ) -> None:
        """``job(snapshot of module)`` on the background thread, returning the scalars to publish. Results
        and errors of earlier jobs first: at most one snapshot in flight (if a job takes longer than an epoch,
        training waits here rather than piling up copies of the model)."""
        self._collect(trainer, wait=True)
        self._background.submit(job, snapshot(module))

    def on_train_batch_end(self, trainer: Trainer, *args: Any) -> None:
        if self._background.pending:
            self._collect(trainer)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._collect(trainer, wait=True)  # the last epoch's results before the loggers close

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._background.close(wait=False)

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._background.close(wait=True)

    def _collect(self, trainer: Trainer, wait: bool = False) -> None:
        for scalars in self._background.collect(wait):
            publish(trainer, scalars)
