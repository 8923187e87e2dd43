"""``ShortcutMonitor``: audit the training data for artifacts at fit start, measure the model's reliance on them
every N epochs, and raise a readable alert (TensorBoard text, JSON report, warning) once the model relies on one.

A thin Lightning shell over :mod:`lit_xai.artifacts` (detectors, audit, reliance measures, SpRAy) and
:class:`lit_xai.explainers.LRP`.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from typing import Any, Optional

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn

from ..artifacts import (
    DEFAULT_THRESHOLDS,
    DETECTORS,
    artifact_cluster,
    audit_datamodule,
    counterfactual_shift,
    get_detector,
    insert_marker,
    insert_ring,
    relevance_in_mask,
    removal_shift,
    spray,
)
from ..artifacts.audit import to_jsonable
from ._common import denormalizer, explained_module, find_tensorboard, notify, preserve_rng, should_run
from ._render import explanation_grid
from .probes import select_probes, validation_dataset

__all__ = ["ShortcutMonitor", "INSERTERS", "ReliancePool", "measure_reliance", "alert_decision"]

#: artifact name -> seeded inserter used by the counterfactual test
INSERTERS = {"ring": insert_ring, "dark_corners": insert_ring, "marker": insert_marker}


class ReliancePool:
    """Validation images (in [0, 1]) with labels and detector results, read once and reused every epoch."""

    def __init__(self, images01: torch.Tensor, inputs: torch.Tensor, labels: torch.Tensor, ids: list[int]) -> None:
        self.images01, self.inputs, self.labels, self.ids = images01, inputs, labels, ids
        self.flags: dict[str, torch.Tensor] = {}
        self.masks: dict[str, torch.Tensor] = {}

    def detect(self, name: str) -> None:
        scores, masks = get_detector(name)(self.images01)
        self.flags[name] = scores >= DEFAULT_THRESHOLDS[name]
        self.masks[name] = masks


def measure_reliance(
    module: torch.nn.Module,
    pool: ReliancePool,
    artifact: str,
    target_class: int,
    normalize: Any,
    task: str = "multiclass",
    num_probes: int = 16,
    num_counterfactual: int = 64,
    spray_samples: int = 0,
    lrp_composite: Optional[str] = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Reliance of ``module`` on ``artifact`` as evidence for ``target_class`` (pure; no Lightning).

    Returns a dict with ``relevance_ratio`` (mean relevance-in-mask of LRP maps of flagged images, 1 = no
    preference), ``counterfactual`` (shift of P(target) when the artifact is inserted into clean images of the other
    classes), ``removal`` (shift when it is removed from flagged images of the target class), optionally ``spray``
    (artifact cluster among the target class's heatmaps), and the flagged probe indices used.
    """
    from ..explainers import LRP

    flags, masks = pool.flags[artifact], pool.masks[artifact]
    labels = pool.labels
    out: dict[str, Any] = {"artifact": artifact, "target_class": target_class}
    flagged = flags.nonzero().flatten()[:num_probes]
    out["probe_rows"] = flagged.tolist()
    lrp = LRP(composite=lrp_composite)
    if len(flagged):
        heat = lrp(module, pool.inputs[flagged], torch.full((len(flagged),), target_class))
        out["heatmaps"] = heat
        ratio = relevance_in_mask(heat, masks[flagged])
        out["relevance_ratio"] = float(torch.nanmean(ratio)) if not torch.isnan(ratio).all() else math.nan
    else:
        out["relevance_ratio"] = math.nan
    clean_other = ((~flags) & (labels != target_class)).nonzero().flatten()[:num_counterfactual]
    if len(clean_other) >= 2:
        cf = counterfactual_shift(
            module,
            pool.images01[clean_other],
            target_class,
            INSERTERS.get(artifact, insert_ring),
            normalize=normalize,
            task=task,
            seed=seed,
        )
        out["counterfactual"] = {k: v for k, v in cf.items() if k not in ("shifts", "masks")}
    flagged_target = (flags & (labels == target_class)).nonzero().flatten()[:num_counterfactual]
    if artifact in ("ring", "dark_corners") and len(flagged_target) >= 2:
        rm = removal_shift(
            module,
            pool.images01[flagged_target],
            target_class,
            masks=masks[flagged_target],
            normalize=normalize,
            task=task,
        )
        out["removal"] = {k: v for k, v in rm.items() if k not in ("shifts", "masks")}
    if spray_samples > 0:
        members = (labels == target_class).nonzero().flatten()[:spray_samples]
        if len(members) >= 12:
            heat = lrp(module, pool.inputs[members], torch.full((len(members),), target_class))
            result = spray(heat, n_neighbors=min(10, len(members) - 1))
            found = artifact_cluster(result, heat, masks[members])
            cluster_flags = flags[members]
            entry: dict[str, Any] = {"n": len(members), "clusters": result.n_clusters, "flagged": found.flagged}
            if found.flagged and found.cluster is not None:
                in_cluster = torch.as_tensor(result.labels == found.cluster)
                entry["cluster_size"] = int(in_cluster.sum())
                entry["cluster_artifact_share"] = float(cluster_flags[in_cluster].float().mean())
                entry["rest_artifact_share"] = (
                    float(cluster_flags[~in_cluster].float().mean()) if (~in_cluster).any() else math.nan
                )
            out["spray"] = entry
    return out


def alert_decision(
    evidence: dict[str, Any], audit_flagged: bool, shift_threshold: float, relevance_threshold: float
) -> bool:
    """Alert when inserting the artifact moves predictions towards the class by at least ``shift_threshold`` AND
    either the relevance concentrates on the artifact (ratio ≥ ``relevance_threshold``) or the audit found the
    artifact label-predictive. The counterfactual shift is the causal test; the second condition guards against a
    shift caused by the inserted pixels merely looking like class evidence."""
    shift = evidence.get("counterfactual", {}).get("mean_shift", math.nan)
    ratio = evidence.get("relevance_ratio", math.nan)
    if not (isinstance(shift, float) and shift >= shift_threshold):
        return False
    return audit_flagged or (not math.isnan(ratio) and ratio >= relevance_threshold)


class ShortcutMonitor(Callback):
    """Detect shortcut artifacts in the data and the model's reliance on them, with alerts.

    At fit start it audits the training split (:func:`lit_xai.artifacts.audit_datamodule`); every
    ``every_n_epochs`` validation epochs it measures, per artifact and suspected class, the LRP relevance-in-mask
    ratio on flagged validation images, the counterfactual shift of P(class) when the artifact is inserted into clean
    images of the other classes, the shift when it is removed, and (optionally) a SpRAy artifact cluster. Scalars go
    to ``shortcut/<artifact>/...``; an alert (dict, TensorBoard text, warning and ``shortcut_report.json`` in the
    run directory) is raised once per (artifact, class) when :func:`alert_decision` says so.

    Args:
        detectors: artifact detectors, keys of :data:`lit_xai.artifacts.DETECTORS`.
        every_n_epochs: measure reliance every N validation epochs (and at the last epoch).
        audit: run the dataset audit at fit start.
        audit_max_samples: audit a seeded subset of the training split of this size (None = all).
        pool_size: validation images read once (seeded) for the reliance measures.
        num_probes: flagged images explained with LRP for the relevance ratio.
        num_counterfactual: clean images of the other classes that get the artifact inserted.
        spray_samples: heatmaps of the suspected class clustered by SpRAy (0 = off).
        shift_threshold: counterfactual mean shift of P(class) that counts as reliance.
        relevance_threshold: relevance-in-mask ratio that counts as concentrated on the artifact.
        patience: consecutive measurements that must meet the rule before the alert fires (early in training a
            network briefly leans on any salient pattern, even an uninformative one; a shortcut persists).
        target_class: class name to watch; None = the classes the audit finds the artifact predictive of, else
            the class most associated with it.
        lrp_composite, module_attr: as for :class:`ExplanationMonitor`.
        report_name: JSON report file name in the run directory.
        seed: selection / insertion seed.
        tag: prefix of logged tags and part of the ``state_key``.
    """

    def __init__(
        self,
        detectors: Sequence[str] = ("ring",),
        every_n_epochs: int = 1,
        audit: bool = True,
        audit_max_samples: Optional[int] = 1024,
        pool_size: int = 256,
        num_probes: int = 8,
        num_counterfactual: int = 64,
        spray_samples: int = 64,
        shift_threshold: float = 0.2,
        relevance_threshold: float = 1.5,
        patience: int = 2,
        target_class: Optional[str] = None,
        lrp_composite: Optional[str] = None,
        module_attr: Optional[str] = None,
        report_name: str = "shortcut_report.json",
        seed: int = 0,
        tag: str = "shortcut",
        verbose: bool = True,
    ) -> None:
        unknown = [d for d in detectors if d not in DETECTORS]
        if unknown or not detectors:
            raise ValueError(f"unknown artifact detectors {unknown or detectors}; choose from {', '.join(DETECTORS)}")
        if every_n_epochs < 1:
            raise ValueError("every_n_epochs must be >= 1")
        if patience < 1:
            raise ValueError("patience must be >= 1")
        self.detectors = tuple(detectors)
        self.every_n_epochs = every_n_epochs
        self.audit = audit
        self.audit_max_samples = audit_max_samples
        self.pool_size = pool_size
        self.num_probes = num_probes
        self.num_counterfactual = num_counterfactual
        self.spray_samples = spray_samples
        self.shift_threshold = shift_threshold
        self.relevance_threshold = relevance_threshold
        self.patience = patience
        self.target_class = target_class
        self.lrp_composite = lrp_composite
        self.module_attr = module_attr
        self.report_name = report_name
        self.seed = seed
        self.tag = tag
        self.verbose = verbose
        self.alerts: list[dict[str, Any]] = []
        self.history: list[dict[str, Any]] = []
        self.audit_report: Optional[dict[str, Any]] = None
        self._audit_flags: dict[str, list[str]] = {}
        self._streak: dict[str, int] = {}
        self._pool: Optional[ReliancePool] = None
        self._log_dir: Optional[str] = None
        self._datamodule: Any = None
        self._class_names: list[str] = []

    # ------------------------------------------------------------------ state
    @property
    def state_key(self) -> str:
        return self._generate_state_key(tag=self.tag, detectors=self.detectors)

    def state_dict(self) -> dict[str, Any]:
        return {
            "alerts": list(self.alerts),
            "history": list(self.history),
            "audit": self.audit_report,
            "audit_flags": dict(self._audit_flags),
            "streak": dict(self._streak),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.alerts = list(state_dict.get("alerts", []))
        self.history = list(state_dict.get("history", []))
        self.audit_report = state_dict.get("audit")
        self._audit_flags = dict(state_dict.get("audit_flags", {}))
        self._streak = dict(state_dict.get("streak", {}))

    # ------------------------------------------------------------------ hooks
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        # trainer.log_dir broadcasts: resolve it here, on every rank, never inside rank-0-only code
        self._log_dir = trainer.log_dir or trainer.default_root_dir
        dm = trainer.datamodule
        if dm is None or not hasattr(dm, "normalize") or not hasattr(dm, "class_names"):
            raise ValueError(
                "ShortcutMonitor needs a datamodule exposing class_names, normalize and denormalize "
                "(e.g. a lit_xai ImageDataModule) to insert artifacts into images"
            )
        self._datamodule = dm
        self._class_names = list(dm.class_names)
        if self.target_class is not None and self.target_class not in self._class_names:
            raise ValueError(f"target_class {self.target_class!r} is not a class; choose from {self._class_names}")
        if trainer.is_global_zero and self._pool is None:
            self._pool = self._read_pool(trainer, dm)

    def _read_pool(self, trainer: Trainer, dm: Any) -> ReliancePool:
        dataset = validation_dataset(dm, trainer)
        n = len(dataset)
        ids = sorted(np.random.default_rng(self.seed).permutation(n)[: min(n, self.pool_size)].tolist())
        read = select_probes(dataset, indices=ids)  # the same item reading/stacking as the explanation probes
        inputs, labels = read.images, read.targets
        if labels.ndim > 1:  # multilabel: the first positive label stands for the image here
            labels = labels.float().nan_to_num(0.0).argmax(1)
        pool = ReliancePool(denormalizer(trainer)(inputs), inputs, labels.long(), ids)
        for name in self.detectors:
            pool.detect(name)
        return pool

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero or not self.audit or self.audit_report is not None:
            return
        start = time.perf_counter()
        report = audit_datamodule(
            self._datamodule, "train", detectors=self.detectors, max_samples=self.audit_max_samples, seed=self.seed
        )
        self.audit_report = report.to_dict()
        self._audit_flags = {name: list(a.predictive_classes) for name, a in report.artifacts.items()}
        if self.verbose:
            notify(trainer, f"[{self.tag}] dataset audit ({time.perf_counter() - start:.1f} s):\n{report.summary()}")
        tb = find_tensorboard(trainer)
        if tb is not None:
            tb.experiment.add_text(f"{self.tag}/audit", "    " + report.summary().replace("\n", "\n    "), 0)
        self._write_report()

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit" or not should_run(trainer, self.every_n_epochs):
            return
        payload = None
        if trainer.is_global_zero:
            with preserve_rng(), torch.inference_mode(False):
                payload = self._measure(trainer, pl_module)
        payload = trainer.strategy.broadcast(payload, src=0)
        if payload:
            scalars, new_alerts = payload
            if not trainer.is_global_zero:
                self.alerts.extend(new_alerts)
            pl_module.log_dict(scalars, sync_dist=False)

    # ------------------------------------------------------------------ work (rank 0)
    def _targets_for(self, artifact: str) -> list[int]:
        if self.target_class is not None:
            return [self._class_names.index(self.target_class)]
        flagged = self._audit_flags.get(artifact, [])
        if flagged:
            return [self._class_names.index(c) for c in flagged if c in self._class_names]
        # not label-predictive in the data: still watch the class the artifact co-occurs with most
        pool = self._pool
        flags = pool.flags[artifact]
        if flags.any():
            counts = torch.bincount(pool.labels[flags], minlength=len(self._class_names)).float()
            base = torch.bincount(pool.labels, minlength=len(self._class_names)).float().clamp_min(1)
            return [int((counts / base).argmax())]
        return []

    def _measure(self, trainer: Trainer, pl_module: LightningModule) -> tuple[dict[str, float], list[dict]]:
        epoch = trainer.current_epoch
        start = time.perf_counter()
        module = explained_module(pl_module, self.module_attr)
        task = getattr(pl_module, "task", None) or getattr(self._datamodule, "task", "multiclass")
        scalars: dict[str, float] = {}
        new_alerts: list[dict[str, Any]] = []
        tb = find_tensorboard(trainer)
        for artifact in self.detectors:
            for cls in self._targets_for(artifact):
                name = self._class_names[cls]
                evidence = measure_reliance(
                    module,
                    self._pool,
                    artifact,
                    cls,
                    self._datamodule.normalize,
                    task=str(task),
                    num_probes=self.num_probes,
                    num_counterfactual=self.num_counterfactual,
                    spray_samples=self.spray_samples,
                    lrp_composite=self.lrp_composite,
                    seed=self.seed,
                )
                prefix = f"{self.tag}/{artifact}/{name}"
                values = {
                    "relevance_ratio": evidence.get("relevance_ratio", math.nan),
                    "counterfactual_shift": evidence.get("counterfactual", {}).get("mean_shift", math.nan),
                    "counterfactual_flip_rate": evidence.get("counterfactual", {}).get("flip_rate", math.nan),
                    "removal_shift": evidence.get("removal", {}).get("mean_shift", math.nan),
                }
                if "spray" in evidence:
                    values["spray_flagged"] = float(evidence["spray"]["flagged"])
                for key, value in values.items():
                    if value is not None and not math.isnan(value):
                        scalars[f"{prefix}/{key}"] = float(value)
                heat = evidence.pop("heatmaps", None)
                if tb is not None and heat is not None and len(heat):
                    rows = torch.as_tensor(evidence["probe_rows"]).long()
                    captions = [f"val #{self._pool.ids[int(r)]} {artifact} -> {name}" for r in rows]
                    grid = explanation_grid(self._pool.images01[rows], heat, captions, tile=96)
                    tb.experiment.add_image(f"{self.tag}/{artifact}/flagged_probes", grid, trainer.global_step)
                record = {"epoch": epoch, "artifact": artifact, "class": name, **to_jsonable(evidence)}
                self.history.append(record)
                already = any(a["artifact"] == artifact and a["class"] == name for a in self.alerts)
                audit_flagged = name in self._audit_flags.get(artifact, [])
                key = f"{artifact}/{name}"
                met = alert_decision(evidence, audit_flagged, self.shift_threshold, self.relevance_threshold)
                self._streak[key] = self._streak.get(key, 0) + 1 if met else 0
                record["rule_met"] = met
                if not already and self._streak[key] >= self.patience:
                    alert = {
                        "artifact": artifact,
                        "epoch": epoch,
                        "class": name,
                        "evidence": {**to_jsonable(evidence), "audit_label_predictive": audit_flagged},
                        "message": _message(artifact, name, evidence, audit_flagged),
                    }
                    self.alerts.append(alert)
                    new_alerts.append(alert)
                    rank_zero_warn(f"ShortcutMonitor alert: {alert['message']}")
                    if tb is not None:
                        tb.experiment.add_text(f"{self.tag}/alerts", alert["message"], trainer.global_step)
        scalars[f"{self.tag}/alerts"] = float(len(self.alerts))
        scalars[f"{self.tag}/time_s"] = time.perf_counter() - start
        self._write_report()
        return scalars, new_alerts

    def _write_report(self) -> None:
        if self._log_dir is None:
            return
        os.makedirs(self._log_dir, exist_ok=True)
        report = {
            "alerts": self.alerts,
            "audit": self.audit_report,
            "history": self.history,
            "criteria": {
                "shift_threshold": self.shift_threshold,
                "relevance_threshold": self.relevance_threshold,
                "patience": self.patience,
            },
        }
        with open(os.path.join(self._log_dir, self.report_name), "w") as fh:
            json.dump(to_jsonable(report), fh, indent=2)


def _message(artifact: str, cls: str, evidence: dict[str, Any], audit_flagged: bool) -> str:
    cf = evidence.get("counterfactual", {})
    parts = [
        f"the model relies on the {artifact} artifact as evidence for '{cls}': inserting it into {cf.get('n', 0)} "
        f"clean images of other classes raises P({cls}) by {cf.get('mean_shift', math.nan):+.2f} on average "
        f"({100 * cf.get('flips_to_target', 0):.0f} % flip to {cls})",
    ]
    ratio = evidence.get("relevance_ratio", math.nan)
    if not math.isnan(ratio):
        parts.append(f"LRP puts {ratio:.1f}x the area-proportional relevance on the {artifact}")
    if "removal" in evidence:
        parts.append(f"removing it changes P({cls}) by {evidence['removal']['mean_shift']:+.2f}")
    if audit_flagged:
        parts.append(f"and the training data makes the {artifact} label-predictive for '{cls}'")
    return "; ".join(parts)
