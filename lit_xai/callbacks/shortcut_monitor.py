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
from typing import Any, Optional, Union

import torch
from lightning.pytorch import LightningModule, Trainer

from .._moved import renamed_argument
from ..artifacts import ARTIFACTS
from ..contracts import ModelContract, ModelSpec, split_dataset
from ..explainers import Explainer
from ..schedule import Schedule
from ..shortcuts import AlertRule, ReliancePool, render_candidates
from ..shortcuts.audit import (
    add_skipped,
    count_sample,
    default_cache_dir,
    eval_dataset,
    report_from_counts,
    to_jsonable,
)
from ..shortcuts.verdict import effect_series, lead_key, verdict_text
from ..shortcuts.watch import Discovery, ShortcutBudget, ShortcutWatch
from ..visualization import CandidateStrip, ProbeStrip, explanation_grid, verdict_picture
from ..visualization.console import alert_block, fit_summary
from ._shards import read_shared
from .base import MonitorBase
from .layout import shortcut_layout, write_layout
from .report import RunReport
from .sinks import Picture, find_tensorboard, log_text, notify

__all__ = ["Discovery", "ShortcutBudget", "ShortcutMonitor"]  # Discovery, ShortcutBudget: from lit_xai.shortcuts.watch


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
        artifacts: watched artifacts, names in :data:`lit_xai.artifacts.ARTIFACTS` with an inserter (the word of
            ``ShortcutCorrection(artifact=...)``; ``detectors=`` is its deprecated spelling, one release).
        every_n_epochs: measure reliance every N validation epochs (and at the last epoch); a
            :class:`~lit_xai.schedule.Schedule` spaces them otherwise (``Schedule(1, "doubling")``: the 1st, 2nd,
            4th, 8th, ... epoch; discovery runs at those of them it is due at).
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
        artifacts: Sequence[str] = ("ring",),
        every_n_epochs: Union[int, Schedule] = 1,
        alert: Optional[AlertRule] = None,
        budget: Optional[ShortcutBudget] = None,
        target_class: Optional[Union[str, int]] = None,
        explainer: Union[str, Explainer] = "lrp",
        discovery: Optional[Discovery] = None,
        model: Optional[ModelSpec] = None,
        tag: str = "XAI/shortcut",
        verbose: bool = True,
        asynchronous: bool = False,
        *,
        detectors: Optional[Sequence[str]] = None,  # deprecated spelling of artifacts (one release)
    ) -> None:
        super().__init__(every_n_epochs, model, tag, verbose, asynchronous)
        if detectors is not None:
            renamed_argument("ShortcutMonitor", "detectors", "artifacts=[...] (YAML: artifacts: [...])")
            if ([artifacts] if isinstance(artifacts, str) else list(artifacts)) != ["ring"]:  # not the default
                raise ValueError("ShortcutMonitor: give artifacts= or its old spelling detectors=, not both")
            artifacts = detectors
        # the policy (what to watch, how to measure it) is a pure object; this callback schedules, logs and alerts
        self.watch = ShortcutWatch(artifacts, alert, budget, explainer, discovery, target_class)
        self.candidates: list[dict[str, Any]] = []
        self._max_epochs: Optional[int] = None
        self.report_name = "shortcut_report.json"
        self.alerts: list[dict[str, Any]] = []
        self.audit_report: Optional[dict[str, Any]] = None
        self._log_dir: Optional[str] = None
        self._train_data: Any = None
        self._val_data: Any = None
        # the verdict picture's probe: per (artifact, class) the first flagged probe's map at each measured epoch
        self._probe_frames: dict[tuple[str, str], list[tuple[int, torch.Tensor]]] = {}
        # per verified candidate (label, class): its latest members' pool rows and mask, for the verdict picture
        self._candidate_views: dict[tuple[str, str], tuple[list[int], torch.Tensor]] = {}
        self._layout_written = False  # the CUSTOM SCALARS layout, written once the watched pairs are measured

    # the watch's settings and pools under the names this callback always had
    artifacts = property(lambda self: self.watch.detectors)
    detectors = artifacts  # the old name (one release)
    rule = property(lambda self: self.watch.rule)
    budget = property(lambda self: self.watch.budget)
    explainer = property(lambda self: self.watch.explainer)
    discovery = property(lambda self: self.watch.discovery)
    target_class = property(lambda self: self.watch.target_class)

    @property
    def _pool(self) -> Optional[ReliancePool]:
        return self.watch.pool

    @property
    def _train_pool(self) -> Optional[ReliancePool]:
        return self.watch.train_pool

    @property
    def _audit_flags(self) -> dict[str, list[str]]:
        return self.watch.audit_flags

    @_audit_flags.setter
    def _audit_flags(self, flags: dict[str, list[str]]) -> None:
        self.watch.audit_flags = flags

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
        with self.accounted(trainer):  # the time budget counts the setup too (rank 0's decides, see measure_now)
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
        if not self.watch.needs_train_pool(self.contract.class_names):
            return
        if self._train_data is None or self._train_pool is not None:
            return
        ids, read = self._sample(eval_dataset(self._train_data, trainer.datamodule), trainer)
        self.watch.train_pool = self.watch.read_pool(read, ids, self.contract.to01, "train")

    def _sample(self, data: Any, trainer: Trainer) -> tuple[list[int], Any]:
        """``pool_size`` seeded items of ``data``, read as the explanation probes are (ids, :class:`Probes`); under
        DDP each rank decodes its shard and the parts are gathered through the strategy (a collective)."""
        generator = torch.Generator().manual_seed(self.budget.seed)
        ids = sorted(torch.randperm(len(data), generator=generator)[: self.budget.pool_size].tolist())
        return ids, read_shared(trainer, data, ids)

    # ------------------------------------------------------------------ work
    def cost_kind(self, epoch: int) -> str:
        """A discovery epoch costs several times a reliance-only one (the time budget's estimate, see
        :class:`~lit_xai.schedule.Schedule`)."""
        return "discovery" if self._discovers(epoch) else "reliance"

    def cost_units(self, epoch: int) -> float:
        """The LRP maps the measurement explains (:meth:`~lit_xai.shortcuts.ShortcutWatch.explained_maps`): before
        the first discovery epoch, its cost is estimated from a reliance epoch's seconds per map (a discovery epoch
        explains the whole pool; on the demo 256 maps against 72)."""
        names = self.contract.class_names if self.contract is not None else None
        return float(self.watch.explained_maps(names, discover=self._discovers(epoch)))

    def _discovers(self, epoch: int) -> bool:
        return self.discovery.due(epoch, self._max_epochs)

    def measure(self, contract: ModelContract, module: torch.nn.Module, epoch: int, mode: str) -> dict[str, Any]:
        """The reliance evidence of every watched (artifact, class) and the relevance outside the ROI
        (:meth:`lit_xai.shortcuts.ShortcutWatch.measure`; discovery when it is due)."""
        return self.watch.measure(contract, module, discover=self._discovers(epoch))

    def _concepts(
        self, module: torch.nn.Module, inputs: torch.Tensor, labels: torch.Tensor
    ) -> tuple[Optional[torch.Tensor], str]:
        return self.watch.concepts(module, inputs, labels)

    def _prepare(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._pool is not None:
            return
        n = len(self._val_data)
        if n == 0:
            raise ValueError("ShortcutMonitor: the validation set is empty")
        ids, read = self._sample(self._val_data, trainer)
        names = self.resolve(trainer, pl_module, read.images[:2], read.targets).class_names
        self.watch.check_target_class(names)
        self.watch.pool = self.watch.read_pool(read, ids, self.contract.to01, "val")

    def record(self, result: dict[str, Any], epoch: int, mode: str) -> list[dict[str, Any]]:
        """History entries, the rule's streaks and the alerts that fire now (``result["alerts"]``)."""
        entries, fired = [], []
        for artifact, name, evidence in result["evidence"]:
            audit_flagged = name in self._audit_flags.get(artifact, [])
            decision, reason = self.rule.decide(evidence)
            met, informative = bool(decision), decision is not None
            plain = {k: v for k, v in evidence.items() if k != "heatmaps"}
            entries.append(
                {
                    "epoch": epoch, "artifact": artifact, "class": name, **to_jsonable(plain), "rule_met": met,
                    "informative": informative, "rule_reason": reason,
                }  # fmt: skip
            )
            if self.rule.update(f"{artifact}/{name}", decision):
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
        found = result["discovery"]
        tested: dict[tuple[int, int], dict[str, Any]] = {}
        watched = {(a, n) for a, n, _ in result["evidence"]}
        for v in (found or {}).get("verified", []):  # discovered candidates, tested like a watched artifact
            decision, reason = self.rule.decide(v["evidence"])
            plain = {k: x for k, x in v["evidence"].items() if k != "heatmaps"}
            about = {k: v[k] for k in ("label", "twin", "twin_share", "mask_share", "screen", "selective") if k in v}
            keep = ("counterfactual", "removal", "exposure", "tests", "removal_skipped")
            tested[(v["class_index"], v["rank"])] = {
                **to_jsonable(about), "rule_met": bool(decision), "informative": decision is not None,
                "rule_reason": reason, **to_jsonable({k: plain[k] for k in keep if k in plain}),
            }  # fmt: skip
            if mode == "fit" and "region" in v:
                self._candidate_views[(v["label"], v["class"])] = (v["member_rows"][:_STRIP_MEMBERS], v["region"])
            fires = self.rule.update(f"{v['key']}/{v['class']}", decision)
            if fires and (v["twin"], v["class"]) not in watched:  # a watched detector's twin alerts under its name
                share = f"{100 * v['twin_share']:.0f} %"
                twin = f" (the {v['twin']} detector flags {share} of its members)" if v["twin"] else ""
                passing = self.rule.passing(v["evidence"])
                message = AlertRule.message(v["label"] + twin, v["class"], v["evidence"], False, passing)
                alert = self._alert(v["label"], v["class"], epoch, plain, False, message)
                alert["candidate"] = to_jsonable({**about, "members": v["members"], "score": v["score"]})
                fired.append(alert)
        self.alerts.extend(fired)
        result["alerts"] = fired
        if found is not None:
            names = self.contract.class_names
            for c in found["candidates"]:
                record = {
                    "epoch": epoch, **c.to_dict(), "class": names[c.class_index], "clustered": found["view"],
                    "threshold": found["threshold"],
                }  # fmt: skip
                if (c.class_index, c.rank) in tested:  # the candidate's artifact through the reliance tests
                    record["tested"] = tested[(c.class_index, c.rank)]
                self.candidates.append(record)
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
        fired = {(a["artifact"], a["class"]) for a in result["alerts"]}
        if result["evidence"]:  # the alert rule's threshold, drawn in every evidence chart (custom scalars)
            outputs[f"{group}/threshold"] = float(self.rule.min_effect)
        for (artifact, name, evidence), probs in zip(result["evidence"], predictions):
            outputs |= _evidence_scalars(f"{group}/{artifact}/{name}", evidence)
            # nonzero only at the epoch an alert fired: a spike up to the threshold line in the evidence chart (inside
            # the chart's range, so outlier clipping neither cuts it nor squeezes the interval), not a 0/1 curve
            outputs[f"{group}/{artifact}/{name}/alert"] = float(self.rule.min_effect) * ((artifact, name) in fired)
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
            outputs[f"{group}/discovery/time_s"] = found["seconds"] + found.get("verify_seconds", 0.0)
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
        strip = self._candidate_strip(key)
        if strip is not None and not series.epochs:  # an unnamed artifact: its tests are in the candidate records
            with self._background.lock:
                tested = [_tested_entry(c) for c in self.candidates if "tested" in c]
            series = effect_series(tested, artifact, cls)
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
            region=str(artifact),
            candidate=strip,
        )
        return Picture(image, caption)

    def _candidate_strip(self, key: tuple[str, str]) -> Optional[CandidateStrip]:
        """Member thumbnails and mask of the verified candidate ``key`` (label, class), or None for a watched one."""
        view = self._candidate_views.get(key)
        if view is None or self._pool is None:
            return None
        rows, region = view
        pool = self._pool
        label, cls = key
        alert = next((a for a in self.alerts if (a["artifact"], a["class"]) == key and "candidate" in a), None)
        size = len(alert["candidate"]["members"]) if alert is not None else len(rows)
        twin = alert["candidate"].get("twin") if alert is not None else None
        caption = (
            f"{label}: {size} validation images of '{cls}' whose explanations cluster (no detector); outlined: where "
            f"their relevance concentrates ({100 * float(region.float().mean()):.0f} % of the image), pasted by the "
            "insertion test, inpainted by the removal test"
        ) + (f"; the {twin} detector flags most of them" if twin else "")
        return CandidateStrip(pool.images01[rows], region, caption, ids=[int(pool.ids[r]) for r in rows])

    def _after(self, trainer: Trainer, result: dict[str, Any], epoch: int, mode: str) -> None:
        self._write_layout(trainer, result)
        where = f"TensorBoard {self.verdict_tag}; {os.path.join(self._log_dir or '.', self.report_name)}"
        for alert in result["alerts"]:  # one block between the progress bar's lines, not a warning glued onto it
            notify(trainer, alert_block(alert, where, self.rule.confidence))
        self._write_report()

    def _write_layout(self, trainer: Trainer, result: dict[str, Any]) -> None:
        """The CUSTOM SCALARS layout (:func:`~.layout.shortcut_layout`), once, from the first measurement that holds
        the watched pairs (TensorBoard reads one layout per run)."""
        tb = find_tensorboard(trainer)
        if self._layout_written or tb is None or not (result["evidence"] or result["roi"]):
            return
        pairs = [(artifact, name) for artifact, name, _ in result["evidence"]]
        tests = {a: ["insertion"] + ["removal"] * (ARTIFACTS[a].remove is not None) for a, _ in pairs}
        layout = shortcut_layout(
            self.scalar_group, pairs, tests, self.rule.min_effect, self.rule.confidence, roi=bool(result["roi"])
        )
        self._layout_written = write_layout(tb.experiment, layout)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """The story of the run in a few lines: per class shortcut / clean / not judged, then where to look."""
        if not (self.verbose and trainer.is_global_zero) or self.contract is None or trainer.sanity_checking:
            return
        with self._background.lock:
            history, alerts = list(self.history), list(self.alerts)
        report = next((cb for cb in trainer.callbacks if isinstance(cb, RunReport)), None)
        report_path = None
        if report is not None:
            report_path = f"{report.run_dir(trainer) / report.filename} (written when fit ends and after test)"
        tensorboard = find_tensorboard(trainer)
        logdir = tensorboard.log_dir if tensorboard is not None else None
        summary = fit_summary(self.contract.class_names, history, alerts, report_path, logdir, self.rule.confidence)
        notify(trainer, summary)

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
    for key, test in (("counterfactual", "insertion"), ("removal", "removal")):  # the bounds of the Margin charts
        low, high = (evidence.get(key) or {}).get("interval") or (math.nan, math.nan)
        values[f"{test}_effect_lower"], values[f"{test}_effect_upper"] = low, high
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


#: member thumbnails kept per verified candidate for the verdict picture
_STRIP_MEMBERS = 8


def _tested_entry(record: dict[str, Any]) -> dict[str, Any]:
    """A candidate record's reliance tests as a history entry (artifact = its label), for :func:`effect_series`."""
    tested = record["tested"]
    entry = {"epoch": record["epoch"], "artifact": tested.get("label"), "class": record["class"]}
    return entry | {k: tested[k] for k in ("counterfactual", "removal") if k in tested}
