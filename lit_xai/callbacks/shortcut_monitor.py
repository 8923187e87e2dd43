"""``ShortcutMonitor``: audit the training data for artifacts at fit start, measure the model's reliance on them
every N epochs, and raise a readable alert (text, JSON report, warning) once the model relies on one.

A thin Lightning shell over :mod:`lit_xai.artifacts` (registry) and :mod:`lit_xai.shortcuts` (audit,
:func:`~lit_xai.shortcuts.measure_reliance`, :class:`~lit_xai.shortcuts.AlertRule`) on
:class:`~lit_xai.callbacks.base.MonitorBase`. It works in any Lightning
project: plain ``(image, target)`` batches in any value range, class names defaulting to indices, the task inferred
from the targets. Everything it needs is checked at setup / fit start, before the first epoch, and reported together
with the arguments that fix it.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional, Union

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn

from ..artifacts import ARTIFACTS
from ..contracts import ModelContract, ModelSpec, probabilities, split_dataset, stand_in_labels
from ..explainers import CRP, Explainer, ExplainerNotApplicable, build_explainer
from ..shortcuts import AlertRule, ReliancePool, discover_candidates, measure_reliance, render_candidates
from ..shortcuts.audit import (
    add_skipped,
    count_sample,
    default_cache_dir,
    eval_dataset,
    report_from_counts,
    to_jsonable,
)
from ..shortcuts.discovery import default_threshold
from ..shortcuts.verdict import effect_series, lead_key, verdict_text
from ..visualization import ProbeStrip, explanation_grid, verdict_picture
from ._shards import read_shared
from .base import MonitorBase, due
from .sinks import Picture, log_text, notify

__all__ = ["Discovery", "ShortcutBudget", "ShortcutMonitor"]

#: artifact images of a watched class in the validation pool below which the removal test also reads training images
MIN_REMOVAL_IMAGES = 16


@dataclass
class ShortcutBudget:
    """How much the :class:`ShortcutMonitor` reads and measures (YAML: a plain mapping).

    Args:
        audit: audit the training split at fit start.
        audit_max_samples: size of the audited (seeded) subset; None = every item.
        pool_size: validation images read once (seeded) for the reliance measures.
        num_probes: flagged images explained for the relevance ratio.
        num_counterfactual: clean images of other classes that get the artifact inserted.
        spray_samples: heatmaps of the suspected class clustered by SpRAy (0 = off).
        seed: selection / insertion seed.
        audit_cache: keep the audit's counts on disk (``$LIT_XAI_CACHE/audit``, else ``~/.cache/lit_xai/audit``),
            keyed by the files (names, sizes, modification times) or, for in-memory data, a hash of every pixel, plus
            a hash of a few decoded items and every setting; other datasets are audited afresh every run
            (:func:`lit_xai.shortcuts.audit.count_sample`).

    Example:
        >>> ShortcutBudget(pool_size=128).num_counterfactual
        64
    """

    audit: bool = True
    audit_max_samples: Optional[int] = 1024
    pool_size: int = 256
    num_probes: int = 8
    num_counterfactual: int = 64
    spray_samples: int = 64
    seed: int = 0
    audit_cache: bool = True

    def __post_init__(self) -> None:
        for name, low in (("pool_size", 4), ("num_probes", 1), ("num_counterfactual", 2), ("spray_samples", 0)):
            if getattr(self, name) < low:
                raise ValueError(f"ShortcutBudget({name}=...) must be >= {low}, got {getattr(self, name)}")
        if self.audit_max_samples is not None and self.audit_max_samples < 1:
            raise ValueError(
                f"ShortcutBudget(audit_max_samples=...) must be >= 1 or None, got {self.audit_max_samples}"
            )


@dataclass
class Discovery:
    """Label-free discovery of suspicious explanation clusters in the :class:`ShortcutMonitor` (YAML: a mapping):
    artifacts nobody registered (rulers, ink, tags, burnt-in text) found by clustering each class's explanations of
    the validation pool (:func:`lit_xai.shortcuts.discover_candidates`): its LRP maps (*where* the model looks) side
    by side with the positive CRP concept relevances of the profile's concept layer (*what* it uses there).

    Args:
        every_n_epochs: run at every N-th measured epoch (and the last); 0 = off.
        top_k: candidates kept per class.
        max_per_class: explanations clustered per class (seeded subset; bounds the cost).
        threshold: score above which a candidate is suspicious; None = the default of what is clustered
            (:func:`lit_xai.shortcuts.default_threshold`, measured in ``benchmarks/discovery.py``).
        concepts: cluster the concept relevances with the maps (one more LRP pass). Without them a shortcut that
            draws little relevance is missed: on the demo the ring's LRP maps alone form a cluster, but the benign
            class's maps look at the image border too (bright corners speak for benign), so that cluster does not
            predict the label; the concepts behind the two differ. Off, or where CRP does not apply (no concept
            layer in the model's explanation profile; a warning says so), the maps alone are clustered.

    Example:
        >>> Discovery(every_n_epochs=0).every_n_epochs
        0
    """

    every_n_epochs: int = 2
    top_k: int = 3
    max_per_class: int = 128
    threshold: Optional[float] = None
    concepts: bool = True

    def __post_init__(self) -> None:
        if self.every_n_epochs < 0 or self.top_k < 1 or self.max_per_class < 8:
            raise ValueError("Discovery: every_n_epochs >= 0, top_k >= 1 and max_per_class >= 8 are required")

    def due(self, epoch: int, max_epochs: Optional[int]) -> bool:
        """Whether discovery runs at ``epoch`` (every N-th and the last epoch)."""
        return self.every_n_epochs > 0 and epoch >= 0 and due(epoch, self.every_n_epochs, max_epochs)


class ShortcutMonitor(MonitorBase):
    """Detect shortcut artifacts in the data and the model's reliance on them, with alerts.

    At fit start it audits the training split (:func:`lit_xai.shortcuts.audit_dataset`); every ``every_n_epochs``
    validation epochs it measures, per artifact and suspected class, the relevance-in-mask ratio on flagged
    validation images, the counterfactual shift of P(class) when the artifact is inserted into clean images of other
    classes, the shift when it is removed (artifacts with a remover), optionally a SpRAy cluster, and for datasets
    with a region of interest (``roi_mask`` items, e.g. lung masks) the share of relevance outside it. Scalars go to
    ``<tag>/<artifact>/<class>/...``; an alert (text, warning, ``shortcut_report.json`` in the run directory)
    fires once per (artifact, class) when the :class:`~lit_xai.shortcuts.AlertRule` says so.

    Args:
        detectors: watched artifacts, names in :data:`lit_xai.artifacts.ARTIFACTS` with an inserter.
        every_n_epochs: measure reliance every N validation epochs (and at the last epoch).
        alert: the :class:`~lit_xai.shortcuts.AlertRule` (thresholds, patience); None = defaults.
        budget: what is read and measured (:class:`ShortcutBudget`: audit, pool and sample sizes, seed).
        target_class: class name (or index) to watch; None = the classes the audit finds the artifact predictive of,
            else the class it co-occurs with most.
        explainer: map explainer for the relevance measures (name or object; default LRP).
        discovery: label-free discovery of artifacts nobody registered (:class:`Discovery`); candidates are logged
            as ``<tag>/candidates`` pictures and listed under ``"candidates"`` in ``shortcut_report.json``.
            ``Discovery(every_n_epochs=0)`` turns it off.
        model: what the monitor cannot find out about the model (:class:`~lit_xai.contracts.ModelSpec`); a foreign
            project without a lit_xai datamodule says how inputs map to [0, 1] here:
            ``ModelSpec(input_range=(0, 255))`` or ``ModelSpec(normalization=(mean, std))``.
        tag: prefix of every logged tag (default beside the explanation monitor's pictures, in TensorBoard's first
            group) and the checkpoint ``state_key``.
        verbose: print the audit and each measurement's duration.
        asynchronous: measure a snapshot of the weights on a background thread while training goes on (results and
            alerts arrive during the next epoch, fit end waits for the last; single-process training only).
    """

    def __init__(
        self,
        detectors: Sequence[str] = ("ring",),
        every_n_epochs: int = 1,
        alert: Optional[AlertRule] = None,
        budget: Optional[ShortcutBudget] = None,
        target_class: Optional[Union[str, int]] = None,
        explainer: Union[str, Explainer] = "lrp",
        discovery: Optional[Discovery] = None,
        model: Optional[ModelSpec] = None,
        tag: str = "XAI/shortcut",
        verbose: bool = True,
        asynchronous: bool = False,
    ) -> None:
        super().__init__(every_n_epochs, model, tag, verbose, asynchronous)
        detectors = [detectors] if isinstance(detectors, str) else list(detectors)
        unknown = [d for d in detectors if d not in ARTIFACTS]
        if unknown or not detectors:
            raise ValueError(f"unknown artifacts {unknown or detectors}; choose from {', '.join(sorted(ARTIFACTS))}")
        no_inserter = [d for d in detectors if ARTIFACTS[d].insert is None]
        if no_inserter:
            raise ValueError(
                f"artifacts {no_inserter} have no inserter, so their counterfactual test cannot run; register one "
                "with lit_xai.artifacts.register_artifact(name, detect=..., threshold=..., insert=...) or audit them "
                "with lit_xai.shortcuts.audit_dataset instead of watching them"
            )
        self.detectors = tuple(detectors)
        self.rule = alert if alert is not None else AlertRule()
        self.budget = budget if budget is not None else ShortcutBudget()
        self.target_class = target_class
        self.explainer = build_explainer(explainer)
        self.discovery = discovery if discovery is not None else Discovery()
        self.candidates: list[dict[str, Any]] = []
        self._concepts_warned = False
        self._max_epochs: Optional[int] = None
        self.report_name = "shortcut_report.json"
        self.alerts: list[dict[str, Any]] = []
        self.audit_report: Optional[dict[str, Any]] = None
        self._audit_flags: dict[str, list[str]] = {}
        self._pool: Optional[ReliancePool] = None
        self._train_pool: Optional[ReliancePool] = None
        self._log_dir: Optional[str] = None
        self._train_data: Any = None
        self._val_data: Any = None
        # the verdict picture's probe: per (artifact, class) the first flagged probe's map at each measured epoch
        self._probe_frames: dict[tuple[str, str], list[tuple[int, torch.Tensor]]] = {}

    # ------------------------------------------------------------------ state
    @property
    def state_key(self) -> str:
        return self._generate_state_key(tag=self.tag, detectors=self.detectors)

    def _extra_state(self) -> dict[str, Any]:
        return {
            "alerts": list(self.alerts),
            "candidates": list(self.candidates),
            "audit": self.audit_report,
            "audit_flags": dict(self._audit_flags),
            "rule": self.rule.state_dict(),
        }

    def _load_extra_state(self, state_dict: dict[str, Any]) -> None:
        self.alerts = list(state_dict.get("alerts", []))
        self.candidates = list(state_dict.get("candidates", []))
        self.audit_report = state_dict.get("audit")
        self._audit_flags = dict(state_dict.get("audit_flags", {}))
        self.rule.load_state_dict(state_dict.get("rule", {}))

    # ------------------------------------------------------------------ hooks
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        # trainer.log_dir broadcasts: resolve it here, on every rank, never inside rank-0-only code
        self._log_dir = trainer.log_dir or trainer.default_root_dir
        if stage != "fit":
            return
        dm = trainer.datamodule
        problems: list[str] = []
        if self.model.value_range(dm) is None:
            problems.append(
                "the value range of the model inputs is unknown (artifacts are inserted into images in [0, 1]): pass "
                "model=ModelSpec(normalization=(mean, std)) or model=ModelSpec(input_range=(low, high)), or use a "
                "datamodule with normalize/denormalize"
            )
        try:
            self._val_data = split_dataset(dm, "val", trainer)
        except ValueError as err:
            problems.append(f"{err} (the reliance measures run on validation images)")
        if self.budget.audit:
            try:
                self._train_data = split_dataset(dm, "train", trainer)
            except ValueError as err:
                problems.append(f"{err}; or pass budget=ShortcutBudget(audit=False)")
        if problems:
            raise ValueError("ShortcutMonitor cannot run:\n- " + "\n- ".join(problems))

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # every rank checks (deterministically) so a bad setup fails everywhere instead of hanging DDP
        self._prepare(trainer, pl_module)
        self._max_epochs = trainer.max_epochs
        if self.budget.audit and self.audit_report is None:
            self._audit(trainer, pl_module)  # every rank: a shard each
        self._read_train_pool(trainer)  # every rank: a shard each (the decision is the same everywhere)

    def _audit(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """The training-split audit, on every rank: each audits its shard of the seeded sample, the counts are
        summed through Lightning's strategy; the counts are cached on disk (``ShortcutBudget.audit_cache``), so a
        second run or a resume over the same files and settings skips the decoding."""
        start = time.perf_counter()
        contract, world = self.contract, trainer.world_size
        data = eval_dataset(self._train_data, trainer.datamodule)
        counts = count_sample(
            data,
            max_samples=self.budget.audit_max_samples,
            seed=self.budget.seed,
            shard=(trainer.global_rank, world) if world > 1 else None,
            # cached only where count_sample trusts the dataset's identity: named files, or pixels held in memory
            cache_dir=default_cache_dir() if self.budget.audit_cache else None,
            class_names=contract.class_names,
            detectors=self.detectors,
            task=contract.task,
            denormalize=contract.to01,
        )
        if world > 1:
            local = counts.to_tensor(contract.num_classes).to(pl_module.device)
            total = trainer.strategy.reduce(local, reduce_op="sum")
            counts = counts.from_tensor(total)
        report = report_from_counts(counts)
        report = add_skipped(report, trainer.datamodule)
        self.audit_report = {**report.to_dict(), "from_cache": bool(counts.from_cache)}
        self._audit_flags = {name: list(a.predictive_classes) for name, a in report.artifacts.items()}
        summary = report.summary()
        cached = " (cached)" if counts.from_cache else ""
        if self.verbose:
            notify(trainer, f"[{self.tag}] dataset audit{cached} ({time.perf_counter() - start:.1f} s):\n{summary}")
        # a markdown list wraps in TensorBoard's text view (a code block would cut long lines off on the right)
        log_text(trainer, f"{self.tag}/audit", "\n".join(f"- {line}" for line in summary.splitlines()), 0)
        if trainer.is_global_zero:
            self._write_report()

    def _read_train_pool(self, trainer: Trainer) -> None:
        """Training images for the removal test when the validation pool holds fewer than
        :data:`MIN_REMOVAL_IMAGES` artifact images of a watched class (read once, ``pool_size`` seeded items)."""
        pool, names = self._pool, self.contract.class_names
        short = any(
            int((pool.flags[a] & (pool.labels == c)).sum()) < MIN_REMOVAL_IMAGES
            for a in self.detectors
            for c in self._targets_for(a, names)
        )
        if not short or self._train_data is None or self._train_pool is not None:
            return
        ids, read = self._sample(eval_dataset(self._train_data, trainer.datamodule), trainer)
        self._train_pool = self._reliance_pool(ids, read, "train")

    def _sample(self, data: Any, trainer: Trainer) -> tuple[list[int], Any]:
        """``pool_size`` seeded items of ``data``, read as the explanation probes are (ids, :class:`Probes`); under
        DDP each rank decodes its shard and the parts are gathered through the strategy (a collective)."""
        generator = torch.Generator().manual_seed(self.budget.seed)
        ids = sorted(torch.randperm(len(data), generator=generator)[: self.budget.pool_size].tolist())
        return ids, read_shared(trainer, data, ids)

    def _reliance_pool(self, ids: list[int], read: Any, split: str) -> ReliancePool:
        """The sample as a :class:`ReliancePool` with every watched artifact detected."""
        labels = stand_in_labels(read.targets)  # multi-label: the first positive label stands for the image
        pool = ReliancePool(self.contract.to01(read.images), read.images, labels, ids, read.roi_masks, split=split)
        for name in self.detectors:
            pool.detect(name)
        return pool

    # ------------------------------------------------------------------ work
    def _prepare(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._pool is not None:
            return
        n = len(self._val_data)
        if n == 0:
            raise ValueError("ShortcutMonitor: the validation set is empty")
        ids, read = self._sample(self._val_data, trainer)
        names = self.resolve(trainer, pl_module, read.images[:2], read.targets).class_names
        if self.target_class is not None and str(self.target_class) not in names:
            raise ValueError(f"target_class {self.target_class!r} is not a class; choose from {names}")
        self._pool = self._reliance_pool(ids, read, "val")

    def _targets_for(self, artifact: str, names: list[str]) -> list[int]:
        if self.target_class is not None:
            return [names.index(str(self.target_class))]
        flagged = self._audit_flags.get(artifact, [])
        if flagged:
            return [names.index(c) for c in flagged if c in names]
        # not label-predictive in the data: still watch the class the artifact co-occurs with most
        pool = self._pool
        flags = pool.flags[artifact] & (pool.labels >= 0)
        if flags.any():
            counts = torch.bincount(pool.labels[flags], minlength=len(names)).float()
            base = torch.bincount(pool.labels[pool.labels >= 0], minlength=len(names)).float().clamp_min(1)
            return [int((counts / base).argmax())]
        return []

    def measure(self, contract: ModelContract, module: torch.nn.Module, epoch: int, mode: str) -> dict[str, Any]:
        """The reliance evidence of every watched (artifact, class) and the relevance outside the ROI."""
        budget, names = self.budget, contract.class_names
        evidence: list[tuple[str, str, dict[str, Any]]] = []
        for artifact in self.detectors:
            for cls in self._targets_for(artifact, names):
                found = measure_reliance(
                    module,
                    self._pool,
                    artifact,
                    cls,
                    contract.value_range.from01,
                    explainer=self.explainer,
                    task=contract.task,
                    num_probes=budget.num_probes,
                    num_counterfactual=budget.num_counterfactual,
                    spray_samples=budget.spray_samples,
                    seed=budget.seed,
                    removal_pool=self._train_pool,
                    min_removal_images=MIN_REMOVAL_IMAGES,
                    confidence=self.rule.confidence,
                )
                evidence.append((artifact, names[cls], found))
        return {
            "evidence": evidence,
            "predictions": [self._predict(module, found) for _, _, found in evidence],
            "method": self.explainer.describe(module),
            "roi": self._measure_roi(contract, module),
            "discovery": self._discover(module, epoch) if self.discovery.due(epoch, self._max_epochs) else None,
        }

    def _predict(self, module: torch.nn.Module, evidence: dict[str, Any]) -> Optional[torch.Tensor]:
        """Class probabilities ``(n, K)`` of the flagged probes whose maps are shown (captions), or None."""
        rows = torch.as_tensor(evidence.get("probe_rows", [])).long()
        if len(rows) == 0:
            return None
        with torch.no_grad():
            return probabilities(module(self._pool.inputs[rows]).float(), self.contract.task).cpu()

    def _discover(self, module: torch.nn.Module, epoch: int) -> dict[str, Any]:
        """LRP maps of the pool's labelled images (for their own class), clustered per class."""
        pool, setting = self._pool, self.discovery
        start = time.perf_counter()
        rows = (pool.labels >= 0).nonzero().flatten()
        heat = self.explainer(module, pool.inputs[rows], pool.labels[rows])
        labels = pool.labels[rows]
        concepts, view = self._concepts(module, pool.inputs[rows], labels) if setting.concepts else (None, "")
        threshold = default_threshold(concepts is not None) if setting.threshold is None else setting.threshold
        found = discover_candidates(
            heat,
            labels,
            [pool.ids[int(r)] for r in rows],
            features=concepts,
            roi_masks=None if pool.roi_masks is None else pool.roi_masks[rows],
            max_per_class=setting.max_per_class,
            top_k=setting.top_k,
            threshold=threshold,
            seed=self.budget.seed,
        )
        seconds = time.perf_counter() - start
        view = f"each class's {self.explainer.describe()} maps" + (f" and {view} concept relevances" if view else "")
        return {
            "candidates": found, "heat": heat, "rows": rows, "labels": labels, "seconds": seconds, "view": view,
            "threshold": threshold,
        }  # fmt: skip

    def _concepts(
        self, module: torch.nn.Module, inputs: torch.Tensor, labels: torch.Tensor
    ) -> tuple[Optional[torch.Tensor], str]:
        """Positive CRP concept relevances ``(N, C)`` of the profile's concept layer and its description, or
        ``(None, "")`` (with one warning) where CRP does not apply to the model."""
        crp = CRP()
        try:
            view = f"CRP {crp.layer_for(module)}"
            return crp.concept_relevances(module, inputs, labels).clamp_min(0), view
        except (ExplainerNotApplicable, ValueError) as err:
            if not self._concepts_warned:
                self._concepts_warned = True
                rank_zero_warn(f"ShortcutMonitor discovery clusters the maps alone: no concept relevances ({err})")
            return None, ""

    def _measure_roi(self, contract: ModelContract, module: torch.nn.Module) -> dict[str, tuple[float, int]]:
        """Share of positive relevance outside the region of interest, per class (datasets with ``roi_mask``)."""
        pool = self._pool
        if pool.roi_masks is None:
            return {}
        from ..artifacts.roi import relevance_outside_roi

        shares: dict[str, tuple[float, int]] = {}
        for cls, name in enumerate(contract.class_names):
            members = (pool.labels == cls).nonzero().flatten()[: self.budget.num_probes]
            if len(members) == 0:
                continue
            heat = self.explainer(module, pool.inputs[members], torch.full((len(members),), cls))
            share = relevance_outside_roi(heat, pool.roi_masks[members])
            mean = float(torch.nanmean(share)) if not torch.isnan(share).all() else math.nan
            if not math.isnan(mean):
                shares[name] = (mean, len(members))
        return shares

    def record(self, result: dict[str, Any], epoch: int, mode: str) -> list[dict[str, Any]]:
        """History entries, the rule's streaks and the alerts that fire now (``result["alerts"]``)."""
        entries, fired = [], []
        for artifact, name, evidence in result["evidence"]:
            audit_flagged = name in self._audit_flags.get(artifact, [])
            met = self.rule.met(evidence, audit_flagged)
            plain = {k: v for k, v in evidence.items() if k != "heatmaps"}
            entries.append({"epoch": epoch, "artifact": artifact, "class": name, **to_jsonable(plain), "rule_met": met})
            if self.rule.update(f"{artifact}/{name}", met):
                message = AlertRule.message(artifact, name, evidence, audit_flagged, self.rule.passing(evidence))
                fired.append(self._alert(artifact, name, epoch, plain, audit_flagged, message))
            heat = evidence.get("heatmaps")
            if mode == "fit" and heat is not None and len(heat):
                self._probe_frames.setdefault((artifact, name), []).append((epoch, _thumbnail(heat[0])))
        for name, (share, n) in result["roi"].items():
            entries.append({"epoch": epoch, "artifact": "roi", "class": name, "outside_share": share})
            if self.rule.update(f"roi/{name}", self.rule.met_roi(share)):
                message = AlertRule.roi_message(name, share, n)
                fired.append(self._alert("roi", name, epoch, {"outside_share": share}, False, message))
        self.alerts.extend(fired)
        result["alerts"] = fired
        found = result["discovery"]
        if found is not None:
            names = self.contract.class_names
            for c in found["candidates"]:
                self.candidates.append(
                    {
                        "epoch": epoch, **c.to_dict(), "class": names[c.class_index], "clustered": found["view"],
                        "threshold": found["threshold"],
                    }  # fmt: skip
                )
        return entries

    def _alert(
        self, artifact: str, name: str, epoch: int, evidence: dict, audit_flagged: bool, message: str
    ) -> dict[str, Any]:
        return {
            "artifact": artifact,
            "epoch": epoch,
            "class": name,
            "evidence": {**to_jsonable(evidence), "audit_label_predictive": audit_flagged},
            "message": message,
        }

    @property
    def scalar_group(self) -> str:
        """Where the scalars go: ``XAI_shortcut`` for the tag ``XAI/shortcut`` (beside ``XAI_drift``), so the first
        screen (the ``XAI`` group) holds the pictures and the verdict, not raw curves that smoothing and outlier
        clipping distort."""
        return self.tag.replace("/", "_") if "/" in self.tag else f"{self.tag}_scalars"

    def render(self, result: dict[str, Any], epoch: int, mode: str) -> dict[str, Any]:
        outputs: dict[str, Any] = {}
        pool, names = self._pool, self.contract.class_names
        method = result.get("method") or self.explainer.describe()
        group = self.scalar_group
        predictions = result.get("predictions") or [None] * len(result["evidence"])
        for (artifact, name, evidence), probs in zip(result["evidence"], predictions):
            outputs |= _evidence_scalars(f"{group}/{artifact}/{name}", evidence)
            heat = evidence.get("heatmaps")
            if heat is not None and len(heat):
                rows = torch.as_tensor(evidence["probe_rows"]).long()
                captions = [
                    _probe_caption(pool.ids[r], names, int(pool.labels[r]), None if probs is None else probs[k])
                    + f" | {artifact} detected"
                    for k, r in enumerate(rows.tolist())
                ]
                grid = explanation_grid(
                    pool.images01[rows],
                    heat,
                    captions,
                    tile=96,
                    method=f"{method} for '{name}' on validation images with a {artifact} (epoch {epoch})",
                    masks=pool.masks[artifact][rows],
                )
                outputs[f"{self.tag}/{artifact}/flagged_probes"] = Picture(grid)
        for name, (share, _) in result["roi"].items():
            outputs[f"{group}/roi/{name}/outside_share"] = share
        # the alerts as text only: a count of alerts is a step, which TensorBoard's smoothing draws as a slope
        if result["alerts"]:
            outputs[f"{self.tag}/alerts"] = [f"**epoch {a['epoch']}**: {a['message']}" for a in result["alerts"]]
        verdict = self._verdict(method) if mode == "fit" else None
        if verdict is not None:
            outputs[self.verdict_tag] = verdict
        found = result["discovery"]
        if found is not None:
            outputs[f"{group}/discovery/time_s"] = found["seconds"]
            suspicious = [c for c in found["candidates"] if c.suspicious]
            if found["candidates"]:
                picture = render_candidates(
                    found["candidates"],
                    pool.images01[found["rows"]],
                    found["heat"],
                    labels=found["labels"],
                    class_names=self.contract.class_names,
                    threshold=found["threshold"],
                    method=method,
                )
                caption = (
                    f"epoch {epoch}: {len(suspicious)} of {len(found['candidates'])} candidates score above "
                    f"{found['threshold']:g} (clusters of {found['view']}; no detector used)"
                )
                outputs[f"{self.tag}/candidates"] = Picture(torch.from_numpy(picture).permute(2, 0, 1), caption)
        outputs[f"{group}/time_s"] = result["seconds"]
        return outputs

    @property
    def verdict_tag(self) -> str:
        """The verdict picture's tag: ``XAI/0_verdict`` for the default tag ``XAI/shortcut`` (first in the group)."""
        return f"{self.tag.split('/')[0]}/0_verdict"

    def _verdict(self, method: str) -> Optional[Picture]:
        """The verdict picture from the history so far: sentence, effects with intervals and threshold, alert epoch,
        and the first flagged probe's map at each measured epoch."""
        with self._background.lock:
            history, alerts = list(self.history), list(self.alerts)
        key = lead_key(history, alerts)
        if key is None:
            return None
        artifact, cls = key
        series = effect_series(history, artifact, cls)
        fired = [a for a in alerts if (a["artifact"], a["class"]) == key]
        alert_epoch = int(fired[0]["epoch"]) if fired else None
        others = [f"{a['artifact']} for '{a['class']}' (epoch {a['epoch']})" for a in alerts if a not in fired]
        headline, detail = verdict_text(
            series, artifact, cls, alert_epoch, self.rule.min_effect, self.rule.patience, others
        )
        frames = self._probe_frames.get(key, [])
        probe = None
        row = next((h["probe_rows"][0] for h in reversed(history) if _is(h, key) and h.get("probe_rows")), None)
        if frames and row is not None:
            pool = self._pool
            probe = ProbeStrip(
                pool.images01[row],
                [f for _, f in frames],
                [e for e, _ in frames],
                mask=pool.masks[artifact][row],
                caption=f"val #{pool.ids[row]} ({self.contract.name(int(pool.labels[row]))}, {artifact}): "
                f"{method} for '{cls}'",
            )
        caption = (
            f"{headline}: {detail}. Chart: effect of inserting / removing the {artifact} on P({cls}) beyond a sham "
            f"edit of the same size, per measured epoch, with {100 * self.rule.confidence:.0f} % bootstrap "
            f"intervals; an alert needs the lower bound above {self.rule.min_effect:g} for {self.rule.patience} "
            "measurements in a row."
        )
        image = verdict_picture(
            headline,
            series.epochs,
            series.effects,
            detail=detail,
            intervals=series.intervals,
            threshold=self.rule.min_effect,
            alert_epoch=alert_epoch,
            probe=probe,
            ylabel=f"effect on P({cls})",
            watch=headline.startswith("WATCH"),
        )
        return Picture(image, caption)

    def _after(self, trainer: Trainer, result: dict[str, Any], epoch: int, mode: str) -> None:
        for alert in result["alerts"]:
            rank_zero_warn(f"ShortcutMonitor alert: {alert['message']}")
        self._write_report()

    def _payload(self, result: dict[str, Any]) -> dict[str, Any]:
        return {"alerts": result["alerts"]}

    def _receive(self, payload: dict[str, Any], epoch: int, mode: str) -> None:
        super()._receive(payload, epoch, mode)
        self.alerts.extend(payload.get("alerts", []))

    def _write_report(self) -> None:
        if self._log_dir is None:
            return
        os.makedirs(self._log_dir, exist_ok=True)
        with self._background.lock:
            report = {
                "alerts": list(self.alerts),
                "candidates": list(self.candidates),
                "audit": self.audit_report,
                "history": list(self.history),
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
    # SpRAy's flag (0/1) is no scalar: a smoothed flag reads as a gradual trend; it is in the alert text and history
    return {f"{prefix}/{k}": float(v) for k, v in values.items() if v is not None and not math.isnan(v)}


def _is(entry: dict[str, Any], key: tuple[str, str]) -> bool:
    return (entry.get("artifact"), entry.get("class")) == key


def _thumbnail(heat: torch.Tensor, side: int = 96) -> torch.Tensor:
    """A map kept for the verdict picture, area-averaged to at most ``side`` pixels (a few KB per epoch)."""
    h = heat.detach().float().cpu()
    if max(h.shape[-2:]) <= side:
        return h.clone()
    return torch.nn.functional.adaptive_avg_pool2d(h[None, None], (side, side))[0, 0]


def _probe_caption(index: int, names: Sequence[str], label: int, probs: Optional[torch.Tensor]) -> str:
    """``val #12 | true melanoma | pred melanoma (p=0.93)``: what the image is and what the model says."""
    true = names[label] if 0 <= label < len(names) else "unlabelled"
    text = f"val #{index} | true {true}"
    if probs is not None:
        k = int(probs.argmax())
        text += f" | pred {names[k] if k < len(names) else k} (p={float(probs[k]):.2f})"
    return text
