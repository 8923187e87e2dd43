"""``ShortcutMonitor``: audit the training data for artifacts at fit start, measure the model's reliance on them
every N epochs, and raise a readable alert (text, JSON report, warning) once the model relies on one.

A thin Lightning shell over :mod:`lit_xai.artifacts` (registry, audit, :func:`~lit_xai.artifacts.measure_reliance`,
:class:`~lit_xai.artifacts.AlertRule`). It works in any Lightning project: plain ``(image, target)`` batches in any
value range, class names defaulting to indices, the task inferred from the targets. Everything it needs is checked
at setup / fit start, before the first epoch, and reported together with the arguments that fix it.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from typing import Any, Literal, Optional, Union

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn

from ..artifacts import ARTIFACTS, AlertRule, ReliancePool, measure_reliance
from ..artifacts.audit import add_skipped, audit_sample, eval_dataset, to_jsonable
from ..contracts import split_dataset
from ..explainers import Explainer, build_explainer
from ..probes import select_probes
from ..visualization import explanation_grid
from ._common import (
    Background,
    BackgroundHooks,
    adapt_binary,
    check_logits,
    class_names_of,
    epoch_step,
    explained_module,
    log_scalars,
    notify,
    preserve_rng,
    publish,
    should_run,
    task_of,
    value_range,
)
from .sinks import log_image, log_text

__all__ = ["ShortcutMonitor"]

TASKS = ("binary", "multiclass", "multilabel")
#: artifact images of a class below which the removal test also reads training images
MIN_REMOVAL_IMAGES = 16


class ShortcutMonitor(BackgroundHooks, Callback):
    """Detect shortcut artifacts in the data and the model's reliance on them, with alerts.

    At fit start it audits the training split (:func:`lit_xai.artifacts.audit_dataset`); every ``every_n_epochs``
    validation epochs it measures, per artifact and suspected class, the relevance-in-mask ratio on flagged
    validation images, the counterfactual shift of P(class) when the artifact is inserted into clean images of other
    classes, the shift when it is removed (artifacts with a remover), optionally a SpRAy cluster, and for datasets
    with a region of interest (``roi_mask`` items, e.g. lung masks) the share of relevance outside it. Scalars go to
    ``shortcut/<artifact>/<class>/...``; an alert (text, warning, ``shortcut_report.json`` in the run directory)
    fires once per (artifact, class) when the :class:`~lit_xai.artifacts.AlertRule` says so.

    Args:
        detectors: watched artifacts, names in :data:`lit_xai.artifacts.ARTIFACTS` with an inserter.
        every_n_epochs: measure reliance every N validation epochs (and at the last epoch).
        alert: the :class:`~lit_xai.artifacts.AlertRule` (thresholds, patience); None = defaults.
        target_class: class name (or index) to watch; None = the classes the audit finds the artifact predictive of,
            else the class it co-occurs with most.
        normalization: ``(mean, std)`` the model inputs were normalized with (when the datamodule does not say).
        input_range: ``(low, high)`` value range of raw model inputs, e.g. ``(0, 255)`` (alternative to
            ``normalization``).
        task: ``"binary"``, ``"multiclass"`` or ``"multilabel"``; None = from the module / datamodule, else inferred.
        class_names: names for reports; None = the module's / datamodule's, else the class indices.
        module_attr: attribute of the LightningModule that maps images to logits (None = its forward).
        explainer: map explainer for the relevance measures (name or object; default LRP).
        audit: audit the training split at fit start (``audit_max_samples`` seeded items; None = all).
        audit_max_samples: size of the audited subset.
        pool_size: validation images read once (seeded) for the reliance measures.
        num_probes: flagged images explained for the relevance ratio.
        num_counterfactual: clean images of other classes that get the artifact inserted.
        spray_samples: heatmaps of the suspected class clustered by SpRAy (0 = off).
        seed: selection / insertion seed.
        tag: prefix of every logged tag (default beside the explanation monitor's pictures, in TensorBoard's first
            group) and the checkpoint ``state_key``.
        verbose: print the audit and each measurement's duration.
        asynchronous: measure a snapshot of the weights on a background thread while training goes on (as
            :class:`~lit_xai.callbacks.ExplanationMonitor`'s option: results and alerts arrive during the next epoch,
            fit end waits for the last; single-process training only, else synchronous with a warning).
    """

    def __init__(
        self,
        detectors: Sequence[str] = ("ring",),
        every_n_epochs: int = 1,
        alert: Optional[AlertRule] = None,
        target_class: Optional[Union[str, int]] = None,
        normalization: Optional[tuple[tuple[float, float, float], tuple[float, float, float]]] = None,
        input_range: Optional[tuple[float, float]] = None,
        task: Optional[Literal["binary", "multiclass", "multilabel"]] = None,
        class_names: Optional[list[str]] = None,
        module_attr: Optional[str] = None,
        explainer: Union[str, Explainer] = "lrp",
        audit: bool = True,
        audit_max_samples: Optional[int] = 1024,
        pool_size: int = 256,
        num_probes: int = 8,
        num_counterfactual: int = 64,
        spray_samples: int = 64,
        seed: int = 0,
        tag: str = "XAI/shortcut",
        verbose: bool = True,
        asynchronous: bool = False,
    ) -> None:
        detectors = [detectors] if isinstance(detectors, str) else list(detectors)
        unknown = [d for d in detectors if d not in ARTIFACTS]
        if unknown or not detectors:
            raise ValueError(f"unknown artifacts {unknown or detectors}; choose from {', '.join(sorted(ARTIFACTS))}")
        no_inserter = [d for d in detectors if ARTIFACTS[d].insert is None]
        if no_inserter:
            raise ValueError(
                f"artifacts {no_inserter} have no inserter, so their counterfactual test cannot run; register one "
                "with lit_xai.artifacts.register_artifact(name, detect=..., threshold=..., insert=...) or audit them "
                "with lit_xai.artifacts.audit_dataset instead of watching them"
            )
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1, got {every_n_epochs}")
        if normalization is not None and input_range is not None:
            raise ValueError("give normalization=(mean, std) or input_range=(low, high), not both")
        if task is not None and task not in TASKS:
            raise ValueError(f"task must be one of {TASKS} or None, got {task!r}")
        for name, value, low in (
            ("pool_size", pool_size, 4),
            ("num_probes", num_probes, 1),
            ("num_counterfactual", num_counterfactual, 2),
            ("spray_samples", spray_samples, 0),
        ):
            if value < low:
                raise ValueError(f"{name} must be >= {low}, got {value}")
        if audit_max_samples is not None and audit_max_samples < 1:
            raise ValueError(f"audit_max_samples must be >= 1 or None, got {audit_max_samples}")
        self.detectors = tuple(detectors)
        self.every_n_epochs = every_n_epochs
        self.rule = alert if alert is not None else AlertRule()
        self.target_class = target_class
        self.normalization = normalization
        self.input_range = input_range
        self.task = task
        self.class_names = class_names
        self.module_attr = module_attr
        self.explainer = build_explainer(explainer)
        self.audit = audit
        self.audit_max_samples = audit_max_samples
        self.pool_size = pool_size
        self.num_probes = num_probes
        self.num_counterfactual = num_counterfactual
        self.spray_samples = spray_samples
        self.seed = seed
        self.tag = tag
        self.verbose = verbose
        self.asynchronous = asynchronous
        self._background = Background(tag)
        self.report_name = "shortcut_report.json"
        self.alerts: list[dict[str, Any]] = []
        self.history: list[dict[str, Any]] = []
        self.audit_report: Optional[dict[str, Any]] = None
        self._audit_flags: dict[str, list[str]] = {}
        self._pool: Optional[ReliancePool] = None
        self._train_pool: Optional[ReliancePool] = None
        self._log_dir: Optional[str] = None
        self._range: Any = None
        self._names: list[str] = []
        self._task: str = "multiclass"
        self._two_logits = False
        self._train_data: Any = None
        self._val_data: Any = None

    # ------------------------------------------------------------------ state
    @property
    def state_key(self) -> str:
        return self._generate_state_key(tag=self.tag, detectors=self.detectors)

    def state_dict(self) -> dict[str, Any]:
        with self._background.lock:  # a background measurement may be adding an epoch right now
            return {
                "alerts": list(self.alerts),
                "history": list(self.history),
                "audit": self.audit_report,
                "audit_flags": dict(self._audit_flags),
                "rule": self.rule.state_dict(),
            }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.alerts = list(state_dict.get("alerts", []))
        self.history = list(state_dict.get("history", []))
        self.audit_report = state_dict.get("audit")
        self._audit_flags = dict(state_dict.get("audit_flags", {}))
        self.rule.load_state_dict(state_dict.get("rule", {}))

    # ------------------------------------------------------------------ hooks
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        # trainer.log_dir broadcasts: resolve it here, on every rank, never inside rank-0-only code
        self._log_dir = trainer.log_dir or trainer.default_root_dir
        if stage != "fit":
            return
        self._check_single_process(trainer)
        dm = trainer.datamodule
        problems: list[str] = []
        self._range = value_range(dm, self.normalization, self.input_range)
        if self._range is None:
            problems.append(
                "the value range of the model inputs is unknown (artifacts are inserted into images in [0, 1]): pass "
                "normalization=(mean, std) or input_range=(low, high), or use a datamodule with normalize/denormalize"
            )
        try:
            self._val_data = split_dataset(dm, "val", trainer)
        except ValueError as err:
            problems.append(f"{err} (the reliance measures run on validation images)")
        if self.audit:
            try:
                self._train_data = split_dataset(dm, "train", trainer)
            except ValueError as err:
                problems.append(f"{err}; or pass audit=False")
        if problems:
            raise ValueError("ShortcutMonitor cannot run:\n- " + "\n- ".join(problems))

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # every rank checks (deterministically) so a bad setup fails everywhere instead of hanging DDP
        self._prepare(trainer, pl_module)
        if not trainer.is_global_zero or not self.audit or self.audit_report is not None:
            return
        start = time.perf_counter()
        report = audit_sample(
            eval_dataset(self._train_data, trainer.datamodule),
            max_samples=self.audit_max_samples,
            seed=self.seed,
            class_names=self._names,
            detectors=self.detectors,
            task=self._task,
            denormalize=self._range.to01,
        )
        report = add_skipped(report, trainer.datamodule)
        self.audit_report = report.to_dict()
        self._audit_flags = {name: list(a.predictive_classes) for name, a in report.artifacts.items()}
        summary = report.summary()
        if self.verbose:
            notify(trainer, f"[{self.tag}] dataset audit ({time.perf_counter() - start:.1f} s):\n{summary}")
        # a markdown list wraps in TensorBoard's text view (a code block would cut long lines off on the right)
        log_text(trainer, f"{self.tag}/audit", "\n".join(f"- {line}" for line in summary.splitlines()), 0)
        self._write_report()

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit" or not should_run(trainer, self.every_n_epochs):
            return
        epoch = trainer.current_epoch
        if self.asynchronous:  # single process (see setup)

            def job(frozen: torch.nn.Module) -> dict[str, float]:
                return self._measure(trainer, frozen, epoch)[0]  # the scalars to publish

            self._submit_snapshot(trainer, self._module(pl_module), job)
            return
        payload = None
        if trainer.is_global_zero:
            with preserve_rng(), torch.inference_mode(False):
                payload = self._measure(trainer, self._module(pl_module), epoch)
        payload = trainer.strategy.broadcast(payload, src=0)
        if payload:
            publish(trainer, payload[0])
            if not trainer.is_global_zero:
                self.alerts.extend(payload[1])

    # ------------------------------------------------------------------ work
    def _prepare(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._pool is not None:
            return
        n = len(self._val_data)
        if n == 0:
            raise ValueError("ShortcutMonitor: the validation set is empty")
        ids = sorted(torch.randperm(n, generator=torch.Generator().manual_seed(self.seed))[: self.pool_size].tolist())
        read = select_probes(self._val_data, indices=ids)  # the same item reading as the explanation probes
        module = explained_module(pl_module, self.module_attr)
        outputs = check_logits(module, read.images[:2])
        self._two_logits = outputs == 1
        num_classes = 2 if outputs == 1 else outputs
        task = task_of(trainer, pl_module, self.task)
        if task is None:
            task = "multilabel" if read.targets.ndim == 2 else ("binary" if num_classes == 2 else "multiclass")
        self._task = task
        names = class_names_of(trainer, pl_module, self.class_names) or [str(k) for k in range(num_classes)]
        if len(names) != num_classes:
            raise ValueError(
                f"ShortcutMonitor: {len(names)} class names {names} for a model with {num_classes} classes; pass "
                "class_names= with one name per class"
            )
        self._names = names
        if self.target_class is not None and str(self.target_class) not in names:
            raise ValueError(f"target_class {self.target_class!r} is not a class; choose from {names}")
        labels = read.targets
        if labels.ndim > 1:  # multilabel: the first positive label stands for the image here
            labels = labels.float().nan_to_num(0.0).argmax(1)
        self._pool = ReliancePool(self._range.to01(read.images), read.images, labels.long(), ids, read.roi_masks)
        for name in self.detectors:
            self._pool.detect(name)

    def _removal_pool(self, trainer: Trainer, artifact: str, cls: int) -> Optional[ReliancePool]:
        """Training images for the removal test when the validation pool has too few artifact images of ``cls``
        (read once, ``pool_size`` seeded items; None without a training split)."""
        pool = self._pool
        if int((pool.flags[artifact] & (pool.labels == cls)).sum()) >= MIN_REMOVAL_IMAGES or self._train_data is None:
            return None
        if self._train_pool is None:
            data = eval_dataset(self._train_data, trainer.datamodule)
            gen = torch.Generator().manual_seed(self.seed)
            ids = sorted(torch.randperm(len(data), generator=gen)[: self.pool_size].tolist())
            read = select_probes(data, indices=ids)
            labels = read.targets
            if labels.ndim > 1:
                labels = labels.float().nan_to_num(0.0).argmax(1)
            self._train_pool = ReliancePool(
                self._range.to01(read.images), read.images, labels.long(), ids, read.roi_masks, split="train"
            )
        return self._train_pool

    def _module(self, pl_module: LightningModule) -> torch.nn.Module:
        return adapt_binary(explained_module(pl_module, self.module_attr), 1 if self._two_logits else 2)

    def _targets_for(self, artifact: str) -> list[int]:
        if self.target_class is not None:
            return [self._names.index(str(self.target_class))]
        flagged = self._audit_flags.get(artifact, [])
        if flagged:
            return [self._names.index(c) for c in flagged if c in self._names]
        # not label-predictive in the data: still watch the class the artifact co-occurs with most
        pool = self._pool
        flags = pool.flags[artifact]
        if flags.any():
            counts = torch.bincount(pool.labels[flags], minlength=len(self._names)).float()
            base = torch.bincount(pool.labels, minlength=len(self._names)).float().clamp_min(1)
            return [int((counts / base).argmax())]
        return []

    def _measure(self, trainer: Trainer, module: torch.nn.Module, epoch: int) -> tuple[dict[str, float], list[dict]]:
        """Measure, alert and log one epoch (asynchronous: on the worker thread, ``module`` a snapshot).

        What a checkpoint reads (history, alerts, the rule's streaks) changes only under the background lock.
        """
        step = epoch_step(epoch)
        start = time.perf_counter()
        scalars: dict[str, float] = {}
        new_alerts: list[dict[str, Any]] = []
        for artifact in self.detectors:
            for cls in self._targets_for(artifact):
                name = self._names[cls]
                evidence = measure_reliance(
                    module,
                    self._pool,
                    artifact,
                    cls,
                    self._range.from01,
                    explainer=self.explainer,
                    task=self._task,
                    num_probes=self.num_probes,
                    num_counterfactual=self.num_counterfactual,
                    spray_samples=self.spray_samples,
                    seed=self.seed,
                    removal_pool=self._removal_pool(trainer, artifact, cls),
                    confidence=self.rule.confidence,
                )
                scalars |= _evidence_scalars(f"{self.tag}/{artifact}/{name}", evidence)
                heat = evidence.pop("heatmaps", None)
                if heat is not None and len(heat):
                    rows = torch.as_tensor(evidence["probe_rows"]).long()
                    captions = [f"val #{self._pool.ids[int(r)]}, {artifact} detected" for r in rows]
                    grid = explanation_grid(
                        self._pool.images01[rows],
                        heat,
                        captions,
                        tile=96,
                        method=f"{self.explainer.describe()} for '{name}' on validation images with a {artifact}",
                        masks=self._pool.masks[artifact][rows],
                    )
                    log_image(trainer, f"{self.tag}/{artifact}/flagged_probes", grid, step)
                audit_flagged = name in self._audit_flags.get(artifact, [])
                met = self.rule.met(evidence, audit_flagged)
                record = {"epoch": epoch, "artifact": artifact, "class": name, **to_jsonable(evidence), "rule_met": met}
                with self._background.lock:
                    self.history.append(record)
                    fires = self.rule.update(f"{artifact}/{name}", met)
                if fires:
                    message = AlertRule.message(artifact, name, evidence, audit_flagged, self.rule.passing(evidence))
                    new_alerts.append(self._alert(trainer, artifact, name, epoch, evidence, audit_flagged, message))
        scalars |= self._measure_roi(trainer, module, epoch, new_alerts)
        scalars[f"{self.tag}/alerts"] = float(len(self.alerts))
        scalars[f"{self.tag}/time_s"] = time.perf_counter() - start
        log_scalars(trainer, scalars, step)
        self._write_report()
        return scalars, new_alerts

    def _measure_roi(self, trainer: Trainer, module: torch.nn.Module, epoch: int, new_alerts: list) -> dict[str, float]:
        """Share of positive relevance outside the region of interest, per class (datasets with ``roi_mask``)."""
        pool = self._pool
        if pool.roi_masks is None:
            return {}
        from ..artifacts.roi import relevance_outside_roi

        scalars: dict[str, float] = {}
        for cls, name in enumerate(self._names):
            members = (pool.labels == cls).nonzero().flatten()[: self.num_probes]
            if len(members) == 0:
                continue
            heat = self.explainer(module, pool.inputs[members], torch.full((len(members),), cls))
            share = relevance_outside_roi(heat, pool.roi_masks[members])
            mean = float(torch.nanmean(share)) if not torch.isnan(share).all() else math.nan
            if math.isnan(mean):
                continue
            scalars[f"{self.tag}/roi/{name}/outside_share"] = mean
            with self._background.lock:
                self.history.append({"epoch": epoch, "artifact": "roi", "class": name, "outside_share": mean})
                fires = self.rule.update(f"roi/{name}", self.rule.met_roi(mean))
            if fires:
                message = AlertRule.roi_message(name, mean, len(members))
                new_alerts.append(self._alert(trainer, "roi", name, epoch, {"outside_share": mean}, False, message))
        return scalars

    def _alert(
        self, trainer: Trainer, artifact: str, name: str, epoch: int, evidence: dict, audit_flagged: bool, message: str
    ) -> dict[str, Any]:
        alert = {
            "artifact": artifact,
            "epoch": epoch,
            "class": name,
            "evidence": {**to_jsonable(evidence), "audit_label_predictive": audit_flagged},
            "message": message,
        }
        with self._background.lock:
            self.alerts.append(alert)
        rank_zero_warn(f"ShortcutMonitor alert: {message}")
        log_text(trainer, f"{self.tag}/alerts", f"**epoch {epoch}**: {message}", epoch_step(epoch))
        return alert

    def _write_report(self) -> None:
        if self._log_dir is None:
            return
        os.makedirs(self._log_dir, exist_ok=True)
        report = {
            "alerts": self.alerts,
            "audit": self.audit_report,
            "history": self.history,
            "criteria": self.rule.criteria(),
        }
        with open(os.path.join(self._log_dir, self.report_name), "w") as fh:
            json.dump(to_jsonable(report), fh, indent=2)


def _evidence_scalars(prefix: str, evidence: dict[str, Any]) -> dict[str, float]:
    values = {
        "relevance_ratio": evidence.get("relevance_ratio", math.nan),
        "counterfactual_shift": evidence.get("counterfactual", {}).get("mean_shift", math.nan),
        "counterfactual_flip_rate": evidence.get("counterfactual", {}).get("flip_rate", math.nan),
        "removal_shift": evidence.get("removal", {}).get("mean_shift", math.nan),
        "insertion_effect": evidence.get("counterfactual", {}).get("effect", math.nan),
        "removal_effect": evidence.get("removal", {}).get("effect", math.nan),
    }
    if "spray" in evidence:
        values["spray_flagged"] = float(evidence["spray"]["flagged"])
    return {f"{prefix}/{k}": float(v) for k, v in values.items() if v is not None and not math.isnan(v)}
