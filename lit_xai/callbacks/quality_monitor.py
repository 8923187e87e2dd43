"""``ExplanationQualityMonitor``: is the explanation faithful? Quality metrics of fixed probes every N epochs.

A thin Lightning shell around :func:`lit_xai.metrics.evaluate_quality`: it picks probes from the validation set
once, and every ``every_n_epochs`` validation epochs (and at the last one) computes on global rank 0 pixel flipping
(AOPC of each method against a random order), max-sensitivity, infidelity, the cascading randomisation check and
the augmentation-stability table, broadcasts the scalars to every rank and logs them, together with

* ``<tag>/pixel_flipping``: the probe-averaged MoRF curves of every method and the random order, in one plot;
* ``<tag>/randomization``: Spearman similarity to the trained maps after each cascading step;
* ``<tag>/stability``: the stability table (one row per augmentation: predicted class and probability per probe,
  changed predictions, heatmap SSIM / Spearman per method) as an image and as markdown text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from ..metrics.quality import METRICS, QualityReport, evaluate_quality, make_explainers
from ..metrics.stability import STABILITY_TRANSFORMS
from ..probes import Probes, select_probes, validation_dataset
from ..visualization import line_plot, table_image
from ._common import epoch_step, explained_module, log_scalars, preserve_rng, publish, should_run
from .sinks import log_image, log_text

__all__ = ["ExplanationQualityMonitor"]


class ExplanationQualityMonitor(Callback):
    """Explanation-quality metrics of fixed probes, every N epochs, in the logger next to the heatmaps.

    Args:
        explainers: ``"lrp"``, ``"gradcam"``, ``"attention_gradcam"`` (built with their defaults, i.e. the
            architecture's composite, canonizers and Grad-CAM layer).
        every_n_epochs: run at the end of every N-th validation epoch of ``fit`` (and at the last epoch).
        num_probes: probes drawn (stratified by class, seeded) from the validation set; the main cost knob.
        metrics: subset of ``("pixel_flipping", "sensitivity", "infidelity", "randomization", "stability")``.
        patch: pixel-flipping region side (pixels).
        steps: pixel-flipping steps (capped at the number of regions flipped).
        fraction: share of the regions replaced at the last pixel-flipping step (the AOPC covers this start).
        sensitivity_samples: noisy copies per probe for max-sensitivity (each costs one explanation).
        infidelity_samples: perturbations per probe for infidelity (each costs one forward pass).
        randomization_steps: cascading steps from the output layer (block level); None = all blocks.
        transforms: augmentations of the stability table (names in ``lit_xai.metrics.STABILITY_TRANSFORMS``).
        module_attr: attribute of the LightningModule that maps images to logits (None = its forward).
        seed: probe selection and every perturbation, fixed across epochs so changes reflect the model.
        tag: prefix of every logged tag.

    Example (YAML)::

        trainer:
          callbacks:
            - class_path: lit_xai.callbacks.ExplanationQualityMonitor
              init_args: {explainers: [lrp, gradcam], every_n_epochs: 2, num_probes: 4}
    """

    def __init__(
        self,
        explainers: Sequence[str] = ("lrp", "gradcam"),
        every_n_epochs: int = 2,
        num_probes: int = 4,
        metrics: Sequence[str] = METRICS,
        patch: int = 8,
        steps: int = 16,
        fraction: float = 0.25,
        sensitivity_samples: int = 5,
        infidelity_samples: int = 10,
        randomization_steps: Optional[int] = 3,
        transforms: Sequence[str] = tuple(STABILITY_TRANSFORMS),
        module_attr: Optional[str] = None,
        seed: int = 0,
        tag: str = "quality",
    ) -> None:
        self.explainers = tuple(explainers)
        make_explainers(self.explainers)  # validate the names now, not at the first epoch end
        bad = [m for m in metrics if m not in METRICS]
        if bad:
            raise ValueError(f"unknown metrics {bad}; choose from {METRICS}")
        unknown = [t for t in transforms if t not in STABILITY_TRANSFORMS]
        if unknown:
            raise ValueError(f"unknown transforms {unknown}; choose from {list(STABILITY_TRANSFORMS)}")
        if every_n_epochs < 1 or num_probes < 1 or patch < 1 or steps < 1:
            raise ValueError("every_n_epochs, num_probes, patch and steps must be >= 1")
        if sensitivity_samples < 1 or infidelity_samples < 1:
            raise ValueError("sensitivity_samples and infidelity_samples must be >= 1")
        self.every_n_epochs = every_n_epochs
        self.num_probes = num_probes
        self.metrics = tuple(metrics)
        self.patch = patch
        self.steps = steps
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        self.fraction = fraction
        self.sensitivity_samples = sensitivity_samples
        self.infidelity_samples = infidelity_samples
        self.randomization_steps = randomization_steps
        self.transforms = tuple(transforms)
        self.module_attr = module_attr
        self.seed = seed
        self.tag = tag
        self.probes: Optional[Probes] = None
        self.last_report: Optional[QualityReport] = None
        # checkpointed state
        self.history: list[dict[str, Any]] = []
        self.last_epoch: Optional[int] = None

    @property
    def state_key(self) -> str:
        return self._generate_state_key(tag=self.tag)

    def state_dict(self) -> dict[str, Any]:
        return {"history": list(self.history), "last_epoch": self.last_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))
        self.last_epoch = state_dict.get("last_epoch")

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if trainer.is_global_zero and self.probes is None:
            dataset = validation_dataset(getattr(trainer, "datamodule", None), trainer)
            self.probes = select_probes(dataset, self.num_probes, self.seed, num_artifact=0)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit" or not should_run(trainer, self.every_n_epochs):
            return
        if self.last_epoch is not None and trainer.current_epoch <= self.last_epoch:
            return  # resumed mid-epoch: never log an epoch twice
        scalars: Optional[dict[str, float]] = None
        if trainer.is_global_zero:
            scalars = self._run(trainer, pl_module)
        # every rank reaches the broadcast, so nothing deadlocks and all ranks log identical values
        scalars = trainer.strategy.broadcast(scalars, src=0)
        if scalars:
            publish(trainer, scalars)
            log_scalars(trainer, scalars, epoch_step(trainer.current_epoch))
        self.last_epoch = trainer.current_epoch

    def _targets(self, probes: Probes) -> torch.Tensor:
        t = probes.targets
        if t.ndim == 1:
            return t.long()
        # multi-label: explain each probe's first positive label (class 0 when it has none)
        pos = torch.nan_to_num(t.float(), nan=0.0) > 0.5
        return torch.where(pos.any(1), pos.float().argmax(1), torch.zeros(len(t), dtype=torch.long))

    def _run(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, float]:
        if self.probes is None:
            return {}
        module = explained_module(pl_module, self.module_attr)
        with preserve_rng(), torch.inference_mode(False):
            report = evaluate_quality(
                module,
                self.probes.images.clone(),
                self._targets(self.probes),
                self.explainers,
                metrics=self.metrics,
                patch=self.patch,
                steps=self.steps,
                fraction=self.fraction,
                sensitivity_samples=self.sensitivity_samples,
                infidelity_samples=self.infidelity_samples,
                randomization_steps=self.randomization_steps,
                transforms=self.transforms,
                seed=self.seed,
            )
        self.last_report = report
        scalars = report.scalars(self.tag)
        self.history.append({"epoch": trainer.current_epoch, "step": epoch_step(trainer.current_epoch), **scalars})
        self._log_figures(trainer, pl_module, report)
        return scalars

    def _class_names(self, trainer: Trainer, pl_module: LightningModule) -> Optional[list[str]]:
        for owner in (pl_module, getattr(trainer, "datamodule", None)):
            names = getattr(owner, "class_names", None)
            if names:
                return [str(n) for n in names]
        return None

    def _log_figures(self, trainer: Trainer, pl_module: LightningModule, report: QualityReport) -> None:
        step, epoch = epoch_step(trainer.current_epoch), trainer.current_epoch
        n = len(self.probes) if self.probes is not None else 0
        if report.curves and report.fraction is not None:
            plot = line_plot(
                report.mean_curves(relative=True),
                x=[100.0 * float(f) for f in report.fraction],
                title=f"pixel flipping, most relevant first (epoch {epoch}, {n} probes)",
                xlabel="% of regions replaced",
                ylabel="change of target logit",
            )
            aopc = ", ".join(f"{k} {float(v.mean()):.3f}" for k, v in report.aopc.items())
            log_image(
                trainer, f"{self.tag}/pixel_flipping", plot, step, caption=f"AOPC (higher = more faithful): {aopc}"
            )
        if report.randomization:
            first = next(iter(report.randomization.values()))
            # step 0 is the trained model itself (similarity 1), so the drop from it is visible
            curves = {m: [1.0] + [float(v) for v in r.spearman.mean(1)] for m, r in report.randomization.items()}
            steps = ", ".join(f"{i + 1}={name}" for i, name in enumerate(first.layers))
            steps = f"0=none, {steps}"
            plot = line_plot(
                curves,
                x=list(range(len(first.layers) + 1)),
                title=f"cascading randomisation (epoch {epoch}): similarity to trained maps",
                xlabel=f"layers randomised, output first: {steps}",
                ylabel="Spearman",
            )
            log_image(trainer, f"{self.tag}/randomization", plot, step)
        if report.stability:
            names = self._class_names(trainer, pl_module)
            ids = self.probes.ids if self.probes is not None else None
            header, rows = report.stability_table(names, ids)
            title = f"augmentation stability, epoch {epoch}: predicted class and probability; heatmap similarity"
            log_image(trainer, f"{self.tag}/stability", table_image(header, rows, title=title), step)
            log_text(trainer, f"{self.tag}/stability_table", report.stability_markdown(names, ids), step)
