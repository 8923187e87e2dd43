"""``ExplanationMonitor``: explanations of fixed probe images at epoch end and their drift across epochs.

A thin Lightning shell: it schedules, picks probes (:mod:`lit_xai.probes`), calls :func:`lit_xai.explainers.explain`
and a :class:`lit_xai.metrics.DriftTracker`, renders with :mod:`lit_xai.visualization` and logs. It works with any
LightningModule whose forward (or ``module_attr`` submodule) maps images to logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Optional, Union

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn

from ..contracts import ModelContract, ModelSpec, explained_module, stand_in_labels
from ..explainers import (
    CRP,
    LRP,
    Explainer,
    ExplainerError,
    ExplainerNotApplicable,
    ProbeExplanations,
    build_explainer,
    check_conservation,
    concept_references,
    explain,
)
from ..metrics.drift import DriftTracker
from ..probes import Probes, ProbeSelector, outcome_indices, validation_dataset
from ..schedule import Schedule
from ..visualization import channel_note
from ..visualization.monitor import LATTICE_NOTE, drift_chart, outcome_grid, probe_grids, timeline_grids
from ._checks import check_probes, warn_missing_classes
from .base import MonitorBase, due, epoch_step
from .sinks import Picture, log_text

__all__ = ["ExplanationMonitor", "Pictures"]


@dataclass
class Pictures:
    """When and how large the :class:`ExplanationMonitor` draws its pictures (YAML: a plain mapping).

    Args:
        every_n_epochs: log the pictures (grids, concepts, timelines, outcome probes) only at every N-th explained
            epoch, the initial model and the last epoch; drift scalars still come every explained epoch. Pictures
            (CRP reference search, rendering, PNG encoding) cost about as much as the explanations, and with
            TensorBoard's default of 10 kept images per tag most of a long run's pictures are never shown anyway.
        tile: pixel size of a tile in the logged grids.

    Example:
        >>> Pictures(every_n_epochs=2).tile
        112
    """

    every_n_epochs: int = 1
    tile: int = 112

    def __post_init__(self) -> None:
        if self.every_n_epochs < 1:
            raise ValueError(f"Pictures(every_n_epochs=...) must be >= 1, got {self.every_n_epochs}")
        if self.tile < 16:
            raise ValueError(f"Pictures(tile=...) must be >= 16 pixels, got {self.tile}")


class ExplanationMonitor(MonitorBase):
    """Explain fixed probes every N epochs and log heatmaps, concept grids, timelines and drift.

    Args:
        explainers: names (``"lrp"``, ``"crp"``, ``"gradcam"``, ``"attention_gradcam"``, ``"lrp_gradcam"``) or
            configured explainer objects (YAML: ``{class_path: lit_xai.explainers.CRP, init_args: {top_k: 6}}``);
            several LRP composites side by side are ``LRP(composite=...)`` objects.
        every_n_epochs: explain at the end of every N-th validation epoch (and at the last epoch); a
            :class:`~lit_xai.schedule.Schedule` spaces them otherwise (``Schedule(1, "doubling")``: the 1st, 2nd,
            4th, 8th, ... epoch).
        probes: how probes are chosen: a :class:`~lit_xai.probes.ProbeSelector`, a number of probes, or (from Python)
            a :class:`~lit_xai.probes.Probes` built with :func:`~lit_xai.probes.probes_from_tensors`.
        targets: explain the ``"true"`` class, the ``"predicted"`` one, or ``"both"``. Multi-label: every positive
            (true) or predicted (p > 0.5) class of a probe, one row per (probe, class).
        drift: the :class:`~lit_xai.metrics.DriftTracker` (measures, pooled size, timeline length, per-probe
            scalars); None = default.
        pictures: when and how large pictures are drawn (:class:`Pictures`); None = every explained epoch, 112 px.
        model: what the monitor cannot find out about the model (:class:`~lit_xai.contracts.ModelSpec`:
            ``module_attr``, ``task``, ``class_names``, value range for display); None = all found automatically.
        log_at_fit_start: explain the untrained model at fit start (step 0) as the drift baseline.
        explain_on_eval: also explain under ``trainer.validate`` / ``trainer.test`` (tagged ``.../eval`` and
            captioned with the checkpoint's epoch; no drift update).
        tag: prefix of the logged pictures and text; scalars go to ``<tag>_drift/...``. Upper case by default so the
            pictures form the first group of TensorBoard's views (groups sort by ASCII name, before ``epoch``,
            ``train/``, ``val/``); also the checkpoint ``state_key``, so two ExplanationMonitors need two tags
            (Lightning refuses a repeated ``state_key``: "more than one stateful callback").
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
                pictures: {every_n_epochs: 2}
    """

    def __init__(
        self,
        explainers: Sequence[Union[str, Explainer]] = ("lrp", "crp", "gradcam"),
        every_n_epochs: Union[int, Schedule] = 1,
        probes: Union[ProbeSelector, int, Any] = 8,
        targets: Literal["true", "predicted", "both"] = "true",
        drift: Optional[DriftTracker] = None,
        pictures: Optional[Pictures] = None,
        model: Optional[ModelSpec] = None,
        log_at_fit_start: bool = True,
        explain_on_eval: bool = False,
        tag: str = "XAI",
        verbose: bool = True,
        asynchronous: bool = False,
    ) -> None:
        super().__init__(every_n_epochs, model, tag, verbose, asynchronous)
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
        if isinstance(probes, bool) or not isinstance(probes, (ProbeSelector, int, Probes)):
            raise TypeError("probes must be a ProbeSelector, a number of probes, or Probes (probes_from_tensors)")
        self.selector = ProbeSelector(num_probes=probes) if isinstance(probes, int) else probes
        self.probes: Optional[Probes] = probes if isinstance(probes, Probes) else None
        self.targets = targets
        self.drift = drift if drift is not None else DriftTracker()
        self.pictures = pictures if pictures is not None else Pictures()
        self.log_at_fit_start = log_at_fit_start
        self.on_eval = self.explain_on_eval = explain_on_eval
        self._reference_pool: Optional[Probes] = None
        self._outcome_pool: Optional[Probes] = None
        self._checked = False
        self._warned_degenerate: set[str] = set()
        self._frames: dict[tuple[int, str], dict[str, Any]] = {}
        self._max_epochs: Optional[int] = None  # the fit's (cost_kind: which epochs draw pictures)
        self._restored_ids: Optional[list[int]] = None
        self._strided = False  # the explained network has strided convolutions (LRP legends mention the lattice)

    @property
    def labels(self) -> list[str]:
        return [e.label for e in self.explainers]

    # ------------------------------------------------------------------ checkpoint state
    def _extra_state(self) -> dict[str, Any]:
        # the state key is the tag only: a resumed run with a changed explainer list keeps the state of the
        # unchanged explainers
        return {
            "drift": self.drift.state_dict(),
            "probe_ids": list(self.probes.ids) if self.probes is not None else None,
            "explainers": self.labels,
        }

    def _load_extra_state(self, state_dict: dict[str, Any]) -> None:
        self.drift.load_state_dict(state_dict.get("drift", {}), methods=self.labels)
        self._restored_ids = state_dict.get("probe_ids")
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
        super().setup(trainer, pl_module, stage)
        if not trainer.is_global_zero:
            return  # only rank 0 explains
        if self.probes is None:
            dataset = validation_dataset(trainer.datamodule, trainer)
            self.probes = self.selector.select(dataset)
            if any(isinstance(e, CRP) for e in self.explainers):
                self._reference_pool = self.selector.reference_candidates(dataset)
            if self.selector.per_outcome > 0:
                self._outcome_pool = self.selector.outcome_candidates(dataset)
        self._check_restored_probes()

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._max_epochs = trainer.max_epochs
        if not trainer.is_global_zero:
            return
        with self.accounted(trainer):  # the time budget counts the setup too
            self._prepare(trainer, pl_module)  # fails here, before the first epoch, whatever log_at_fit_start says
            self._log_probe_table(trainer)
            resumed = self._restored or trainer.ckpt_path is not None or trainer.global_step > 0
            if self.log_at_fit_start and not self.history and not resumed and not trainer.fast_dev_run:
                self.run(trainer, pl_module, epoch=-1, everywhere=False)  # baseline: the untrained model, rank 0

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.measure_now(trainer):
            if trainer.is_global_zero:
                self._prepare(trainer, pl_module)  # validate/test: fit start did not run
            self.run(trainer, pl_module, trainer.current_epoch)

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.explain_on_eval:
            if trainer.is_global_zero:
                self._prepare(trainer, pl_module)
            self.run(trainer, pl_module, trainer.current_epoch)

    # ------------------------------------------------------------------ work
    def _prepare(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Resolve and check everything once (contract, explainers' layers and composites, the conservation guard
        on the first probes) on rank 0, before the first epoch."""
        if self._checked or self.probes is None:
            return
        check_probes(self.probes, f"ExplanationMonitor(tag={self.tag!r})")
        contract = self.resolve(trainer, pl_module, self.probes.images[:2].clone(), self.probes.targets)
        who = f"ExplanationMonitor(tag={self.tag!r})"
        warn_missing_classes(self.probes.targets, contract.class_names, contract.task, who)
        net = contract.module(pl_module)
        name = type(explained_module(pl_module, contract.module_attr)).__name__
        for explainer in list(self.explainers):
            try:
                explainer.check(net)
            except ExplainerNotApplicable as err:  # e.g. CRP on a ViT: the other methods still run
                rank_zero_warn(f"ExplanationMonitor: {explainer.label} is left out for {name}: {err}")
                self.explainers.remove(explainer)
            except Exception as err:  # noqa: BLE001 - re-raised naming the monitor's argument
                raise ValueError(
                    f"ExplanationMonitor(explainers=[... {explainer!r} ...]) cannot explain {name}: {err}"
                ) from err
        if not self.explainers:
            raise ValueError(f"ExplanationMonitor: none of the explainers applies to {name}")
        self._guard(net, name)
        self._strided = any(
            isinstance(m, torch.nn.Conv2d) and max(m.stride) > 1 and max(m.kernel_size) > 1 for m in net.modules()
        )
        self._checked = True

    def _guard(self, net: torch.nn.Module, name: str) -> None:
        """The conservation guard on the first probes: refuse when every map of a relevance method fails it and
        the network has layers without an LRP rule (the maps would be gradient noise); warn when only some fail."""
        images = self.probes.images[:2].clone()
        labels = stand_in_labels(self.probes.targets[:2])
        targets = torch.where(labels < 0, torch.zeros_like(labels), labels)
        for explainer in self.explainers:
            with torch.inference_mode(False), torch.enable_grad():
                check = check_conservation(net, explainer, images, targets)
            if check is None or check.all_ok:
                continue
            message = f"ExplanationMonitor({explainer.label}) on {name}: {check.message(explainer.label)}"
            if not bool(check.ok.any()) and check.unhandled:
                raise ValueError(message + " Refusing before training rather than logging wrong maps.")
            rank_zero_warn(message)

    def cost_kind(self, epoch: int) -> str:
        """Picture epochs (CRP reference search, rendering, encoding: about as much again as the explanations) are
        a kind of their own for the time budget (:class:`~lit_xai.schedule.Schedule`)."""
        return "pictures" if self._pictures_due(epoch, self._max_epochs) else "maps"

    def _pictures_due(self, epoch: int, max_epochs: Optional[int]) -> bool:
        every = self.pictures.every_n_epochs
        return epoch < 0 or every == 1 or due(epoch, self.every_n_epochs * every, max_epochs, self.spacing)

    def run(self, trainer: Trainer, pl_module: LightningModule, epoch: int, everywhere: bool = True) -> None:
        fit = str(getattr(trainer.state.fn, "value", trainer.state.fn)) == "fit"
        # per (epoch, mode): an asynchronous job may start after the next epoch end has already been scheduled
        self._frames[(epoch, "fit" if fit else "eval")] = {
            "pictures": not fit or self._pictures_due(epoch, trainer.max_epochs),
            "epoch_label": ("init" if epoch < 0 else f"ep{epoch}") if fit else f"ckpt {checkpoint_epoch(trainer)}",
        }
        super().run(trainer, pl_module, epoch, everywhere)

    def measure(self, contract: ModelContract, module: torch.nn.Module, epoch: int, mode: str) -> dict[str, Any]:
        """Explain the probes (and, on picture epochs, search CRP references and explain outcome probes)."""
        frame = self._frames.pop((epoch, mode))
        if self.probes is None:
            return {"explained": None, "conservation": {}, **frame}
        pictures = frame["pictures"]
        try:
            result = explain(module, self.probes, self.explainers, self.targets, contract.task)
        except ExplainerError as err:
            raise RuntimeError(f"ExplanationMonitor(explainers=[... {err.label!r} ...]): {err}") from err.error
        conservation = {
            e.label: check for e in self.explainers if (check := getattr(e, "last_check", None)) is not None
        }
        references = self._concept_references(module, result) if pictures else None
        outcome = self._outcome_explanations(module) if mode == "fit" and pictures else None
        return {
            "explained": result,
            "references": references,
            "outcome": outcome,
            "conservation": conservation,
            **frame,
        }

    def record(self, result: dict[str, Any], epoch: int, mode: str) -> list[dict[str, Any]]:
        explained: Optional[ProbeExplanations] = result["explained"]
        result["drift"], result["per_probe"] = {}, {}
        if explained is None or mode != "fit":
            return []
        primary = {label: maps[explained.primary] for label, maps in explained.maps.items()}
        means, per_probe = self.drift.update(primary, epoch, explained.rows[explained.primary].labels)
        result["drift"], result["per_probe"] = means, per_probe
        self._warn_degenerate(explained)
        return [{"epoch": epoch, "step": epoch_step(epoch), **self._scalars(result)}]

    def _scalars(self, result: dict[str, Any]) -> dict[str, float]:
        """The epoch's scalars, logged and kept in the history alike: mean drift, the share of maps whose relevance
        sums to the logit (conservation guard) per method, and the time taken."""
        scalars = {f"{self.tag}_drift/{k}": v for k, v in result["drift"].items()}
        for label, check in result["conservation"].items():
            scalars[f"{self.tag}_drift/{label}/conserved"] = float(check.ok.float().mean())
        scalars[f"{self.tag}_drift/time_s"] = result["seconds"]
        return scalars

    def render(self, result: dict[str, Any], epoch: int, mode: str) -> dict[str, Any]:
        outputs: dict[str, Any] = {}
        explained = result["explained"]
        if explained is not None and result["pictures"]:
            warnings = {
                label: f"{int((~c.ok).sum())} of {len(c.ok)} maps fail the conservation check: unreliable"
                for label, c in result["conservation"].items()
                if not c.all_ok
            }
            outputs |= self._pictures(
                explained, result["references"], result["outcome"], result["epoch_label"], mode, warnings
            )
        outputs |= self._scalars(result)
        if self.drift.per_probe_scalars:
            outputs |= {f"{self.tag}_drift_probe/{k}": v for k, v in result["per_probe"].items()}
        return outputs

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
        refs = concept_references(
            module, pool.images, stand_in_labels(pool.targets), layer=concepts.layer, channels=channels, n_ref=1,
            crp=crp,
        )  # fmt: skip
        crops = refs.crops(self.contract.to01(pool.images))  # (K, 1, 3, s, s): the most relevant region
        return {int(c): crops[k] for k, c in enumerate(refs.channels.tolist())}

    def _outcome_explanations(self, module: torch.nn.Module) -> Optional[tuple]:
        """True/false positives/negatives chosen again from the validation pool's current predictions."""
        pool = self._outcome_pool
        task = self.contract.task
        if pool is None or task == "multilabel":
            return None
        first = explain(module, pool, [], "true", task)
        picks = outcome_indices(first.probs, pool.targets, self.selector.per_outcome, seed=self.selector.seed)
        order = ("FP", "FN", "TP", "TN")
        rows = [i for name in order for i in picks.get(name, [])]
        if not rows:
            return None
        names = {i: name for name in picks for i in picks[name]}
        maps_explainers = [e for e in self.explainers if e.kind == "map"][:1]
        if not maps_explainers:
            return None
        chosen = pool.subset(rows)
        result = explain(module, chosen, maps_explainers, "predicted", task)
        counts = [(name, len(picks.get(name, []))) for name in order]
        return result, chosen, [names[i] for i in rows], counts

    # ------------------------------------------------------------------ logging
    def _log_probe_table(self, trainer: Trainer) -> None:
        if self.probes is None or self.contract is None:
            return
        contract = self.contract

        def label(t: torch.Tensor) -> str:
            if t.ndim == 0:
                return contract.name(int(t))
            pos = (torch.nan_to_num(t.float(), nan=0.0) > 0.5).nonzero().flatten().tolist()
            return ", ".join(contract.name(k) for k in pos) or "none"

        lines = ["| probe | validation index | class | artifact |", "|---|---|---|---|"]
        for i, t, a in zip(self.probes.ids, self.probes.targets, self.probes.artifact.tolist()):
            lines.append(f"| #{i} | {i} | {label(t)} | {'yes' if a else ''} |")
        log_text(trainer, f"{self.tag}/probes", "\n".join(lines), 0)

    def _pictures(
        self,
        result: ProbeExplanations,
        references: Optional[dict],
        outcome: Optional[tuple],
        epoch_label: str,
        mode: str,
        warnings: Optional[dict[str, str]] = None,
    ) -> dict[str, Picture]:
        """The epoch's pictures (drawn by :mod:`lit_xai.visualization.monitor`), named for the sinks."""
        contract, probes, tile = self.contract, self.probes, self.pictures.tile
        names = contract.class_names
        images01 = contract.to01(probes.images)
        suffix = "" if mode == "fit" else "/eval"
        signed = {e.label: e.signed for e in self.explainers}
        lattice = {
            e.label: LATTICE_NOTE for e in self.explainers if isinstance(e, LRP) and self._strided
        }  # what the composite leaves of the strided convolutions' checkerboard
        masks = None if probes.artifact_masks is None else probes.artifact_masks & probes.artifact[:, None, None]
        grids = probe_grids(
            result, images01, names, epoch_label, tile=tile, signed=signed, notes=lattice, warnings=warnings,
            masks=masks, references=references,
        )  # fmt: skip
        out = {f"{self.tag}/{key}{suffix}": Picture(grid) for key, grid in grids.items()}
        if outcome is not None:
            out_result, chosen, outcome_names, counts = outcome
            label, grid = outcome_grid(
                out_result, contract.to01(chosen.images), outcome_names, counts, names, epoch_label, tile=tile,
                signed=signed, per_outcome=self.selector.per_outcome,
            )  # fmt: skip
            out[f"{self.tag}/{label}/outcomes"] = Picture(grid)
        if mode == "fit":
            primary = result.rows[result.primary].probe
            timelines = timeline_grids(
                self.drift.timeline, result, self._timeline_rows(result), images01[primary], tile=tile,
                signed=signed, masks=None if masks is None else masks[primary],
            )  # fmt: skip
            out |= {f"{self.tag}/{key}": Picture(grid) for key, grid in timelines.items()}
            drift = drift_chart(self.history, self.tag, self.labels, self.drift.measures)
            if drift is not None:
                out[f"{self.tag}/drift"] = Picture(*drift)
        note = channel_note(int(probes.images.shape[1]))
        if note:  # say how images that are neither grey nor RGB are shown
            out = {k: p if k.endswith("/drift") else Picture(p.image, f"{p.caption} ({note})" if p.caption else note)
                   for k, p in out.items()}  # fmt: skip
        return out

    def _timeline_rows(self, result: ProbeExplanations) -> list[str]:
        """Row labels of the timeline: probe, true class, current prediction, artifact marker."""
        rows, name = result.rows[result.primary], self.contract.name
        return [
            f"{rows.labels[r]} {name(rows.true_label[r])}→{name(rows.pred_label[r])}"
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
