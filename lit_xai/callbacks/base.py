"""``MonitorBase``: what every lit_xai monitor shares, once — the schedule and its skip rules, the resume guard,
the model contract, rank-0 work with a broadcast (or a background job), history and checkpoint state, the tag.

A monitor implements three methods and nothing of Lightning's lifecycle:

* ``measure(contract, module, epoch, mode) -> result`` (a dict): the pure work on the explained module;
* ``record(result, epoch, mode) -> list[dict]``: update the monitor's state (drift, alert streaks) under the
  background lock and return the history entries of this measurement;
* ``render(result, epoch, mode) -> {tag: number | text | picture}``: what to log (see :func:`~.sinks.emit`).

**Steps.** Everything a monitor logs for an explained epoch (images, text, scalars) uses the same step, the number
of completed training epochs: 0 is the untrained model (fit start), ``e + 1`` is the model after epoch ``e``. So the
step slider of TensorBoard's images and the x axis of the ``XAI/`` / ``XAI_drift/`` scalars count epochs; the
module's own ``val/*`` and ``test/*`` metrics are copied to the same steps (``XAI/1_epoch/val/acc``, see
:mod:`~lit_xai.callbacks.epoch_metrics`) so accuracy and explanations line up.
"""

from __future__ import annotations

import contextlib
import random
import time
import weakref
from collections.abc import Iterator
from typing import Any, Optional, Union

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn

from ..contracts import ModelContract, ModelSpec, resolve_contract
from ..schedule import OverBudget, Schedule, Spacing, due, over_budget  # the one schedule rule, below callbacks
from ._background import Background, snapshot
from ._checks import warn_resume_into_same_version
from .epoch_metrics import log_epoch_metrics
from .sinks import emit, notify, publish, scalars_of

__all__ = ["MonitorBase", "due", "epoch_step", "preserve_rng", "skip_reason"]

#: the clock of the time budget (``Schedule(time_budget=...)``); a module attribute, so a test can drive it
_now = time.perf_counter
#: every lit_xai monitor's own seconds per trainer: a monitor's budget counts the fit's time without all of them
_MONITOR_SECONDS: weakref.WeakKeyDictionary[Trainer, float] = weakref.WeakKeyDictionary()


def epoch_step(epoch: int) -> int:
    """The step of every XAI output of ``epoch`` (-1 = the untrained model at fit start): completed epochs.

    Example:
        >>> epoch_step(-1), epoch_step(0)
        (0, 1)
    """
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


def skip_reason(
    *,
    epoch: int,
    every_n_epochs: int,
    max_epochs: Optional[int] = None,
    fn: str = "fit",
    sanity_checking: bool = False,
    fast_dev_run: bool = False,
    last_epoch: Optional[int] = None,
    on_eval: bool = False,
    spacing: Spacing = "even",
    budget: Optional[float] = None,
    spent: float = 0.0,
    training: float = 0.0,
    expected: Optional[float] = None,
) -> Optional[str]:
    """The schedule of every monitor as a pure decision: ``None`` = measure now, else why not.

    Every ``every_n_epochs``-th epoch (``spacing``: see :func:`~lit_xai.schedule.due`) and the last one (always
    under ``fast_dev_run``); never during the sanity check; under ``validate``/``test`` only with ``on_eval``; never
    twice for one epoch (a resumed run). With a time ``budget`` (see :func:`~lit_xai.schedule.over_budget`: the
    monitor's ``spent`` seconds, the fit's ``training`` seconds without the monitors, the ``expected`` seconds of the
    next measurement) a due epoch that would go over it is skipped, and the measurement is due again at every later
    epoch until one fits: a postponed epoch is one after ``last_epoch`` (the last measured) that was due.

    Example:
        >>> skip_reason(epoch=1, every_n_epochs=2) is None, skip_reason(epoch=0, every_n_epochs=2, max_epochs=5)
        (True, 'not due (every_n_epochs=2)')
        >>> skip_reason(epoch=4, every_n_epochs=1, last_epoch=4)
        'epoch 4 already measured (resumed run)'
        >>> skip_reason(epoch=4, every_n_epochs=2, last_epoch=1, budget=0.1, spent=2.0, training=40.0, expected=1.0)
        >>> # epoch 3 was due and postponed: epoch 4 measures now that 3 s fit into 4 s
    """
    if sanity_checking:
        return "sanity check"
    if fn != "fit":
        return None if on_eval else f"trainer.{fn}"
    if not fast_dev_run and not due(epoch, every_n_epochs, max_epochs, spacing):
        after = last_epoch + 1 if last_epoch is not None else 0
        postponed = budget is not None and any(due(e, every_n_epochs, max_epochs, spacing) for e in range(after, epoch))
        if not postponed:
            return f"not due (every_n_epochs={every_n_epochs}" + (", doubling)" if spacing == "doubling" else ")")
    if last_epoch is not None and epoch <= last_epoch:
        return f"epoch {epoch} already measured (resumed run)"
    return over_budget(budget, spent, training, expected)


class MonitorBase(Callback):
    """The shared lifecycle of the lit_xai monitors (subclass it for a monitor of your own).

    Args:
        every_n_epochs: measure at the end of every N-th validation epoch (and at the last epoch); a
            :class:`~lit_xai.schedule.Schedule` spaces them otherwise: ``Schedule(1, "doubling")`` measures the 1st,
            2nd, 4th, 8th, ... epoch and the last (dense early, when explanations and shortcuts change fast, sparse
            later: on 8 epochs 4 measurements instead of 8, on 100 epochs 8 instead of 100).
        model: what the monitor cannot find out about the model by itself (:class:`~lit_xai.contracts.ModelSpec`:
            ``module_attr``, ``task``, ``class_names``, ``normalization`` / ``input_range``); resolved once at fit
            start into :attr:`contract`.
        tag: prefix of everything logged; also the checkpoint ``state_key``, so two monitors of one class need two
            tags (Lightning refuses a repeated ``state_key``; ``lit-xai train`` names the repeated ``tag``).
        verbose: one line per measurement through the progress bar (what was measured, how long it took).
        asynchronous: measure a frozen snapshot of the weights on a background thread while training goes on:
            results are logged at the same steps, only later; fit end waits for the last job; a job's error is
            raised at the next epoch end; single-process training only (else synchronous, with a warning).

    A ``Schedule(..., time_budget=0.05)`` caps the monitor's own time at that share of the fit's time without the
    monitors (:func:`~lit_xai.schedule.over_budget`): its seconds are those of :meth:`run`'s work (measuring,
    pictures, logging; on the background thread too) from fit start on, the initial model's included, and of the
    work a subclass puts in :meth:`accounted` (the lit_xai monitors' fit-start setup: probes, audit, pools).
    """

    #: measure under ``trainer.validate`` / ``trainer.test`` too (a monitor may make this an argument)
    on_eval: bool = False
    #: copy the module's ``val/*`` and ``test/*`` metrics to the epoch step under ``<tag root>/1_epoch/`` and
    #: ``<tag root>/2_epoch/`` (see
    #: :func:`~lit_xai.callbacks.epoch_metrics.log_epoch_metrics`; once per trainer, whichever monitor is first)
    epoch_metrics: bool = True

    def __init__(
        self,
        every_n_epochs: Union[int, Schedule] = 1,
        model: Optional[ModelSpec] = None,
        tag: str = "XAI",
        verbose: bool = True,
        asynchronous: bool = False,
    ) -> None:
        spacing: Spacing = "even"
        budget: Optional[float] = None
        if isinstance(every_n_epochs, Schedule):
            spacing, budget = every_n_epochs.spacing, every_n_epochs.time_budget
            every_n_epochs = every_n_epochs.every_n_epochs
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1, got {every_n_epochs}")
        if model is not None and not isinstance(model, ModelSpec):
            raise TypeError(f"model must be a lit_xai.contracts.ModelSpec, got {type(model).__name__}")
        self.every_n_epochs = every_n_epochs
        self.model = model if model is not None else ModelSpec()
        self.tag = tag
        self.verbose = verbose
        self.asynchronous = asynchronous
        self.spacing = spacing
        self.time_budget = budget
        self.contract: Optional[ModelContract] = None
        self._background = Background(tag)
        # checkpointed state
        self.history: list[dict[str, Any]] = []
        self.last_epoch: Optional[int] = None  # last epoch measured or (asynchronous) handed to the thread
        self._finished_epoch: Optional[int] = None  # last epoch whose results are in the history
        self._restored = False
        # the time budget's account of this fit (not checkpointed: a resumed fit starts a new account)
        self._spent = 0.0  # this monitor's seconds
        self._costs: dict[str, tuple[float, float]] = {}  # per cost_kind, the last one's (seconds, cost_units)
        self._clock: Optional[tuple[float, float]] = None  # (time, all monitors' seconds) at train start

    # ------------------------------------------------------------------ the three methods of a monitor
    def measure(self, contract: ModelContract, module: torch.nn.Module, epoch: int, mode: str) -> dict[str, Any]:
        """The work on the explained ``module`` (``mode``: ``"fit"`` or ``"eval"``); returns a result dict."""
        raise NotImplementedError

    def record(self, result: dict[str, Any], epoch: int, mode: str) -> list[dict[str, Any]]:
        """Update the monitor's state from ``result`` (called under the background lock); the history entries."""
        return []

    def render(self, result: dict[str, Any], epoch: int, mode: str) -> dict[str, Any]:
        """What to log for ``result``: ``{tag: number | markdown text | picture}``."""
        return {}

    def cost_kind(self, epoch: int) -> str:
        """What kind of measurement ``epoch``'s is, for the time budget: measurements of one kind are expected to
        cost what the last one of that kind did (a monitor whose epochs differ, e.g. discovery epochs, names
        them)."""
        return "measurement"

    def cost_units(self, epoch: int) -> float:
        """How much work ``epoch``'s measurement is, in any unit its seconds grow with (e.g. the images it explains),
        for the time budget: the first measurement of a kind is expected to cost its units times the most seconds
        per unit measured so far (every measurement 1 unit by default: the costliest so far)."""
        return 1.0

    # ------------------------------------------------------------------ state
    @property
    def state_key(self) -> str:
        return self._generate_state_key(tag=self.tag)

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra_state(self, state_dict: dict[str, Any]) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        with self._background.lock:  # a background job may be adding an epoch right now
            return {"history": list(self.history), "last_epoch": self._finished_epoch, **self._extra_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))
        self.last_epoch = self._finished_epoch = state_dict.get("last_epoch")
        self._load_extra_state(state_dict)
        self._restored = True

    # ------------------------------------------------------------------ the decision
    def skip_reason(self, trainer: Trainer) -> Optional[str]:
        """Why this validation epoch end is not measured (None: it is); see :func:`skip_reason`."""
        spent, training, expected = self._spent, 0.0, None
        if self.time_budget is not None and self._clock is not None:
            start, others = self._clock
            training = (_now() - start) - (_MONITOR_SECONDS.get(trainer, 0.0) - others)
            expected = self.expected_cost(trainer.current_epoch)
        return skip_reason(
            epoch=trainer.current_epoch,
            every_n_epochs=self.every_n_epochs,
            max_epochs=trainer.max_epochs,
            fn=str(getattr(trainer.state.fn, "value", trainer.state.fn)),
            sanity_checking=trainer.sanity_checking,
            fast_dev_run=bool(trainer.fast_dev_run),
            last_epoch=self.last_epoch,
            on_eval=self.on_eval,
            spacing=self.spacing,
            budget=self.time_budget,
            spent=spent,
            training=max(0.0, training),
            expected=expected,
        )

    @contextlib.contextmanager
    def accounted(self, trainer: Trainer) -> Iterator[None]:
        """Count the work inside in the monitor's time budget, as its measurements are (e.g. its fit-start setup:
        the dataset audit, reading the pool; a measurement made inside is counted once)."""
        start, before = _now(), self._spent
        try:
            yield
        finally:
            with self._background.lock:
                self._charge(trainer, max(0.0, (_now() - start) - (self._spent - before)))

    def _charge(self, trainer: Trainer, seconds: float) -> None:
        """Add ``seconds`` to this monitor's account and to the trainer's monitor time (under the lock)."""
        self._spent += seconds
        _MONITOR_SECONDS[trainer] = _MONITOR_SECONDS.get(trainer, 0.0) + seconds

    def expected_cost(self, epoch: int) -> Optional[float]:
        """The seconds ``epoch``'s measurement is expected to take (None before the first measurement): those of the
        last measurement of its :meth:`cost_kind`; before the first of a kind, its :meth:`cost_units` times the most
        seconds per unit so far."""
        last = self._costs.get(self.cost_kind(epoch))
        if last is not None:
            return last[0]
        if not self._costs:
            return None
        return max(seconds / units for seconds, units in self._costs.values()) * self.cost_units(epoch)

    def measure_now(self, trainer: Trainer) -> bool:
        """The decision of :meth:`skip_reason` at a validation epoch end, the same on every rank (with a budget,
        rank 0's: only it measures and keeps the account); says so on the console when the budget postpones a
        measurement."""
        reason = self.skip_reason(trainer)
        if self.time_budget is not None and trainer.world_size > 1:
            reason = trainer.strategy.broadcast(reason, src=0)
        epoch = trainer.current_epoch
        scheduled = due(epoch, self.every_n_epochs, trainer.max_epochs, self.spacing)  # not the ones still waiting
        if isinstance(reason, OverBudget) and scheduled and self.verbose:
            notify(trainer, f"[{self.tag}] epoch {epoch}: postponed, {reason}")
        return reason is None

    def resolve(
        self, trainer: Trainer, pl_module: LightningModule, images: torch.Tensor, targets: torch.Tensor
    ) -> ModelContract:
        """Resolve the :class:`~lit_xai.contracts.ModelContract` once (from sample images and targets)."""
        if self.contract is None:
            try:
                self.contract = resolve_contract(
                    self.model, pl_module, images, targets, getattr(trainer, "datamodule", None)
                )
            except (AttributeError, ValueError) as err:
                raise type(err)(f"{type(self).__name__}: {err}") from err
            except RuntimeError as err:  # e.g. a convolution given 4 channels where it expects 3
                raise RuntimeError(
                    f"{type(self).__name__}(tag={self.tag!r}): the model cannot run on its sample images of shape "
                    f"{tuple(images.shape)}: {err}. The images the monitor explains (probes, the validation set) must "
                    "be the input the model's forward takes: same number of channels and size, normalised as in "
                    "training"
                ) from err
        return self.contract

    # ------------------------------------------------------------------ the side effect
    def run(self, trainer: Trainer, pl_module: LightningModule, epoch: int, everywhere: bool = True) -> None:
        """Measure ``epoch`` (-1: the untrained model), log it and keep its state: on rank 0 with the result
        broadcast to every rank (``everywhere``), or on the background thread (``asynchronous``, fit only)."""
        mode = "fit" if str(getattr(trainer.state.fn, "value", trainer.state.fn)) == "fit" else "eval"
        if self.asynchronous and mode == "fit":
            if self.verbose:
                notify(trainer, f"[{self.tag}] {_where(epoch)}: measuring in the background")
            self._collect(trainer, wait=True)  # at most one snapshot in flight; earlier errors first
            frozen = snapshot(self.contract.module(pl_module))
            self._background.submit(self._execute, trainer, frozen, epoch, mode, True)
            self.last_epoch = max(epoch, self.last_epoch if self.last_epoch is not None else epoch)
            return
        payload: Optional[dict[str, Any]] = None
        if trainer.is_global_zero:
            with preserve_rng(), torch.inference_mode(False):
                payload = self._execute(trainer, self.contract.module(pl_module), epoch, mode)
        if everywhere:  # every rank reaches the broadcast, so nothing deadlocks and all ranks hold the same state
            payload = trainer.strategy.broadcast(payload, src=0)
        if payload is None:
            return
        publish(trainer, payload["scalars"])
        if not trainer.is_global_zero:
            self._receive(payload, epoch, mode)

    def _execute(
        self, trainer: Trainer, module: torch.nn.Module, epoch: int, mode: str, background: bool = False
    ) -> dict[str, Any]:
        """measure -> record -> render -> log; the payload other ranks receive (``background``: on the worker)."""
        start = _now()
        result = self.measure(self.contract, module, epoch, mode)
        result["seconds"] = _now() - start
        with self._background.lock:
            entries = self.record(result, epoch, mode)
            self.history.extend(entries)
            if mode == "fit" and epoch >= 0:
                self.last_epoch = max(epoch, self.last_epoch if self.last_epoch is not None else epoch)
                self._finished_epoch = epoch
        outputs = self.render(result, epoch, mode)
        emit(trainer, outputs, epoch_step(epoch))
        self._after(trainer, result, epoch, mode)
        if self.verbose:
            notify(trainer, f"[{self.tag}] {_where(epoch)}: done in {_now() - start:.1f} s")
        if mode == "fit":
            cost, units = _now() - start, max(float(self.cost_units(epoch)), 1e-9)
            with self._background.lock:
                self._charge(trainer, cost)
                self._costs[self.cost_kind(epoch)] = (cost, units)
        return {"scalars": scalars_of(outputs), "history": entries, **self._payload(result)}

    def _after(self, trainer: Trainer, result: dict[str, Any], epoch: int, mode: str) -> None:
        """Side effects beyond logging (warnings, report files); rank 0 / the worker."""

    def _payload(self, result: dict[str, Any]) -> dict[str, Any]:
        """What other ranks need besides scalars and history entries."""
        return {}

    def _receive(self, payload: dict[str, Any], epoch: int, mode: str) -> None:
        """Another rank's copy of the state (not rank 0): history entries, last epoch."""
        self.history.extend(payload.get("history", []))
        if mode == "fit" and epoch >= 0 and payload.get("history"):
            self.last_epoch = self._finished_epoch = epoch

    # ------------------------------------------------------------------ Lightning hooks shared by every monitor
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit":
            self._spent, self._costs, self._clock = 0.0, {}, None
        if self.asynchronous and trainer.world_size > 1:
            rank_zero_warn(
                f"{type(self).__name__}(asynchronous=True) runs synchronously under multi-process training (its "
                "results must reach every rank at the same epoch)"
            )
            self.asynchronous = False

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.measure_now(trainer):
            self.run(trainer, pl_module, trainer.current_epoch)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._clock = (_now(), _MONITOR_SECONDS.get(trainer, 0.0))  # the budget's training clock
        if trainer.is_global_zero:  # the checkpoint path is known from here on (not yet in setup)
            warn_resume_into_same_version(trainer)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        fit = str(getattr(trainer.state.fn, "value", trainer.state.fn)) == "fit"
        if self.epoch_metrics and fit and not trainer.sanity_checking:
            log_epoch_metrics(trainer, self.tag.split("/")[0], epoch_step(trainer.current_epoch), "val")

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.epoch_metrics:  # the model after trainer.current_epoch completed epochs
            log_epoch_metrics(trainer, self.tag.split("/")[0], trainer.current_epoch, "test")

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
        for payload in self._background.collect(wait):
            publish(trainer, payload["scalars"])


def _where(epoch: int) -> str:
    return "initial model" if epoch < 0 else f"epoch {epoch}"
