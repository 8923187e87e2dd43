"""``ExplanationMonitor``: explanations of fixed probe images at epoch end and their drift across epochs.

A thin Lightning shell: it schedules, picks probes (:mod:`lit_xai.probes`), calls :func:`lit_xai.explainers.explain`
and a :class:`lit_xai.metrics.DriftTracker`, renders with :mod:`lit_xai.visualization` and logs. It works with any
LightningModule whose forward (or ``module_attr`` submodule) maps images to logits.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from typing import Any, Literal, Optional, Union

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn

from ..contracts import class_name
from ..explainers import CRP, Explainer, ExplainerError, ProbeExplanations, build_explainer, concept_references, explain
from ..metrics.drift import DriftTracker
from ..probes import Probes, ProbeSelector, outcome_indices, validation_dataset
from ..visualization import concept_grid, explanation_grid, timeline_grid
from ._common import (
    Background,
    BackgroundHooks,
    adapt_binary,
    check_logits,
    class_names_of,
    epoch_step,
    explained_module,
    find_tensorboard,
    log_scalars,
    minmax01,
    notify,
    preserve_rng,
    publish,
    should_run,
    task_of,
    value_range,
)
from .sinks import log_image, log_text

__all__ = ["ExplanationMonitor"]

TASKS = ("binary", "multiclass", "multilabel")


class ExplanationMonitor(BackgroundHooks, Callback):
    """Explain fixed probes every N epochs and log heatmaps, concept grids, timelines and drift.

    Args:
        explainers: names (``"lrp"``, ``"crp"``, ``"gradcam"``, ``"attention_gradcam"``, ``"lrp_gradcam"``) or
            configured explainer objects (YAML: ``{class_path: lit_xai.explainers.CRP, init_args: {top_k: 6}}``);
            several LRP composites side by side are ``LRP(composite=...)`` objects.
        every_n_epochs: explain at the end of every N-th validation epoch (and at the last epoch).
        images_every_n_epochs: log the pictures (grids, concepts, timelines, outcome probes) only at every N-th
            explained epoch, the initial model and the last epoch; drift scalars still come every explained epoch.
            Pictures (CRP reference search, rendering, PNG encoding) cost about as much as the explanations, and with
            TensorBoard's default of 10 kept images per tag most of a long run's pictures are never shown anyway.
        probes: how probes are chosen: a :class:`~lit_xai.probes.ProbeSelector`, a number of probes, or (from Python)
            a :class:`~lit_xai.probes.Probes` built with :func:`~lit_xai.probes.probes_from_tensors`.
        targets: explain the ``"true"`` class, the ``"predicted"`` one, or ``"both"``. Multi-label: every positive
            (true) or predicted (p > 0.5) class of a probe, one row per (probe, class).
        drift: the :class:`~lit_xai.metrics.DriftTracker` (measures, pooled size, timeline length); None = default.
        module_attr: attribute of the LightningModule that maps images to logits (None = its forward).
        task: ``"binary"``, ``"multiclass"`` or ``"multilabel"``; None = the LightningModule's / datamodule's
            ``task``, else inferred from the model's outputs and the probe targets.
        class_names: names for captions; None = ``pl_module.class_names`` / the datamodule's, else indices.
        log_at_fit_start: explain the untrained model at fit start (step 0) as the drift baseline.
        explain_on_eval: also explain under ``trainer.validate`` / ``trainer.test`` (tagged ``.../eval`` and
            captioned with the checkpoint's epoch; no drift update).
        per_probe_scalars: also log every probe's drift (off: the means are what people read).
        tile: pixel size of a tile in the logged grids.
        tag: prefix of the logged pictures and text; scalars go to ``<tag>_drift/...``. Upper case by default so the
            pictures form the first group of TensorBoard's views (groups sort by ASCII name, before ``epoch``,
            ``train/``, ``val/``); also the checkpoint ``state_key``.
        verbose: announce each explanation step through the progress bar.
        asynchronous: explain a snapshot of the weights on a background thread while training goes on. Pictures,
            scalars (at the same steps) and drift arrive once the thread is done, usually during the next epoch;
            fit end waits for the last one; a job's error is raised at the next epoch end. A checkpoint holds the
            explanations finished when it was written. Single-process training only (under DDP the monitor runs
            synchronously and warns).

    Example (YAML)::

        trainer:
          callbacks:
            - class_path: lit_xai.callbacks.ExplanationMonitor
              init_args:
                explainers: [lrp, gradcam, {class_path: lit_xai.explainers.CRP, init_args: {top_k: 6}}]
                probes: {class_path: lit_xai.probes.ProbeSelector, init_args: {num_probes: 8, per_outcome: 2}}
    """

    def __init__(
        self,
        explainers: Sequence[Union[str, Explainer]] = ("lrp", "crp", "gradcam"),
        every_n_epochs: int = 1,
        images_every_n_epochs: int = 1,
        probes: Union[ProbeSelector, int, Any] = 8,
        targets: Literal["true", "predicted", "both"] = "true",
        drift: Optional[DriftTracker] = None,
        module_attr: Optional[str] = None,
        task: Optional[Literal["binary", "multiclass", "multilabel"]] = None,
        class_names: Optional[list[str]] = None,
        log_at_fit_start: bool = True,
        explain_on_eval: bool = False,
        per_probe_scalars: bool = False,
        tile: int = 112,
        tag: str = "XAI",
        verbose: bool = True,
        asynchronous: bool = False,
    ) -> None:
        if isinstance(explainers, (str, Explainer)):
            explainers = [explainers]
        if not explainers:
            raise ValueError("explainers must name at least one explainer, e.g. ['lrp', 'gradcam']")
        try:
            self.explainers = [build_explainer(e) for e in explainers]
        except (ValueError, TypeError) as err:
            raise ValueError(f"ExplanationMonitor(explainers=...): {err}") from None
        labels = [e.label for e in self.explainers]
        if len(set(labels)) != len(labels):
            raise ValueError(
                f"ExplanationMonitor(explainers=...): labels {labels} repeat; configure repeated methods differently "
                "(e.g. LRP(composite='epsilon_plus_flat') and LRP(composite='epsilon_gamma_box'))"
            )
        if targets not in ("true", "predicted", "both"):
            raise ValueError(f"targets must be 'true', 'predicted' or 'both', got {targets!r}")
        if task is not None and task not in TASKS:
            raise ValueError(f"task must be one of {TASKS} or None, got {task!r}")
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1, got {every_n_epochs}")
        if images_every_n_epochs < 1:
            raise ValueError(f"images_every_n_epochs must be >= 1, got {images_every_n_epochs}")
        if tile < 16:
            raise ValueError(f"tile must be >= 16 pixels, got {tile}")
        if isinstance(probes, bool) or not isinstance(probes, (ProbeSelector, int, Probes)):
            raise TypeError("probes must be a ProbeSelector, a number of probes, or Probes (probes_from_tensors)")
        self.selector = ProbeSelector(num_probes=probes) if isinstance(probes, int) else probes
        self.probes: Optional[Probes] = probes if isinstance(probes, Probes) else None
        self._user_probes = isinstance(probes, Probes)
        self.every_n_epochs = every_n_epochs
        self.images_every_n_epochs = images_every_n_epochs
        self.targets = targets
        self.drift = drift if drift is not None else DriftTracker()
        self.module_attr = module_attr
        self.task = task
        self.class_names = class_names
        self.log_at_fit_start = log_at_fit_start
        self.explain_on_eval = explain_on_eval
        self.per_probe_scalars = per_probe_scalars
        self.tile = tile
        self.tag = tag
        self.verbose = verbose
        self.asynchronous = asynchronous
        self._background = Background(tag)
        self._reference_pool: Optional[Probes] = None
        self._outcome_pool: Optional[Probes] = None
        self._range: Any = None
        self._resolved_task: Optional[str] = None
        self._two_logits = False
        self._checked = False
        self._warned_degenerate: set[str] = set()
        # checkpointed state
        self.history: list[dict[str, Any]] = []
        self.last_epoch: Optional[int] = None  # last epoch explained or (asynchronous) handed to the thread
        self._finished_epoch: Optional[int] = None  # last epoch whose explanation is in history and drift
        self._restored_ids: Optional[list[int]] = None
        self._restored = False

    @property
    def labels(self) -> list[str]:
        return [e.label for e in self.explainers]

    # ------------------------------------------------------------------ checkpoint state
    @property
    def state_key(self) -> str:
        # the tag only: a resumed run with a changed explainer list keeps the state of the unchanged explainers
        return self._generate_state_key(tag=self.tag)

    def state_dict(self) -> dict[str, Any]:
        with self._background.lock:  # a background job may be adding an epoch right now
            return {
                "history": list(self.history),
                "drift": self.drift.state_dict(),
                "last_epoch": self._finished_epoch,
                "probe_ids": list(self.probes.ids) if self.probes is not None else None,
                "explainers": self.labels,
            }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))
        self.drift.load_state_dict(state_dict.get("drift", {}), methods=self.labels)
        self.last_epoch = self._finished_epoch = state_dict.get("last_epoch")
        self._restored_ids = state_dict.get("probe_ids")
        self._restored = True
        self._check_restored_probes()

    def _check_restored_probes(self) -> None:
        if self._restored_ids is None or self.probes is None:
            return
        if list(self._restored_ids) != list(self.probes.ids):
            rank_zero_warn(
                f"ExplanationMonitor: the checkpoint's probes {self._restored_ids} differ from the current ones "
                f"{self.probes.ids}; drift restarts from the next explained epoch"
            )
            self.drift.reset()
        self._restored_ids = None

    # ------------------------------------------------------------------ hooks
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if not trainer.is_global_zero:
            return  # only rank 0 explains
        self._check_single_process(trainer)
        self._range = value_range(trainer.datamodule)
        if self.probes is None:
            dataset = validation_dataset(trainer.datamodule, trainer)
            self.probes = self.selector.select(dataset)
            if any(isinstance(e, CRP) for e in self.explainers):
                self._reference_pool = self.selector.reference_candidates(dataset)
            if self.selector.per_outcome > 0:
                self._outcome_pool = self.selector.outcome_candidates(dataset)
        self._check_restored_probes()

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        self._prepare(trainer, pl_module)  # fails here, before the first epoch, whatever log_at_fit_start says
        tb = find_tensorboard(trainer)
        if tb is not None:
            self._write_layout(tb)
        self._log_probe_table(trainer, pl_module)
        resumed = self._restored or trainer.ckpt_path is not None or trainer.global_step > 0
        if self.log_at_fit_start and not self.history and not resumed and not trainer.fast_dev_run:
            self._start(trainer, pl_module, epoch=-1)  # baseline: the untrained model

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        fn = trainer.state.fn
        mode = "fit" if fn == "fit" else "eval"
        if mode == "fit":
            if not should_run(trainer, self.every_n_epochs):
                return
            if self.last_epoch is not None and trainer.current_epoch <= self.last_epoch:
                return  # already explained (e.g. resumed mid-epoch): never duplicate a drift point
        elif not self.explain_on_eval:
            return
        self._run_everywhere(trainer, pl_module, mode)

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.explain_on_eval:
            self._run_everywhere(trainer, pl_module, "eval")

    # ------------------------------------------------------------------ work
    def _prepare(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Resolve and check everything once (module, task, explainers' layers and composites) on rank 0."""
        if self._checked or self.probes is None:
            return
        module = explained_module(pl_module, self.module_attr)
        outputs = check_logits(module, self.probes.images[:2].clone())
        self._two_logits = outputs == 1
        task = task_of(trainer, pl_module, self.task)
        if task is None:
            task = "multilabel" if self.probes.targets.ndim == 2 else ("binary" if outputs <= 2 else "multiclass")
        if task == "multilabel" and self.probes.targets.ndim != 2:
            raise ValueError("task='multilabel' needs (N, K) multi-hot probe targets; set task= to the right one")
        self._resolved_task = task
        net = adapt_binary(module, outputs)
        for explainer in self.explainers:
            try:
                explainer.check(net)
            except Exception as err:  # noqa: BLE001 - re-raised naming the monitor's argument
                raise ValueError(
                    f"ExplanationMonitor(explainers=[... {explainer!r} ...]) cannot explain {type(module).__name__}: "
                    f"{err}"
                ) from err
        self._checked = True

    def _module(self, pl_module: LightningModule) -> torch.nn.Module:
        return adapt_binary(explained_module(pl_module, self.module_attr), 1 if self._two_logits else 2)

    def _start(self, trainer: Trainer, pl_module: LightningModule, epoch: int) -> None:
        """Explain ``epoch`` of a fit: now, or (asynchronous) a weight snapshot on the background thread."""
        pictures = self._pictures_due(trainer, epoch)
        if not self.asynchronous:
            self._run(trainer, self._module(pl_module), epoch, "fit", pictures=pictures)
            return
        if self.verbose:
            where = "initial model" if epoch < 0 else f"epoch {epoch}"
            notify(trainer, f"[{self.tag}] explaining {len(self.probes or [])} probes, {where}, in the background")

        def job(frozen: torch.nn.Module) -> dict[str, float]:
            return self._run(trainer, frozen, epoch, "fit", background=True, pictures=pictures)

        self._submit_snapshot(trainer, self._module(pl_module), job)
        self.last_epoch = epoch if epoch >= 0 else self.last_epoch

    def _pictures_due(self, trainer: Trainer, epoch: int) -> bool:
        if epoch < 0 or self.images_every_n_epochs == 1:
            return True
        last = trainer.max_epochs is not None and trainer.max_epochs > 0 and epoch + 1 >= trainer.max_epochs
        return last or (epoch + 1) % (self.every_n_epochs * self.images_every_n_epochs) == 0

    def _run_everywhere(self, trainer: Trainer, pl_module: LightningModule, mode: str) -> None:
        if self.asynchronous and mode == "fit":  # single process (see setup): nothing to broadcast
            self._prepare(trainer, pl_module)
            self._start(trainer, pl_module, trainer.current_epoch)
            return
        payload: Optional[dict[str, float]] = None
        if trainer.is_global_zero:
            self._prepare(trainer, pl_module)
            epoch = trainer.current_epoch
            pictures = mode != "fit" or self._pictures_due(trainer, epoch)
            payload = self._run(trainer, self._module(pl_module), epoch, mode, pictures=pictures)
        # every rank reaches the broadcast, so nothing deadlocks and all ranks hold the same history
        payload = trainer.strategy.broadcast(payload, src=0)
        publish(trainer, payload)
        if payload is not None and not trainer.is_global_zero and mode == "fit":
            self.history.append({"epoch": trainer.current_epoch, **payload})
            self.last_epoch = self._finished_epoch = trainer.current_epoch

    def _run(
        self,
        trainer: Trainer,
        module: torch.nn.Module,
        epoch: int,
        mode: str,
        background: bool = False,
        pictures: bool = True,
    ) -> dict[str, float]:
        """Explain, update drift, render and log one epoch (``background``: on the worker thread, ``module`` a
        snapshot; no RNG save/restore there, as the global RNG belongs to training: nothing here draws from it;
        ``pictures``: also search CRP references, explain outcome probes and log the pictures)."""
        if self.probes is None:
            return {}
        start = time.perf_counter()
        if self.verbose and not background:
            where = "initial model" if epoch < 0 else f"epoch {epoch}"
            labels = ", ".join(self.labels)
            notify(trainer, f"[{self.tag}] explaining {len(self.probes)} probes ({labels}), {where}")
        with contextlib.nullcontext() if background else preserve_rng():
            try:
                result = explain(
                    module, self.probes, self.explainers, self.targets, self._resolved_task or "multiclass"
                )
            except ExplainerError as err:
                raise RuntimeError(f"ExplanationMonitor(explainers=[... {err.label!r} ...]): {err}") from err.error
            references = self._concept_references(module, result) if pictures else None
            outcome = self._outcome_explanations(module) if mode == "fit" and pictures else None
        scalars: dict[str, float] = {}
        per_probe: dict[str, float] = {}
        if mode == "fit":
            primary = {label: maps[result.primary] for label, maps in result.maps.items()}
            with self._background.lock:
                means, per_probe = self.drift.update(primary, epoch, result.rows[result.primary].labels)
            scalars = {f"{self.tag}_drift/{k}": v for k, v in means.items()}
            self._warn_degenerate(result)
        scalars[f"{self.tag}_drift/time_s"] = time.perf_counter() - start
        step = epoch_step(epoch)
        if pictures:
            self._log_images(trainer, result, references, outcome, epoch, mode)
        log_scalars(trainer, scalars, step)
        if self.per_probe_scalars and per_probe:
            log_scalars(trainer, {f"{self.tag}_drift_probe/{k}": v for k, v in per_probe.items()}, step)
        if mode == "fit":
            with self._background.lock:
                self.history.append({"epoch": epoch, "step": step, **scalars})
                if epoch >= 0:
                    self.last_epoch = max(epoch, self.last_epoch if self.last_epoch is not None else epoch)
                    self._finished_epoch = epoch
        if self.verbose:
            where = "initial model" if epoch < 0 else f"epoch {epoch}"
            notify(trainer, f"[{self.tag}] explanations of {where} done in {time.perf_counter() - start:.1f} s")
        return scalars

    def _warn_degenerate(self, result: ProbeExplanations) -> None:
        rows = result.rows[result.primary]
        for label, bad in self.drift.degenerate.items():
            named = [rows.labels[i] for i in bad if i < len(rows.labels)]
            key = f"{label}:{named}"
            if named and key not in self._warned_degenerate:
                self._warned_degenerate.add(key)
                rank_zero_warn(
                    f"ExplanationMonitor: {label} heatmaps of probes {named} contain NaN/Inf; their drift is NaN and "
                    "left out of the means"
                )

    def _concept_references(self, module: torch.nn.Module, result: ProbeExplanations) -> Optional[dict]:
        if self._reference_pool is None or not result.concepts:
            return None
        crp = next(e for e in self.explainers if isinstance(e, CRP))
        concepts = result.concepts.get(crp.label)
        if concepts is None:
            return None
        channels = sorted({int(c) for c in concepts.channels.flatten().tolist()})
        pool = self._reference_pool
        targets = pool.targets if pool.targets.ndim == 1 else pool.targets.float().nan_to_num(0.0).argmax(1)
        refs = concept_references(
            module, pool.images, targets, layer=concepts.layer, channels=channels, n_ref=1, crp=crp
        )
        crops = refs.crops(self._to01(pool.images))  # (K, 1, 3, s, s): the most relevant region
        return {int(c): crops[k] for k, c in enumerate(refs.channels.tolist())}

    def _outcome_explanations(self, module: torch.nn.Module) -> Optional[tuple]:
        """True/false positives/negatives chosen again from the validation pool's current predictions."""
        pool = self._outcome_pool
        if pool is None or self._resolved_task == "multilabel":
            return None
        first = explain(module, pool, [], "true", self._resolved_task or "multiclass")
        picks = outcome_indices(first.probs, pool.targets, self.selector.per_outcome, seed=self.selector.seed)
        rows = [i for name in ("FP", "FN", "TP", "TN") for i in picks[name]]
        if not rows:
            return None
        names = {i: name for name in picks for i in picks[name]}
        maps_explainers = [e for e in self.explainers if e.kind == "map"][:1]
        if not maps_explainers:
            return None
        chosen = pool.subset(rows)
        result = explain(module, chosen, maps_explainers, "predicted", self._resolved_task or "multiclass")
        return result, chosen, [names[i] for i in rows]

    def _to01(self, images: torch.Tensor) -> torch.Tensor:
        return self._range.to01(images) if self._range is not None else minmax01(images)

    # ------------------------------------------------------------------ logging
    def _write_layout(self, tb: Any) -> None:
        measures = self.drift.measures
        layout = {
            f"{self.tag} drift": {
                f"{m} vs previous epoch": ["Multiline", [rf"{self.tag}_drift/.*/{m}_prev"]] for m in measures
            }
            | {f"{m} vs first epoch": ["Multiline", [rf"{self.tag}_drift/.*/{m}_first"]] for m in measures}
            | {"explanation time (s)": ["Multiline", [rf"{self.tag}_drift/time_s"]]},
            "shortcut": {
                "counterfactual shift": ["Multiline", [r".*shortcut/.*/counterfactual_shift"]],
                "relevance ratio": ["Multiline", [r".*shortcut/.*/relevance_ratio"]],
                "removal shift": ["Multiline", [r".*shortcut/.*/removal_shift"]],
                "relevance outside ROI": ["Multiline", [r".*shortcut/roi/.*"]],
                "alerts": ["Multiline", [r".*shortcut/alerts"]],
            },
        }
        tb.experiment.add_custom_scalars(layout)

    def _log_probe_table(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.probes is None:
            return
        names = class_names_of(trainer, pl_module, self.class_names)

        def label(t: torch.Tensor) -> str:
            if t.ndim == 0:
                return class_name(int(t), names)
            pos = (torch.nan_to_num(t.float(), nan=0.0) > 0.5).nonzero().flatten().tolist()
            return ", ".join(class_name(k, names) for k in pos) or "none"

        lines = ["| probe | validation index | class | artifact |", "|---|---|---|---|"]
        for i, t, a in zip(self.probes.ids, self.probes.targets, self.probes.artifact.tolist()):
            lines.append(f"| #{i} | {i} | {label(t)} | {'yes' if a else ''} |")
        log_text(trainer, f"{self.tag}/probes", "\n".join(lines), 0)

    def _log_images(
        self,
        trainer: Trainer,
        result: ProbeExplanations,
        references: Optional[dict],
        outcome: Optional[tuple],
        epoch: int,
        mode: str,
    ) -> None:
        names = class_names_of(trainer, trainer.lightning_module, self.class_names)
        images01 = self._to01(self.probes.images)
        step = epoch_step(epoch)
        suffix = "" if mode == "fit" else "/eval"
        epoch_label = "init" if epoch < 0 else f"ep{epoch}"
        if mode != "fit":
            epoch_label = f"ckpt {checkpoint_epoch(trainer)}"
        masks = self.probes.artifact_masks
        explained = {"true": "the true class", "pred": "the predicted class"}
        for kind, rows in result.rows.items():
            captions = result.captions(kind, names, epoch_label)
            row_images = images01[rows.probe]
            row_masks = None if masks is None else masks[rows.probe] & self.probes.artifact[rows.probe][:, None, None]
            for label, maps in result.maps.items():
                grid = explanation_grid(
                    row_images,
                    maps[kind],
                    captions,
                    tile=self.tile,
                    method=f"{result.descriptions.get(label, label)}, explaining {explained[kind]}",
                    masks=row_masks,
                    signed=label not in ("gradcam", "attention_gradcam"),
                )
                log_image(trainer, f"{self.tag}/{label}/{kind}{suffix}", grid, step)
            if kind == result.primary:
                for label, concepts in result.concepts.items():
                    grid = concept_grid(
                        row_images,
                        concepts.maps,
                        concepts.channels,
                        captions,
                        shares=concepts.shares,
                        references=references,
                        tile=max(64, self.tile * 3 // 4),
                        layer=concepts.layer,
                        method=result.descriptions.get(label, label),
                    )
                    log_image(trainer, f"{self.tag}/{label}/concepts{suffix}", grid, step)
        if outcome is not None:
            out_result, chosen, outcome_names = outcome
            captions = [f"{o} {c}" for o, c in zip(outcome_names, out_result.captions("pred", names, epoch_label))]
            label = next(iter(out_result.maps))
            grid = explanation_grid(
                self._to01(chosen.images),
                out_result.maps[label]["pred"],
                captions,
                tile=self.tile,
                method=f"{out_result.descriptions.get(label, label)}, explaining the predicted class",
                note="rows: false positives, false negatives, true positives, true negatives (re-picked every epoch)",
            )
            log_image(trainer, f"{self.tag}/{label}/outcomes", grid, step)
        if mode == "fit":
            rows = self._timeline_rows(result, names)
            for label, frames in self.drift.timeline.items():
                if label not in result.maps:
                    continue
                columns = ["init" if e < 0 else f"ep{e}" for e, _ in frames]
                grid = timeline_grid(
                    [f.float() for _, f in frames],
                    columns,
                    rows,
                    tile=max(40, self.tile // 2),
                    method=result.descriptions.get(label, label),
                    signed=label not in ("gradcam", "attention_gradcam"),
                )
                log_image(trainer, f"{self.tag}/{label}/timeline", grid, step)

    def _timeline_rows(self, result: ProbeExplanations, names: Optional[list[str]]) -> list[str]:
        """Row labels of the timeline: probe, true class, current prediction, artifact marker."""
        rows = result.rows[result.primary]
        return [
            f"{rows.labels[r]} {class_name(rows.true_label[r], names)}→{class_name(rows.pred_label[r], names)}"
            + (" [artifact]" if rows.artifact[r] else "")
            for r in range(len(rows))
        ]


def checkpoint_epoch(trainer: Trainer) -> str:
    """The epoch of the checkpoint being evaluated (``trainer.ckpt_path``), or the current epoch."""
    path = getattr(trainer, "ckpt_path", None)
    if path:
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
            return str(int(ckpt.get("epoch", trainer.current_epoch)))
        except Exception:  # noqa: BLE001 - a caption never fails an evaluation
            pass
    return str(trainer.current_epoch)
