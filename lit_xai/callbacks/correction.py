"""``ShortcutCorrection``: unlearn an artifact while training (A-ClArC, RR-ClArC or RRR), for any LightningModule.

The callback only schedules and logs; the work is :mod:`lit_xai.correction` (pure):

* **A-ClArC** (``method="aclarc"``, input space): at the first epoch's start (once: the rates are the dataset's; a
  resumed run restores them) the artifact's rate in every class is estimated on a seeded, bounded sample of the
  training set (:func:`lit_xai.correction.artifact_rates`, summed over the DDP ranks); in ``on_train_batch_start`` the
  registered inserter draws the artifact into artifact-free images of the batch with the per-class probability that
  gives every class the same rate (:func:`lit_xai.correction.equalising_probabilities`), in place, before the training
  step reads the batch. The artifact then no longer predicts the label. Costs one inserter call per batch; no CAV, no
  extra backward.
* **CAV refit** (every ``cav.every_n_epochs`` epochs, at the epoch's start): a seeded, bounded sample of the training
  set (``budget.max_samples`` in all, split over the DDP ranks and gathered with the strategy's ``all_gather``), its
  activations at ``cav.layer`` in eval mode, artifact labels from the items' ``artifact`` field, a registered detector
  or an index list, and the signal-pattern CAV (:func:`lit_xai.correction.fit_cav`). The global RNG is restored
  afterwards (augmentations of the sampled items do not shift training).
* **Penalty** (every training batch): the training step's own forward is observed through two temporary forward
  hooks (the layer and the module that returns the logits); in ``on_before_backward`` -- after Lightning zeroed the
  gradients of the accumulation window, before its backward -- ``penalty.weight * penalty`` is differentiated with
  respect to the trainable parameters and added to their ``.grad``. No extra forward pass. The contribution is divided
  by ``accumulate_grad_batches`` and multiplied by the AMP scaler's scale when there is one (``16-mixed``), exactly as
  Lightning treats the loss; under ``bf16-mixed`` the double backward runs on the bf16 graph and the penalty is
  accumulated in float32. Under DDP the gradients are added before the wrapped backward, so DDP's reducer averages
  them with the loss gradients (only single-process runs are tested).

Opt-in: without the callback nothing of this runs. It needs automatic optimisation.

Logged once per epoch (step = completed epochs, like the other lit_xai callbacks): ``correction/penalty`` (mean over
the epoch's batches, before the weight), ``correction/lambda`` (``penalty.weight``) and, after each refit,
``correction/cav_auc`` (AUC of the CAV scores, artifact vs clean: how well the direction separates the artifact at this
layer); with ``"aclarc"`` ``correction/inserted`` (share of the epoch's training images that got the artifact drawn
in).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Literal, Optional, Union

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn

from .._moved import renamed_argument
from ..contracts import ModelSpec, explained_module, read_item, split_batch, split_dataset
from ..correction import (
    CAV,
    CAVSettings,
    CorrectionBudget,
    PenaltySettings,
    artifact_rates,
    collect_activations,
    equalising_probabilities,
    fit_cav,
    insert_artifact,
    paired_basis,
    penalty_output,
    resolve_layer,
    rrclarc_penalty,
    rrr_penalty,
    sample_labeled,
)
from ..report.outcome import correction_outcome, outcome_text, read_run_record
from ..visualization.console import RULE
from .base import epoch_step, preserve_rng
from .shortcut_monitor import ShortcutMonitor
from .sinks import log_scalars, notify

#: the correction's result in the run folder (read by the run report)
CORRECTION_RECORD = "correction.json"

#: the deprecated flat arguments (one release) -> (settings group, its field)
FLAT_ARGUMENTS: dict[str, tuple[str, str]] = {
    "layer": ("cav", "layer"),
    "pooling": ("cav", "pooling"),
    "refit_every_n_epochs": ("cav", "every_n_epochs"),
    "cav_class": ("cav", "within_class"),
    "weight": ("penalty", "weight"),
    "output": ("penalty", "targets"),
    "penalty_scale": ("penalty", "scale"),
    "subspace": ("penalty", "subspace"),
    "max_samples": ("budget", "max_samples"),
    "seed": ("budget", "seed"),
    "module_attr": ("model", "module_attr"),
    "normalization": ("model", "normalization"),
}
_GROUPS: dict[str, type] = {
    "cav": CAVSettings, "penalty": PenaltySettings, "budget": CorrectionBudget, "model": ModelSpec
}  # fmt: skip

__all__ = ["FLAT_ARGUMENTS", "ShortcutCorrection"]


class ShortcutCorrection(Callback):
    """Unlearn an artifact during training: A-ClArC (augment), RR-ClArC (default; CAV penalty) or RRR (mask penalty).

    Args:
        method: ``"rrclarc"`` (gradient along the CAV at ``cav.layer``), ``"rrr"`` (input gradient inside the
            artifact mask; needs an ``artifact_mask`` batch field or ``labels="detector"``, which uses the detector's
            masks) or ``"aclarc"`` (insert the artifact into artifact-free training images until every class carries
            it at the same rate; needs a registered inserter and a datamodule that can denormalize, or
            ``model=ModelSpec(normalization=...)`` / ``ModelSpec(input_range=...)``).
        artifact: the registered artifact to unlearn (:func:`lit_xai.artifacts.get_artifact`): its detector for
            ``labels="detector"``, its inserter for ``"aclarc"`` and ``penalty.subspace > 1``.
        labels: where the artifact labels come from: ``"field"`` (items' ``artifact`` flag), ``"detector"``, or the
            training-set indices that carry it.
        cav: where and how often the CAV is fitted (:class:`~lit_xai.correction.CAVSettings`: ``layer``,
            ``pooling``, ``every_n_epochs``, ``within_class``); None = defaults.
        penalty: the RR-ClArC / RRR penalty (:class:`~lit_xai.correction.PenaltySettings`: ``weight``, ``targets``,
            ``scale``, ``subspace``); None = defaults.
        budget: how much of the training set is sampled (:class:`~lit_xai.correction.CorrectionBudget`:
            ``max_samples``, ``seed``); None = defaults.
        target_rate: ``"aclarc"``: the artifact rate every class is brought to (default: the highest class rate).
        model: what the callback cannot find out about the model (:class:`~lit_xai.contracts.ModelSpec`, as for the
            monitors): ``module_attr`` (the submodule that returns logits), ``normalization`` / ``input_range`` (for
            the detector and the inserter; default: the datamodule's ``denormalize``), ``class_names`` (for a named
            ``cav.within_class``).
        baseline: the uncorrected run to compare with when fit ends (a run folder, or the folder of its
            ``version_*`` runs: the newest one): with a :class:`~lit_xai.callbacks.ShortcutMonitor` in the trainer,
            the callback then prints whether the shortcut is gone (the insertion effect before -> after with its
            interval, the validation accuracy cost) and writes it to ``correction.json``, which the run report
            shows. Without it, only this run's result is printed and written.

    Deprecated (one release, each with a :class:`~lit_xai._moved.LitXaiDeprecationWarning` naming the new spelling):
    the flat arguments ``layer``, ``pooling``, ``refit_every_n_epochs``, ``cav_class`` (now ``cav=``), ``weight``,
    ``output`` (``"pred"`` is now ``"predicted"``), ``penalty_scale``, ``subspace`` (now ``penalty=``),
    ``max_samples``, ``seed`` (now ``budget=``), ``module_attr``, ``normalization`` (now ``model=``); see
    :data:`FLAT_ARGUMENTS`. The old attribute names still read the settings.

    Example:
        >>> from lit_xai.correction import CAVSettings, PenaltySettings
        >>> cb = ShortcutCorrection(cav=CAVSettings(layer="net.layer3"), penalty=PenaltySettings(weight=1.0))
        >>> cb.state_key
        "ShortcutCorrection{'layer': 'net.layer3', 'method': 'rrclarc', 'artifact': 'ring'}"

    Example (YAML)::

        - class_path: lit_xai.callbacks.ShortcutCorrection
          init_args: {method: rrclarc, artifact: ring, cav: {layer: net.layer3}, penalty: {weight: 1.0}}
    """

    def __init__(
        self,
        method: Literal["rrclarc", "rrr", "aclarc"] = "rrclarc",
        artifact: str = "ring",
        labels: Union[Literal["field", "detector"], list[int]] = "field",
        cav: Optional[CAVSettings] = None,
        penalty: Optional[PenaltySettings] = None,
        budget: Optional[CorrectionBudget] = None,
        target_rate: Optional[float] = None,
        model: Optional[ModelSpec] = None,
        baseline: Optional[str] = None,
        *,
        # deprecated flat spellings (one release): see FLAT_ARGUMENTS
        layer: Optional[str] = None,
        weight: Optional[float] = None,
        pooling: Optional[Literal["flatten", "mean"]] = None,
        output: Optional[Literal["all", "true", "pred", "predicted"]] = None,
        penalty_scale: Optional[Literal["shift", "unit"]] = None,
        refit_every_n_epochs: Optional[int] = None,
        max_samples: Optional[int] = None,
        cav_class: Optional[int] = None,
        module_attr: Optional[str] = None,
        seed: Optional[int] = None,
        normalization: Optional[tuple[tuple[float, ...], tuple[float, ...]]] = None,
        subspace: Optional[int] = None,
    ) -> None:
        if method not in ("rrclarc", "rrr", "aclarc"):
            hint = " (the first argument is the method now; the layer is cav=CAVSettings(layer=...))" if (
                isinstance(method, str) and "." in method
            ) else ""  # fmt: skip
            raise ValueError(f"unknown method {method!r}; choose 'rrclarc', 'rrr' or 'aclarc'{hint}")
        if target_rate is not None and not 0.0 <= target_rate <= 1.0:
            raise ValueError(f"target_rate must be in [0, 1], got {target_rate}")
        flat = {
            "layer": layer, "weight": weight, "pooling": pooling, "output": output, "penalty_scale": penalty_scale,
            "refit_every_n_epochs": refit_every_n_epochs, "max_samples": max_samples, "cav_class": cav_class,
            "module_attr": module_attr, "seed": seed, "normalization": normalization, "subspace": subspace,
        }  # fmt: skip
        groups = _grouped(
            {"cav": cav, "penalty": penalty, "budget": budget, "model": model},
            {k: v for k, v in flat.items() if v is not None},
        )
        self.method = method
        self.artifact = artifact
        self.labels = labels if isinstance(labels, str) else [int(i) for i in labels]
        self.cav_settings: CAVSettings = groups["cav"]  # ``self.cav`` is the fitted CAV
        self.penalty: PenaltySettings = groups["penalty"]
        self.budget: CorrectionBudget = groups["budget"]
        self.model: ModelSpec = groups["model"]
        self.target_rate = target_rate
        self.baseline = baseline
        self.outcome: Optional[dict[str, Any]] = None  # the correction's result, when fit ends
        self._log_dir: Optional[str] = None
        self._within: Optional[int] = None  # cav.within_class as an index (resolved at setup)
        self.cav: Optional[CAV] = None
        self.probabilities: Optional[torch.Tensor] = None  # A-ClArC: per-class insertion probability
        self.rates: Optional[torch.Tensor] = None  # A-ClArC: the per-class artifact rates it was computed from
        self._inserted: list[tuple[int, int]] = []
        self._generator: Optional[torch.Generator] = None
        self.history: list[dict[str, float]] = []
        self._handles: list[Any] = []
        self._captured: dict[str, Any] = {}
        self._penalties: list[torch.Tensor] = []
        self._auc: Optional[float] = None

    # the settings under the names this callback had before they were grouped (read; ``layer`` also written)
    @property
    def layer(self) -> Optional[str]:
        return self.cav_settings.layer

    @layer.setter
    def layer(self, value: Optional[str]) -> None:
        self.cav_settings.layer = value

    pooling = property(lambda self: self.cav_settings.pooling)
    refit_every_n_epochs = property(lambda self: self.cav_settings.every_n_epochs)
    cav_class = property(lambda self: self.cav_settings.within_class)
    weight = property(lambda self: self.penalty.weight)
    output = property(lambda self: penalty_output(self.penalty.targets))
    penalty_scale = property(lambda self: self.penalty.scale)
    subspace = property(lambda self: self.penalty.subspace)
    max_samples = property(lambda self: self.budget.max_samples)
    seed = property(lambda self: self.budget.seed)
    module_attr = property(lambda self: self.model.module_attr)
    normalization = property(lambda self: self.model.normalization)

    def _value_range(self, trainer: Trainer) -> Any:
        return self.model.value_range(getattr(trainer, "datamodule", None))

    @property
    def state_key(self) -> str:
        return self._generate_state_key(layer=self.layer, method=self.method, artifact=self.artifact)

    # ------------------------------------------------------------------------------------------------ setup
    def _resolved_layer(self, pl_module: LightningModule) -> str:
        if self.layer is not None:
            return self.layer
        try:
            from ..models.architectures import get_spec

            spec_layer = get_spec(pl_module.architecture).gradcam_layer  # type: ignore[arg-type]
        except Exception as err:  # noqa: BLE001 - any failure: no spec to read a default from
            raise ValueError(
                "ShortcutCorrection needs cav=CAVSettings(layer='<dotted name>') for this model (no architecture "
                f"spec to read a default from: {err})"
            ) from err
        return f"net.{spec_layer}" if self.module_attr is None else str(spec_layer)

    def _within_index(self, trainer: Trainer, pl_module: LightningModule) -> Optional[int]:
        """``cav.within_class`` as a class index (a name looked up in the spec's, datamodule's or module's names)."""
        within = self.cav_settings.within_class
        if within is None or isinstance(within, int):
            return within
        if within.lstrip("-").isdigit():
            return int(within)
        owners = [getattr(trainer, "datamodule", None), pl_module]
        found = self.model.class_names or next((n for o in owners if (n := getattr(o, "class_names", None))), [])
        names = [str(n) for n in found]
        if within not in names:
            raise ValueError(
                f"CAVSettings(within_class={within!r}) names no class (the classes: {names or 'unnamed'}); give an "
                "index or one of the names, or name the classes with model=ModelSpec(class_names=[...])"
            )
        return names.index(within)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self._log_dir = trainer.log_dir or trainer.default_root_dir  # broadcasts: every rank, here
        if not pl_module.automatic_optimization:
            raise ValueError(
                "ShortcutCorrection adds its gradients around Lightning's automatic backward; with manual optimisation "
                "add lit_xai.correction.rrclarc_penalty to your loss yourself"
            )
        self.layer = self._resolved_layer(pl_module)
        self._within = self._within_index(trainer, pl_module)
        module = explained_module(pl_module, self.module_attr, knob="ModelSpec.module_attr")
        resolve_layer(module, self.layer)  # fail early with the valid names

    # ------------------------------------------------------------------------------------------------ CAV fit
    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._penalties = []
        self._auc = None
        self._inserted = []
        if self.method == "aclarc":
            if self.probabilities is None:  # the rates are the dataset's: estimated once (or restored)
                self.probabilities = self.insertion_probabilities(trainer, pl_module)
            seed = self.seed * 1_000_003 + trainer.current_epoch * 1009 + trainer.global_rank + 7
            self._generator = torch.Generator().manual_seed(seed)
            return
        if self.cav is not None and trainer.current_epoch % self.refit_every_n_epochs != 0:
            return
        try:
            self.cav = self.fit(trainer, pl_module)
            self._auc = self.cav.separability
        except ValueError as err:
            rank_zero_warn(f"ShortcutCorrection: no CAV this epoch ({err}); the penalty is off until one is fitted")

    def _sampling(self, trainer: Trainer) -> tuple[Any, int, Any, torch.Generator]:
        """The training split, the world size, its value range and this rank's and epoch's seeded generator."""
        dataset = split_dataset(getattr(trainer, "datamodule", None), "train", trainer)
        vr = self._value_range(trainer)
        seed = self.seed * 1_000_003 + trainer.current_epoch * 1009 + trainer.global_rank
        return dataset, max(1, trainer.world_size), vr, torch.Generator().manual_seed(seed)

    def fit(self, trainer: Trainer, pl_module: LightningModule) -> CAV:
        """Sample, collect activations, gather across ranks, fit the CAV (the global RNG is restored)."""
        model = explained_module(pl_module, self.module_attr, knob="ModelSpec.module_attr")
        dataset, world, vr, generator = self._sampling(trainer)
        with preserve_rng():
            images, labels, _ = sample_labeled(
                dataset,
                max(2, self.max_samples // world),
                source=self.labels,
                artifact=self.artifact,
                to01=vr.to01 if vr is not None else None,
                generator=generator,
                within_class=self._within,
            )
            acts = collect_activations(model, self.layer, images, self.pooling)
            shape = _layer_shape(model, self.layer, images[:1])
            paired = self._paired(model, images[~labels], vr, generator) if self.subspace > 1 else None
        if world > 1:
            device = pl_module.device

            def gather(t: torch.Tensor) -> torch.Tensor:
                return trainer.strategy.all_gather(t.to(device)).reshape(-1, *t.shape[1:]).cpu()

            acts = gather(acts)
            labels = gather(labels.to(torch.float32)) > 0.5
            paired = tuple(gather(t) for t in paired) if paired is not None else None
        cav = fit_cav(acts, labels, layer=self.layer, pooling=self.pooling, shape=shape)
        return paired_basis(cav, *paired, self.subspace) if paired is not None else cav

    def _paired(self, model: torch.nn.Module, clean: torch.Tensor, vr: Any, generator: torch.Generator) -> tuple:
        """Activations of the clean sample images without and with the artifact drawn in (for the subspace)."""
        from ..artifacts import get_artifact

        insert = get_artifact(self.artifact).insert
        if insert is None or vr is None:
            raise ValueError(
                f"penalty=PenaltySettings(subspace={self.subspace}) needs a registered inserter of "
                f"{self.artifact!r} and a value range (a datamodule with normalize/denormalize, or "
                "model=ModelSpec(normalization=(mean, std)) or ModelSpec(input_range=(low, high))); or use subspace=1"
            )
        inserted, _ = insert(vr.to01(clean.float()), generator=generator)
        return (
            collect_activations(model, self.layer, clean, self.pooling),
            collect_activations(model, self.layer, vr.from01(inserted), self.pooling),
        )

    def insertion_probabilities(self, trainer: Trainer, pl_module: LightningModule) -> torch.Tensor:
        """A-ClArC: the per-class artifact rates on a seeded sample (summed over ranks) -> insertion probabilities."""
        dataset, world, vr, generator = self._sampling(trainer)
        with preserve_rng():
            rates, counts = artifact_rates(
                dataset,
                max(2, self.max_samples // world),
                source=self.labels,
                artifact=self.artifact,
                to01=vr.to01 if vr is not None else None,
                generator=generator,
                num_classes=getattr(pl_module, "num_classes", None),
            )
        if world > 1:
            hits = trainer.strategy.reduce((rates * counts).to(pl_module.device), reduce_op="sum").cpu()
            counts = trainer.strategy.reduce(counts.to(pl_module.device, torch.float32), reduce_op="sum").cpu()
            rates = hits / counts.clamp_min(1)
        self.rates = rates
        return equalising_probabilities(rates, self.target_rate)

    def _augment(self, trainer: Trainer, batch: Any) -> None:
        """A-ClArC: draw the artifact into the batch's artifact-free images in place (the step then trains on them)."""
        if self.probabilities is None:
            return
        item = read_item(batch)
        image, targets = item["image"], item["target"]
        vr = self._value_range(trainer)
        if vr is None:
            raise ValueError(
                "method='aclarc' inserts the artifact in [0, 1] image space: use a datamodule with "
                "normalize/denormalize or give model=ModelSpec(normalization=(mean, std)) or ModelSpec(input_range=...)"
            )
        k = self.probabilities.numel()
        if targets.ndim != 1 or targets.is_floating_point():
            raise ValueError("method='aclarc' needs class-index targets (N,); multi-label batches are not supported")
        with torch.no_grad():
            images01 = vr.to01(image.detach().float())
            flags = item.get("artifact") if self.labels == "field" and isinstance(batch, dict) else None
            if flags is None:
                from ..artifacts import get_artifact

                art = get_artifact(self.artifact)
                scores, _ = art.detect(images01)
                flags = scores >= art.threshold
            probabilities = self.probabilities
            if int(targets.max()) >= k:
                probabilities = torch.cat([probabilities, probabilities.new_zeros(int(targets.max()) + 1 - k)])
            out, chosen = insert_artifact(
                images01, targets, torch.as_tensor(flags).bool(), probabilities, self.artifact, self._generator
            )
            if chosen.any():
                index = chosen.nonzero().view(-1).to(image.device)
                rows = index.to(out.device)
                drawn = out[rows] != images01[rows]  # only the drawn pixels change (no round trip elsewhere)
                image[index] = torch.where(drawn.to(image.device), vr.from01(out[rows]).to(image.dtype), image[index])
                if isinstance(batch, dict) and isinstance(batch.get("artifact"), torch.Tensor):
                    batch["artifact"][index.to(batch["artifact"].device)] = True
        self._inserted.append((int(chosen.sum()), int(chosen.numel())))

    # ------------------------------------------------------------------------------------------------ penalty
    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        self._remove_hooks()
        if self.method == "aclarc":
            self._augment(trainer, batch)
            return
        if self.cav is None:
            return
        model = explained_module(pl_module, self.module_attr, knob="ModelSpec.module_attr")
        captured = self._captured = {}
        if self.output == "true":
            captured["targets"] = split_batch(batch)[1]
        if self.method == "rrr":
            image, masks = _rrr_inputs(batch)
            if masks is None and self.labels == "detector":
                vr = self._value_range(trainer)
                if vr is not None:
                    from ..artifacts import get_artifact

                    with torch.no_grad():
                        _, masks = get_artifact(self.artifact).detect(vr.to01(image.detach().float()))
            if masks is None:
                raise ValueError(
                    "method='rrr' needs artifact masks: an 'artifact_mask' batch field, or labels='detector' with a "
                    "datamodule that can denormalize"
                )
            image.requires_grad_(True)  # the step's forward then records the input gradient's graph
            captured["masks"] = masks

            def pre_hook(_m: torch.nn.Module, args: tuple) -> None:
                captured["inputs"] = args[0]

            self._handles.append(model.register_forward_pre_hook(pre_hook))
        else:

            def layer_hook(_m: torch.nn.Module, _inp: Any, out: torch.Tensor) -> None:
                captured["activations"] = out

            self._handles.append(resolve_layer(model, self.layer).register_forward_hook(layer_hook))

        def output_hook(_m: torch.nn.Module, _inp: Any, out: Any) -> None:
            if isinstance(out, torch.Tensor):
                captured["logits"] = out
                captured["pair"] = captured.get("activations")  # the activations that produced these logits

        self._handles.append(model.register_forward_hook(output_hook))

    def on_before_backward(self, trainer: Trainer, pl_module: LightningModule, loss: torch.Tensor) -> None:
        captured, self._captured = self._captured, {}
        self._remove_hooks()
        if self.cav is None or "logits" not in captured:
            return
        with torch.enable_grad():
            if self.method == "rrr":
                penalty = rrr_penalty(captured["inputs"], captured["logits"], captured["masks"])
            else:
                if captured.get("pair") is None:
                    return
                penalty = rrclarc_penalty(
                    captured["pair"],
                    captured["logits"],
                    self.cav.directions * (self.cav.shift if self.penalty_scale == "shift" else 1.0),
                    self.pooling,
                    self.output,
                    captured.get("targets"),
                )
            self._penalties.append(penalty.detach())  # a tensor: no device sync per step
            scale = self.weight / max(1, int(trainer.accumulate_grad_batches))
            scaler = getattr(trainer.precision_plugin, "scaler", None)
            if scaler is not None:
                scale = scale * float(scaler.get_scale())
            params = [p for p in pl_module.parameters() if p.requires_grad]
            grads = torch.autograd.grad(penalty * scale, params, retain_graph=True, allow_unused=True)
        with torch.no_grad():
            for p, g in zip(params, grads):
                if g is None:
                    continue
                if p.grad is None:
                    p.grad = torch.empty_like(p).copy_(g)  # the parameter's layout (double backward may permute)
                else:
                    p.grad.add_(g.to(p.grad.dtype))

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._remove_hooks()
        self._captured = {}

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        scalars: dict[str, float] = {} if self.method == "aclarc" else {"correction/lambda": self.weight}
        if self._inserted:
            inserted, seen = (sum(column) for column in zip(*self._inserted))
            scalars["correction/inserted"] = inserted / max(1, seen)
        if self._penalties:
            scalars["correction/penalty"] = float(torch.stack(self._penalties).float().mean())
        if self._auc is not None:
            scalars["correction/cav_auc"] = float(self._auc)
        self.history.append({"epoch": float(trainer.current_epoch), **scalars})
        log_scalars(trainer, scalars, epoch_step(trainer.current_epoch))

    # ------------------------------------------------------------------------------------------------ the outcome
    def describe(self) -> str:
        """The correction in words (the console, ``correction.json`` and the report say which one was applied)."""
        if self.method == "aclarc":
            return f"A-ClArC (the {self.artifact} drawn into artifact-free training images, every class at one rate)"
        where = f" along a {self.subspace}-d subspace" if self.subspace > 1 else ""
        name = "RR-ClArC" if self.method == "rrclarc" else "RRR"
        return f"{name} (lambda = {self.weight:g} at {self.layer}{where})" if self.method == "rrclarc" else (
            f"{name} (lambda = {self.weight:g}, input gradients inside the {self.artifact} mask)"
        )

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Whether the shortcut is gone: this run's ShortcutMonitor record against the ``baseline`` run's."""
        monitor = next((cb for cb in trainer.callbacks if isinstance(cb, ShortcutMonitor)), None)
        if monitor is None or not trainer.is_global_zero or trainer.sanity_checking:
            return
        before = before_acc = before_run = None
        if self.baseline:
            try:
                run, before, before_acc = read_run_record(self.baseline)
                before_run = str(run)
            except (FileNotFoundError, ValueError, OSError) as err:
                rank_zero_warn(f"ShortcutCorrection: cannot compare with baseline={self.baseline!r}: {err}")
        accuracy = trainer.callback_metrics.get("val/acc")
        after = {"alerts": list(monitor.alerts), "history": list(monitor.history)}
        self.outcome = correction_outcome(
            self.describe(), self.artifact, after, None if accuracy is None else float(accuracy), before, before_acc,
            before_run,
        )  # fmt: skip
        if self._log_dir:
            os.makedirs(self._log_dir, exist_ok=True)
            with open(os.path.join(self._log_dir, CORRECTION_RECORD), "w") as fh:
                json.dump(self.outcome, fh, indent=2)
        notify(trainer, f"{RULE}\nShortcutCorrection: {outcome_text(self.outcome)}\n{RULE}")

    # ------------------------------------------------------------------------------------------------ cleanup
    def _remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._remove_hooks()
        self._captured = {}

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._remove_hooks()
        self._captured = {}

    # ------------------------------------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        probabilities = self.probabilities.tolist() if self.probabilities is not None else None
        return {
            "cav": self.cav.to_dict() if self.cav is not None else None,
            "history": list(self.history),
            "probabilities": probabilities,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        record = state_dict.get("cav")
        self.cav = CAV.from_dict(record) if record is not None else None
        self.history = list(state_dict.get("history", []))
        probabilities = state_dict.get("probabilities")
        self.probabilities = torch.tensor(probabilities) if probabilities is not None else None


def _grouped(given: dict[str, Any], flat: dict[str, Any]) -> dict[str, Any]:
    """The settings groups (copies: the callback writes the resolved layer into its own) with the deprecated flat
    arguments folded in, each with a warning naming its new spelling; a flat argument and the same field of a group
    given together are an error."""
    groups: dict[str, Any] = {}
    for name, kind in _GROUPS.items():
        group = given[name]
        if group is not None and not isinstance(group, kind):
            raise TypeError(f"ShortcutCorrection({name}=...) must be a {kind.__name__}, got {type(group).__name__}")
        fields: dict[str, Any] = {}
        for old, (where, field) in FLAT_ARGUMENTS.items():
            if where != name or old not in flat:
                continue
            spelling = f"{name}={kind.__name__}({field}=...) (YAML: {name}: {{{field}: ...}})"
            renamed_argument("ShortcutCorrection", old, spelling, stacklevel=4)
            if group is not None and getattr(group, field) != getattr(kind(), field):
                raise ValueError(f"ShortcutCorrection: give {old}= or {name}={kind.__name__}({field}=...), not both")
            fields[field] = flat[old]
        groups[name] = dataclasses.replace(group if group is not None else kind(), **fields)
    return groups


def _layer_shape(model: torch.nn.Module, layer: str, image: torch.Tensor) -> tuple[int, ...]:
    """The layer's output shape for one image (without the batch), for the record."""
    shapes: list[tuple[int, ...]] = []
    handle = resolve_layer(model, layer).register_forward_hook(lambda _m, _i, out: shapes.append(tuple(out.shape[1:])))
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        param = next(model.parameters(), None)
        with torch.no_grad():
            model(image.to(param.device) if param is not None else image)
    finally:
        handle.remove()
        for m, mode in modes:
            m.training = mode
    return shapes[0] if shapes else ()


def _rrr_inputs(batch: Any) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    item = read_item(batch)
    masks = item.get("artifact_mask") if isinstance(batch, dict) else None
    return item["image"], masks
