"""``ShortcutCorrection``: unlearn an artifact while training (RR-ClArC / RRR), for any LightningModule.

The callback only schedules and logs; the work is :mod:`lit_xai.correction` (pure):

* **CAV refit** (every ``refit_every_n_epochs`` epochs, at the epoch's start): a seeded, bounded sample of the
  training set (``max_samples`` in all, split over the DDP ranks and gathered with the strategy's ``all_gather``),
  its activations at ``layer`` in eval mode, artifact labels from the items' ``artifact`` field, a registered
  detector or an index list, and the signal-pattern CAV (:func:`lit_xai.correction.fit_cav`). The global RNG is
  restored afterwards (augmentations of the sampled items do not shift training).
* **Penalty** (every training batch): the training step's own forward is observed through two temporary forward
  hooks (the layer and the module that returns the logits); in ``on_before_backward`` -- after Lightning zeroed the
  gradients of the accumulation window, before its backward -- ``weight * penalty`` is differentiated with respect to
  the trainable parameters and added to their ``.grad``. No extra forward pass. The contribution is divided by
  ``accumulate_grad_batches`` and multiplied by the AMP scaler's scale when there is one (``16-mixed``), exactly as
  Lightning treats the loss; under ``bf16-mixed`` the double backward runs on the bf16 graph and the penalty is
  accumulated in float32. Under DDP the gradients are added before the wrapped backward, so DDP's reducer averages
  them with the loss gradients (only single-process runs are tested).

Opt-in: without the callback nothing of this runs. It needs automatic optimisation.

Logged once per epoch (step = completed epochs, like the other lit_xai callbacks): ``correction/penalty`` (mean over
the epoch's batches, before the weight), ``correction/lambda`` and, after each refit, ``correction/cav_auc`` (AUC of the
CAV scores, artifact vs clean: how well the direction separates the artifact at this layer).
"""

from __future__ import annotations

from typing import Any, Literal, Optional, Union

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn

from ..contracts import explained_module, read_item, split_batch, split_dataset, value_range
from ..correction import (
    CAV,
    collect_activations,
    fit_cav,
    resolve_layer,
    rrclarc_penalty,
    rrr_penalty,
    sample_labeled,
)
from .base import epoch_step, preserve_rng
from .sinks import log_scalars

__all__ = ["ShortcutCorrection"]


class ShortcutCorrection(Callback):
    """Penalise the model's use of an artifact during training: RR-ClArC (default) or RRR.

    Args:
        layer: dotted name of the layer whose activations carry the CAV, relative to the module that returns logits
            (``pl_module``, or ``module_attr``). ``None``: the architecture's Grad-CAM layer for a
            :class:`lit_xai.models.ImageClassifier` (``net.<layer>``).
        weight: lambda, the penalty's weight in the loss.
        method: ``"rrclarc"`` (gradient along the CAV at ``layer``) or ``"rrr"`` (input gradient inside the artifact
            mask; needs an ``artifact_mask`` batch field or ``labels="detector"``, which uses the detector's masks).
        artifact: the registered artifact (:func:`lit_xai.artifacts.get_artifact`) for ``labels="detector"``.
        labels: ``"field"`` (items' ``artifact`` flag), ``"detector"``, or the training-set indices that carry it.
        pooling: CAV space: ``"flatten"`` (spatial, default) or ``"mean"`` (channels).
        output: which output's derivative RR-ClArC penalises: ``"all"`` logits, the ``"true"`` or ``"pred"`` class.
        penalty_scale: ``"shift"`` (default) differentiates along ``cav.shift * v``, the artifact's mean shift at the
            layer, so the penalty is the squared first-order change of the logits when an average artifact is added
            (logit^2 units; ``weight`` ~ 0.1-10 whatever the layer's size); ``"unit"`` uses the unit CAV as in the
            paper (then ``weight`` depends on the layer's scale and dimension).
        refit_every_n_epochs: refit the CAV at the start of every N-th epoch (the model changes, so does the
            direction).
        max_samples: images sampled for each CAV fit (all ranks together).
        cav_class: fit the CAV on images of this class only (artifact vs clean within the class the artifact
            co-occurs with), so it does not also contain that class's features; ``None``: all classes.
        module_attr: attribute of the LightningModule that maps images to logits (``None``: the module itself).
        seed: seed of the CAV samples (with the epoch and the rank).
        normalization: ``(mean, std)`` of the inputs, for the detector; default: the datamodule's ``denormalize``.

    Example:
        >>> cb = ShortcutCorrection(layer="net.layer3", weight=1.0)
        >>> cb.state_key
        "ShortcutCorrection{'layer': 'net.layer3', 'method': 'rrclarc', 'artifact': 'ring'}"
    """

    def __init__(
        self,
        layer: Optional[str] = None,
        weight: float = 1.0,
        method: Literal["rrclarc", "rrr"] = "rrclarc",
        artifact: str = "ring",
        labels: Union[Literal["field", "detector"], list[int]] = "field",
        pooling: Literal["flatten", "mean"] = "flatten",
        output: Literal["all", "true", "pred"] = "all",
        penalty_scale: Literal["shift", "unit"] = "shift",
        refit_every_n_epochs: int = 1,
        max_samples: int = 512,
        cav_class: Optional[int] = None,
        module_attr: Optional[str] = None,
        seed: int = 0,
        normalization: Optional[tuple[tuple[float, ...], tuple[float, ...]]] = None,
    ) -> None:
        if method not in ("rrclarc", "rrr"):
            raise ValueError(f"unknown method {method!r}; choose 'rrclarc' or 'rrr'")
        if weight < 0:
            raise ValueError(f"weight must be >= 0, got {weight}")
        if refit_every_n_epochs < 1 or max_samples < 4:
            raise ValueError("refit_every_n_epochs must be >= 1 and max_samples >= 4")
        if output not in ("all", "true", "pred"):
            raise ValueError(f"unknown output {output!r}; choose 'all', 'true' or 'pred'")
        if penalty_scale not in ("shift", "unit"):
            raise ValueError(f"unknown penalty_scale {penalty_scale!r}; choose 'shift' or 'unit'")
        if pooling not in ("flatten", "mean"):
            raise ValueError(f"unknown pooling {pooling!r}; choose 'flatten' or 'mean'")
        self.layer = layer
        self.weight = float(weight)
        self.method = method
        self.artifact = artifact
        self.labels = labels if isinstance(labels, str) else [int(i) for i in labels]
        self.pooling = pooling
        self.output = output
        self.penalty_scale = penalty_scale
        self.refit_every_n_epochs = int(refit_every_n_epochs)
        self.max_samples = int(max_samples)
        self.cav_class = cav_class
        self.module_attr = module_attr
        self.seed = int(seed)
        self.normalization = normalization
        self.cav: Optional[CAV] = None
        self.history: list[dict[str, float]] = []
        self._handles: list[Any] = []
        self._captured: dict[str, Any] = {}
        self._penalties: list[torch.Tensor] = []
        self._auc: Optional[float] = None

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
                "ShortcutCorrection needs layer='<dotted name>' for this model (no architecture spec to read a default "
                f"from: {err})"
            ) from err
        return f"net.{spec_layer}" if self.module_attr is None else str(spec_layer)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if not pl_module.automatic_optimization:
            raise ValueError(
                "ShortcutCorrection adds its gradients around Lightning's automatic backward; with manual optimisation "
                "add lit_xai.correction.rrclarc_penalty to your loss yourself"
            )
        self.layer = self._resolved_layer(pl_module)
        resolve_layer(explained_module(pl_module, self.module_attr), self.layer)  # fail early with the valid names

    # ------------------------------------------------------------------------------------------------ CAV fit
    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._penalties = []
        self._auc = None
        if self.cav is not None and trainer.current_epoch % self.refit_every_n_epochs != 0:
            return
        try:
            self.cav = self.fit(trainer, pl_module)
            self._auc = self.cav.separability
        except ValueError as err:
            rank_zero_warn(f"ShortcutCorrection: no CAV this epoch ({err}); the penalty is off until one is fitted")

    def fit(self, trainer: Trainer, pl_module: LightningModule) -> CAV:
        """Sample, collect activations, gather across ranks, fit the CAV (the global RNG is restored)."""
        model = explained_module(pl_module, self.module_attr)
        dataset = split_dataset(getattr(trainer, "datamodule", None), "train", trainer)
        world, rank = max(1, trainer.world_size), trainer.global_rank
        vr = value_range(getattr(trainer, "datamodule", None), self.normalization)
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + trainer.current_epoch * 1009 + rank)
        with preserve_rng():
            images, labels, _ = sample_labeled(
                dataset,
                max(2, self.max_samples // world),
                source=self.labels,
                artifact=self.artifact,
                to01=vr.to01 if vr is not None else None,
                generator=generator,
                within_class=self.cav_class,
            )
            acts = collect_activations(model, self.layer, images, self.pooling)
            shape = _layer_shape(model, self.layer, images[:1])
        if world > 1:
            device = pl_module.device
            acts = trainer.strategy.all_gather(acts.to(device)).reshape(-1, acts.shape[1]).cpu()
            labels = trainer.strategy.all_gather(labels.to(device, torch.float32)).reshape(-1).cpu() > 0.5
        return fit_cav(acts, labels, layer=self.layer, pooling=self.pooling, shape=shape)

    # ------------------------------------------------------------------------------------------------ penalty
    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        self._remove_hooks()
        if self.cav is None:
            return
        model = explained_module(pl_module, self.module_attr)
        captured = self._captured = {}
        if self.output == "true":
            captured["targets"] = split_batch(batch)[1]
        if self.method == "rrr":
            image, masks = _rrr_inputs(batch)
            if masks is None and self.labels == "detector":
                vr = value_range(getattr(trainer, "datamodule", None), self.normalization)
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
                    self.cav.direction * (self.cav.shift if self.penalty_scale == "shift" else 1.0),
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
        scalars: dict[str, float] = {"correction/lambda": self.weight}
        if self._penalties:
            scalars["correction/penalty"] = float(torch.stack(self._penalties).float().mean())
        if self._auc is not None:
            scalars["correction/cav_auc"] = float(self._auc)
        self.history.append({"epoch": float(trainer.current_epoch), **scalars})
        log_scalars(trainer, scalars, epoch_step(trainer.current_epoch))

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
        return {"cav": self.cav.to_dict() if self.cav is not None else None, "history": list(self.history)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        record = state_dict.get("cav")
        self.cav = CAV.from_dict(record) if record is not None else None
        self.history = list(state_dict.get("history", []))


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
