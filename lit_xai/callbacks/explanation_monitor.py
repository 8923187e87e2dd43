"""``ExplanationMonitor``: explanations of fixed probe images at epoch end, their drift across epochs, in TensorBoard.

A thin Lightning shell: it picks the probes, schedules the work, calls the pure explainers
(:mod:`lit_xai.explainers`) and drift measures (:mod:`lit_xai.metrics`) and logs. It works with any LightningModule
whose forward (or ``module_attr`` submodule) maps images to logits.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Literal, Optional

import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn

from ..metrics.drift import DRIFT_MEASURES, drift_scores
from ._common import denormalizer, explained_module, find_tensorboard, notify, preserve_rng, should_run
from ._render import concept_grid, explanation_grid, timeline_grid
from .probes import Probes, probes_from_tensors, select_probes, validation_dataset

__all__ = ["ExplanationMonitor", "METHODS"]

METHODS = ("lrp", "crp", "gradcam", "attention_gradcam")
CANONIZER_FAMILIES = ("none", "resnet", "vgg", "densenet", "efficientnet", "resnet_attention")
MAP_METHODS = ("lrp", "gradcam", "attention_gradcam")  # methods giving one (H, W) map per row: drift is tracked


class ExplanationMonitor(Callback):
    """Explain fixed probes every N epochs and log heatmaps, concept grids and drift to TensorBoard.

    Args:
        methods: any of ``"lrp"``, ``"crp"``, ``"gradcam"``, ``"attention_gradcam"`` (attention ResNets).
        every_n_epochs: explain at the end of every N-th validation epoch (and at the last epoch).
        num_probes: number of probes drawn from the datamodule's validation set (stratified by class).
        probes: optional ``(N, C, H, W)`` probe tensor (as the model expects it); needs ``probe_targets``.
        probe_targets: ``(N,)`` class indices (or ``(N, K)`` multi-hot) for ``probes``.
        probe_indices: explicit validation-set indices instead of the stratified draw.
        num_artifact_probes: how many artifact-flagged samples to include when the dataset flags artifacts.
        targets: explain the ``"true"`` class, the ``"predicted"`` one, or ``"both"``. Multi-label: every positive
            (true) or predicted (p > 0.5) class of a probe, one row per (probe, class).
        lrp_composite: zennit composite name; None = the architecture's default.
        crp_layer: layer for concept analysis; None = the architecture's first candidate concept layer.
        crp_top_k: concepts shown per probe.
        crp_reference_pool: validation images searched for each concept's reference images (0 = none).
        gradcam_layer: Grad-CAM layer; None = from the registry or the torchvision family.
        canonizers: zennit canonizers by family name (``"resnet"``, ``"vgg"``, ``"densenet"``, ``"efficientnet"``,
            ``"resnet_attention"``) or ``"none"`` for plain conv/linear/ReLU networks; None = registry / inferred.
        module_attr: attribute of the LightningModule that maps images to logits (None = its forward).
        task: ``"multilabel"`` makes probabilities sigmoid instead of softmax; None = ``pl_module.task`` if present.
        class_names: names for captions; None = ``pl_module.class_names`` / the datamodule's, else indices.
        log_at_fit_start: explain the initial model at fit start (epoch -1) as the drift baseline.
        drift_measures: similarity measures logged as ``xai/drift/<method>/<measure>_{prev,first}``.
        drift_top_fraction: pixel fraction for the top-k IoU measure.
        drift_size: maps are average-pooled to at most this side length before drift and timelines (keeps the
            checkpointed state small).
        timeline_length: epochs shown in the per-probe timeline image.
        per_probe_scalars: also log the drift of every probe (TensorBoard only).
        explain_on_eval: also explain under ``trainer.validate`` / ``trainer.test`` (no drift update).
        tile: pixel size of a tile in the logged grids.
        seed: probe selection seed.
        tag: prefix of every logged tag; also part of the checkpoint ``state_key``.
        verbose: announce each explanation step through the progress bar.

    Example (YAML)::

        trainer:
          callbacks:
            - class_path: lit_xai.callbacks.ExplanationMonitor
              init_args: {methods: [lrp, crp, gradcam], num_probes: 8}
    """

    def __init__(
        self,
        methods: Sequence[str] = ("lrp", "crp", "gradcam"),
        every_n_epochs: int = 1,
        num_probes: int = 8,
        probes: Optional[torch.Tensor] = None,
        probe_targets: Optional[torch.Tensor] = None,
        probe_indices: Optional[list[int]] = None,
        num_artifact_probes: int = 2,
        targets: Literal["true", "predicted", "both"] = "true",
        lrp_composite: Optional[str] = None,
        crp_layer: Optional[str] = None,
        crp_top_k: int = 4,
        crp_reference_pool: int = 32,
        gradcam_layer: Optional[str] = None,
        canonizers: Optional[str] = None,
        module_attr: Optional[str] = None,
        task: Optional[Literal["binary", "multiclass", "multilabel"]] = None,
        class_names: Optional[list[str]] = None,
        log_at_fit_start: bool = True,
        drift_measures: Sequence[str] = ("ssim", "spearman", "iou"),
        drift_top_fraction: float = 0.1,
        drift_size: int = 64,
        timeline_length: int = 12,
        per_probe_scalars: bool = True,
        explain_on_eval: bool = True,
        tile: int = 112,
        seed: int = 0,
        tag: str = "xai",
        verbose: bool = True,
    ) -> None:
        methods = tuple(methods)
        unknown = [m for m in methods if m not in METHODS]
        if unknown or not methods:
            raise ValueError(f"unknown explanation methods {unknown or methods}; choose from {', '.join(METHODS)}")
        if targets not in ("true", "predicted", "both"):
            raise ValueError(f"targets must be 'true', 'predicted' or 'both', got {targets!r}")
        bad = [m for m in drift_measures if m not in DRIFT_MEASURES]
        if bad:
            raise ValueError(f"unknown drift measures {bad}; choose from {sorted(DRIFT_MEASURES)}")
        if every_n_epochs < 1 or num_probes < 1:
            raise ValueError("every_n_epochs and num_probes must be >= 1")
        if (probes is None) != (probe_targets is None):
            raise ValueError("probes and probe_targets go together: give both or neither")
        self.methods = methods
        self.every_n_epochs = every_n_epochs
        self.num_probes = num_probes
        self.probe_indices = probe_indices
        self.num_artifact_probes = num_artifact_probes
        self.targets = targets
        self.lrp_composite = lrp_composite
        self.crp_layer = crp_layer
        self.crp_top_k = crp_top_k
        self.crp_reference_pool = crp_reference_pool
        self.gradcam_layer = gradcam_layer
        if canonizers is not None and canonizers not in CANONIZER_FAMILIES:
            raise ValueError(f"unknown canonizers {canonizers!r}; choose from {', '.join(CANONIZER_FAMILIES)}")
        self.canonizers = canonizers
        self.module_attr = module_attr
        self.task = task
        self.class_names = class_names
        self.log_at_fit_start = log_at_fit_start
        self.drift_measures = tuple(drift_measures)
        self.drift_top_fraction = drift_top_fraction
        self.drift_size = drift_size
        self.timeline_length = timeline_length
        self.per_probe_scalars = per_probe_scalars
        self.explain_on_eval = explain_on_eval
        self.tile = tile
        self.seed = seed
        self.tag = tag
        self.verbose = verbose
        self.probes: Optional[Probes] = probes_from_tensors(probes, probe_targets) if probes is not None else None
        self._user_probes = probes is not None
        self._reference_pool: Optional[Probes] = None
        self._denormalize: Any = None
        self._warned_no_tb = False
        self._layout_written = False
        # checkpointed state
        self.history: list[dict[str, Any]] = []
        self.first: dict[str, torch.Tensor] = {}
        self.previous: dict[str, torch.Tensor] = {}
        self.timeline: dict[str, list[tuple[int, torch.Tensor]]] = {}
        self.last_epoch: Optional[int] = None
        self._restored_ids: Optional[list[int]] = None

    # ------------------------------------------------------------------ checkpoint state
    @property
    def state_key(self) -> str:
        return self._generate_state_key(tag=self.tag, methods=self.methods)

    def state_dict(self) -> dict[str, Any]:
        return {
            "history": list(self.history),
            "first": dict(self.first),
            "previous": dict(self.previous),
            "timeline": {k: list(v) for k, v in self.timeline.items()},
            "last_epoch": self.last_epoch,
            "probe_ids": list(self.probes.ids) if self.probes is not None else None,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))
        self.first = dict(state_dict.get("first", {}))
        self.previous = dict(state_dict.get("previous", {}))
        self.timeline = {k: list(v) for k, v in state_dict.get("timeline", {}).items()}
        self.last_epoch = state_dict.get("last_epoch")
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
            self.first, self.previous, self.timeline = {}, {}, {}
        self._restored_ids = None

    # ------------------------------------------------------------------ hooks
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if not trainer.is_global_zero:
            return  # only rank 0 explains
        self._denormalize = denormalizer(trainer)
        if self.probes is None:
            dataset = validation_dataset(trainer.datamodule, trainer)
            self.probes = select_probes(
                dataset, self.num_probes, self.seed, self.num_artifact_probes, indices=self.probe_indices
            )
            if "crp" in self.methods and self.crp_reference_pool > 0:
                self._reference_pool = select_probes(dataset, self.crp_reference_pool, self.seed + 1, 0)
        self._check_restored_probes()

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        tb = find_tensorboard(trainer)
        if tb is None and not self._warned_no_tb:
            rank_zero_warn(
                "ExplanationMonitor: no TensorBoardLogger found; heatmaps are not logged, scalars go "
                "through pl_module.log"
            )
            self._warned_no_tb = True
        if tb is not None:
            self._write_layout(tb)
            self._log_probe_table(tb)
        if self.log_at_fit_start and not self.history and not trainer.fast_dev_run:
            self._run(trainer, pl_module, epoch=-1, mode="fit")  # baseline: images + TB scalars only

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        fn = trainer.state.fn
        mode = "fit" if fn == "fit" else str(getattr(fn, "value", fn))
        if mode == "fit":
            if not should_run(trainer, self.every_n_epochs):
                return
            if self.last_epoch is not None and trainer.current_epoch <= self.last_epoch:
                return  # already explained (e.g. resumed mid-epoch): never duplicate a drift point
        elif not self.explain_on_eval:
            return
        self._run_and_log(trainer, pl_module, mode)

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.explain_on_eval:
            self._run_and_log(trainer, pl_module, "test")

    # ------------------------------------------------------------------ work
    def _run_and_log(self, trainer: Trainer, pl_module: LightningModule, mode: str) -> None:
        scalars: Optional[dict[str, float]] = None
        if trainer.is_global_zero:
            scalars = self._run(trainer, pl_module, epoch=trainer.current_epoch, mode=mode)
        # every rank reaches the broadcast, so nothing deadlocks and all ranks log identical values
        scalars = trainer.strategy.broadcast(scalars, src=0)
        if scalars:
            pl_module.log_dict(scalars, sync_dist=False)

    def _run(self, trainer: Trainer, pl_module: LightningModule, epoch: int, mode: str) -> dict[str, float]:
        if self.probes is None:
            return {}
        start = time.perf_counter()
        if self.verbose:
            where = "initial model" if epoch < 0 else f"epoch {epoch}"
            notify(trainer, f"[{self.tag}] explaining {len(self.probes)} probes ({', '.join(self.methods)}), {where}")
        with preserve_rng():
            module = explained_module(pl_module, self.module_attr)
            result = explain_probes(
                module,
                self.probes,
                methods=self.methods,
                targets=self.targets,
                task=self._task(pl_module, trainer),
                lrp_composite=self.lrp_composite,
                crp_layer=self.crp_layer,
                crp_top_k=self.crp_top_k,
                gradcam_layer=self.gradcam_layer,
                canonizers=self.canonizers,
            )
            references = self._concept_references(module, result) if "crp" in self.methods else None
        scalars: dict[str, float] = {}
        per_probe: dict[str, float] = {}
        if mode == "fit":
            scalars, per_probe = self._update_drift(result, epoch)
        elapsed = time.perf_counter() - start
        scalars[f"{self.tag}/time_s"] = elapsed
        tb = find_tensorboard(trainer)
        if tb is not None:
            self._log_images(tb, trainer, result, references, epoch, mode)
            step = trainer.global_step
            for name, value in per_probe.items():
                tb.experiment.add_scalar(name, value, step)
            if epoch < 0:  # pl_module.log is not allowed in on_fit_start
                for name, value in scalars.items():
                    tb.experiment.add_scalar(name, value, step)
        if mode == "fit":
            self.history.append({"epoch": epoch, "step": trainer.global_step, **scalars})
            self.last_epoch = epoch if epoch >= 0 else self.last_epoch
        if self.verbose:
            notify(trainer, f"[{self.tag}] explanations done in {elapsed:.1f} s")
        return scalars if epoch >= 0 else {}

    def _task(self, pl_module: LightningModule, trainer: Trainer) -> str:
        if self.task is not None:
            return self.task
        task = getattr(pl_module, "task", None) or getattr(trainer.datamodule, "task", None)
        return task if task in ("binary", "multiclass", "multilabel") else "multiclass"

    def _names(self, trainer: Trainer, pl_module: LightningModule) -> Optional[list[str]]:
        if self.class_names:
            return list(self.class_names)
        for source in (pl_module, getattr(trainer, "datamodule", None)):
            names = getattr(source, "class_names", None)
            if names:
                return list(names)
        return None

    def _concept_references(self, module: torch.nn.Module, result: ProbeExplanations) -> Optional[dict]:
        if self._reference_pool is None or "crp" not in result.concepts:
            return None
        from ..explainers import concept_references

        channels = sorted({int(c) for c in result.concepts["crp"][1].flatten().tolist()})
        pool = self._reference_pool
        targets = pool.targets if pool.targets.ndim == 1 else pool.targets.float().argmax(1)
        refs = concept_references(module, pool.images, targets, layer=result.crp_layer, channels=channels, n_ref=1)
        crops = refs.crops(self._denormalize(pool.images))  # (K, 1, 3, s, s): the most relevant region
        return {int(c): crops[k] for k, c in enumerate(refs.channels.tolist())}

    # ------------------------------------------------------------------ drift
    def _pool(self, maps: torch.Tensor) -> torch.Tensor:
        h, w = maps.shape[-2:]
        if max(h, w) <= self.drift_size:
            return maps.float().cpu()
        size = (max(1, round(h * self.drift_size / max(h, w))), max(1, round(w * self.drift_size / max(h, w))))
        return F.adaptive_avg_pool2d(maps.float().cpu()[:, None], size)[:, 0]

    def _update_drift(self, result: ProbeExplanations, epoch: int) -> tuple[dict[str, float], dict[str, float]]:
        scalars: dict[str, float] = {}
        per_probe: dict[str, float] = {}
        for method, maps in result.maps.items():
            small = self._pool(maps[result.primary])
            for ref_name, ref in (("prev", self.previous.get(method)), ("first", self.first.get(method))):
                if ref is None or ref.shape != small.shape:
                    continue
                scores = drift_scores(small, ref, self.drift_measures, self.drift_top_fraction)
                for measure, values in scores.items():
                    scalars[f"{self.tag}/drift/{method}/{measure}_{ref_name}"] = float(values.mean())
                    if self.per_probe_scalars:
                        for row, value in zip(result.row_labels[result.primary], values.tolist()):
                            per_probe[f"{self.tag}/drift_probe/{method}/{row}/{measure}_{ref_name}"] = value
            self.previous[method] = small
            self.first.setdefault(method, small)
            frames = self.timeline.setdefault(method, [])
            frames.append((epoch, small.half()))
            del frames[: max(0, len(frames) - self.timeline_length)]
        return scalars, per_probe

    # ------------------------------------------------------------------ TensorBoard
    def _write_layout(self, tb: Any) -> None:
        if self._layout_written:
            return
        layout = {
            f"{self.tag} drift": {
                f"{m} vs previous epoch": ["Multiline", [rf"{self.tag}/drift/.*/{m}_prev"]] for m in self.drift_measures
            }
            | {f"{m} vs first epoch": ["Multiline", [rf"{self.tag}/drift/.*/{m}_first"]] for m in self.drift_measures}
            | {"explanation time (s)": ["Multiline", [rf"{self.tag}/time_s"]]},
        }
        tb.experiment.add_custom_scalars(layout)
        self._layout_written = True

    def _log_probe_table(self, tb: Any) -> None:
        if self.probes is None:
            return
        lines = ["| probe | dataset index | target | artifact |", "|---|---|---|---|"]
        for k, (i, t, a) in enumerate(
            zip(self.probes.ids, self.probes.targets.tolist(), self.probes.artifact.tolist())
        ):
            lines.append(f"| {k} | {i} | {t} | {'yes' if a else ''} |")
        tb.experiment.add_text(f"{self.tag}/probes", "\n".join(lines), 0)

    def _log_images(
        self, tb: Any, trainer: Trainer, result: ProbeExplanations, references: Optional[dict], epoch: int, mode: str
    ) -> None:
        names = self._names(trainer, trainer.lightning_module)
        images01 = self._denormalize(self.probes.images)
        step = trainer.global_step
        suffix = "" if mode == "fit" else f"/{mode}"
        epoch_label = "init" if epoch < 0 else f"ep {epoch}"
        for kind, rows in result.rows.items():
            captions = result.captions(kind, names, epoch_label)
            row_images = images01[rows.probe]
            for method, maps in result.maps.items():
                grid = explanation_grid(row_images, maps[kind], captions, tile=self.tile)
                tb.experiment.add_image(f"{self.tag}/{method}/{kind}{suffix}", grid, step)
            if kind == result.primary and "crp" in result.concepts:
                heat, channels = result.concepts["crp"]
                grid = concept_grid(row_images, heat, channels, captions, references, tile=max(48, self.tile * 2 // 3))
                tb.experiment.add_image(f"{self.tag}/crp/concepts{suffix}", grid, step)
        if mode == "fit":
            for method, frames in self.timeline.items():
                labels = ["init" if e < 0 else f"ep{e}" for e, _ in frames]
                rows = result.row_labels[result.primary]
                grid = timeline_grid([f.float() for _, f in frames], labels, rows, tile=max(32, self.tile // 2))
                tb.experiment.add_image(f"{self.tag}/{method}/timeline", grid, step)


class ProbeExplanations:
    """Explanations of one probe set at one point in training (pure data, produced by :func:`explain_probes`)."""

    def __init__(self) -> None:
        self.rows: dict[str, Any] = {}
        self.maps: dict[str, dict[str, torch.Tensor]] = {}
        self.concepts: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.row_labels: dict[str, list[str]] = {}
        self.primary = "true"
        self.probs = torch.empty(0)
        self.crp_layer: Optional[str] = None

    def captions(self, kind: str, names: Optional[list[str]], epoch_label: str) -> list[str]:
        def name(k: int) -> str:
            return names[k] if names and 0 <= k < len(names) else str(k)

        rows = self.rows[kind]
        out = []
        for r in range(len(rows.probe)):
            p, c = int(rows.probe[r]), int(rows.cls[r])
            true, pred = rows.true_label[r], rows.pred_label[r]
            text = f"#{rows.ids[r]} {epoch_label} true={name(true) if true >= 0 else '-'} pred={name(pred)}"
            text += f" p({name(c)})={float(self.probs[p, c]):.2f}"
            if rows.artifact[r]:
                text += " [artifact]"
            out.append(text)
        return out


class _Rows:
    """Which (probe, class) pairs are explained for one target kind."""

    def __init__(
        self, probe: torch.Tensor, cls: torch.Tensor, probes: Probes, preds: torch.Tensor, multilabel: bool
    ) -> None:
        self.probe, self.cls = probe, cls
        self.ids = [probes.ids[int(p)] for p in probe]
        self.artifact = [bool(probes.artifact[int(p)]) for p in probe]
        if multilabel:
            self.true_label = [int(c) if probes.targets[int(p)][int(c)] > 0.5 else -1 for p, c in zip(probe, cls)]
            self.pred_label = [int(c) if preds[int(p)][int(c)] else -1 for p, c in zip(probe, cls)]
        else:
            self.true_label = [int(probes.targets[int(p)]) for p in probe]
            self.pred_label = [int(preds[int(p)]) for p in probe]


def _rows_for(kind: str, probes: Probes, probs: torch.Tensor, multilabel: bool) -> _Rows:
    n = len(probes)
    if not multilabel:
        preds = probs.argmax(1)
        cls = probes.targets.long() if kind == "true" else preds
        return _Rows(torch.arange(n), cls, probes, preds, False)
    preds = probs > 0.5
    source = torch.nan_to_num(probes.targets.float(), nan=0.0) > 0.5 if kind == "true" else preds
    pairs = [(p, c) for p in range(n) for c in source[p].nonzero().flatten().tolist()]
    if not pairs:  # nothing positive: explain the most probable class of each probe
        pairs = [(p, int(probs[p].argmax())) for p in range(n)]
    probe, cls = (torch.tensor(v) for v in zip(*pairs))
    return _Rows(probe, cls, probes, preds, True)


def explain_probes(
    module: torch.nn.Module,
    probes: Probes,
    methods: Sequence[str] = ("lrp",),
    targets: str = "true",
    task: str = "multiclass",
    lrp_composite: Optional[str] = None,
    crp_layer: Optional[str] = None,
    crp_top_k: int = 4,
    gradcam_layer: Optional[str] = None,
    canonizers: Optional[str] = None,
) -> ProbeExplanations:
    """Pure function behind the monitor: predictions and heatmaps of every method for the probe rows.

    Usable from a notebook: ``explain_probes(model, select_probes(val_dataset, 8), methods=("lrp", "gradcam"))``.
    """

    with torch.inference_mode(False):  # under trainer.validate/test every tensor made here must be a normal one
        probes = Probes(
            probes.images.clone(),
            probes.targets.clone(),
            list(probes.ids),
            probes.artifact.clone(),
            probes.artifact_masks,
        )
        return _explain_probes(
            module, probes, methods, targets, task, lrp_composite, crp_layer, crp_top_k, gradcam_layer, canonizers
        )


def _explain_probes(
    module: torch.nn.Module,
    probes: Probes,
    methods: Sequence[str],
    targets: str,
    task: str,
    lrp_composite: Optional[str],
    crp_layer: Optional[str],
    crp_top_k: int,
    gradcam_layer: Optional[str],
    canonizers: Optional[str] = None,
) -> ProbeExplanations:
    from ..explainers import CRP, LRP, AttentionGradCAM, GradCAM
    from ..explainers._core import _family_canonizers, default_concept_layer, explanation_model

    def fresh_canonizers() -> Optional[list]:  # canonizers hold state: a new set for every explainer
        if canonizers is None:
            return None
        return [] if canonizers == "none" else _family_canonizers(canonizers)

    multilabel = task == "multilabel"
    out = ProbeExplanations()
    with explanation_model(module) as net, torch.no_grad():
        logits = net(probes.images.to(next(net.parameters()).device).clone()).float().cpu()
    out.probs = torch.sigmoid(logits) if multilabel else logits.softmax(1)
    kinds = {"true": ["true"], "predicted": ["pred"], "both": ["true", "pred"]}[targets]
    out.primary = kinds[0]
    out.crp_layer = crp_layer or (default_concept_layer(module) if "crp" in methods else None)
    for kind in kinds:
        rows = _rows_for(kind, probes, out.probs, multilabel)
        out.rows[kind] = rows
        out.row_labels[kind] = [
            f"p{i}" if c is None else f"p{i}_c{c}"
            for i, c in zip(rows.ids, [None if not multilabel else int(c) for c in rows.cls])
        ]
        x = probes.images[rows.probe]
        for method in methods:
            if method == "lrp":
                heat = LRP(composite=lrp_composite, canonizers=fresh_canonizers())(module, x, rows.cls)
            elif method == "gradcam":
                heat = GradCAM(layer=gradcam_layer)(module, x, rows.cls)
            elif method == "attention_gradcam":
                heat = AttentionGradCAM(layer=gradcam_layer)(module, x, rows.cls)
            else:
                if kind == out.primary:
                    out.concepts["crp"] = CRP(
                        layer=out.crp_layer, composite=lrp_composite, canonizers=fresh_canonizers()
                    )(module, x, rows.cls, top_k=crp_top_k)
                continue
            out.maps.setdefault(method, {})[kind] = heat.detach().float().cpu()
    return out
