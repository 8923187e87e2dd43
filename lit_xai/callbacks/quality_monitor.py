"""``ExplanationQualityMonitor``: is the explanation faithful? Quality metrics of fixed probes every N epochs.

A thin Lightning shell (on :class:`~lit_xai.callbacks.base.MonitorBase`) around
:func:`lit_xai.metrics.evaluate_quality`: it picks probes from the validation set once, and every ``every_n_epochs``
validation epochs (and at the last one) computes on global rank 0 (or on the background thread) pixel flipping
(AOPC of each method against a random order), max-sensitivity, infidelity, the cascading randomisation check and
the augmentation-stability table, broadcasts the scalars to every rank and logs them, together with

* ``<tag>/pixel_flipping``: the probe-averaged MoRF curves of every method and the random order, in one plot;
* ``<tag>/randomization``: Spearman similarity to the trained maps after each cascading step;
* ``<tag>/stability``: the stability table (one row per augmentation: predicted class and probability per probe,
  changed predictions, heatmap SSIM / Spearman per method) as an image and as markdown text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from lightning.pytorch import LightningModule, Trainer

from ..contracts import ModelContract, ModelSpec, stand_in_labels
from ..metrics.quality import METRICS, QualityReport, evaluate_quality, make_explainers
from ..metrics.stability import STABILITY_TRANSFORMS
from ..probes import Probes, select_probes, validation_dataset
from ..visualization import line_plot, table_image
from .base import MonitorBase, epoch_step
from .sinks import Picture

__all__ = ["ExplanationQualityMonitor", "QualitySettings"]


@dataclass
class QualitySettings:
    """The metrics' own settings (YAML: a plain mapping); see :func:`lit_xai.metrics.evaluate_quality`.

    Args:
        patch: pixel-flipping region side (pixels).
        steps: pixel-flipping steps (capped at the number of regions flipped).
        fraction: share of the regions replaced at the last pixel-flipping step (the AOPC covers this start).
        sensitivity_samples: noisy copies per probe for max-sensitivity (each costs one explanation).
        infidelity_samples: perturbations per probe for infidelity (each costs one forward pass).
        randomization_steps: cascading steps from the output layer (block level); None = all blocks.
        transforms: augmentations of the stability table (names in ``lit_xai.metrics.STABILITY_TRANSFORMS``).
        seed: probe selection and every perturbation, fixed across epochs so changes reflect the model.

    Example:
        >>> QualitySettings(steps=4).patch
        8
    """

    patch: int = 8
    steps: int = 16
    fraction: float = 0.25
    sensitivity_samples: int = 5
    infidelity_samples: int = 10
    randomization_steps: Optional[int] = 3
    transforms: Sequence[str] = field(default_factory=lambda: tuple(STABILITY_TRANSFORMS))
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = [t for t in self.transforms if t not in STABILITY_TRANSFORMS]
        if unknown:
            raise ValueError(f"unknown transforms {unknown}; choose from {list(STABILITY_TRANSFORMS)}")
        if self.patch < 1 or self.steps < 1:
            raise ValueError("QualitySettings: patch and steps must be >= 1")
        if self.sensitivity_samples < 1 or self.infidelity_samples < 1:
            raise ValueError("QualitySettings: sensitivity_samples and infidelity_samples must be >= 1")
        if not 0.0 < self.fraction <= 1.0:
            raise ValueError(f"QualitySettings: fraction must be in (0, 1], got {self.fraction}")
        self.transforms = tuple(self.transforms)


class ExplanationQualityMonitor(MonitorBase):
    """Explanation-quality metrics of fixed probes, every N epochs, in the logger next to the heatmaps.

    Args:
        explainers: ``"lrp"``, ``"gradcam"``, ``"attention_gradcam"`` (built with their defaults, i.e. the
            architecture's composite, canonizers and Grad-CAM layer).
        every_n_epochs: run at the end of every N-th validation epoch of ``fit`` (and at the last epoch).
        num_probes: probes drawn (stratified by class, seeded) from the validation set; the main cost knob.
        metrics: subset of ``("pixel_flipping", "sensitivity", "infidelity", "randomization", "stability")``.
        settings: the metrics' settings (:class:`QualitySettings`); None = defaults.
        model: what the monitor cannot find out about the model (:class:`~lit_xai.contracts.ModelSpec`); a
            single-logit binary model is measured as two logits.
        tag: prefix of every logged tag.
        verbose: announce each measurement through the progress bar.
        asynchronous: measure a snapshot of the weights on a background thread (see
            :class:`~lit_xai.callbacks.base.MonitorBase`).

    Example (YAML)::

        trainer:
          callbacks:
            - class_path: lit_xai.callbacks.ExplanationQualityMonitor
              init_args: {explainers: [lrp, gradcam], every_n_epochs: 2, num_probes: 4, settings: {steps: 8}}
    """

    def __init__(
        self,
        explainers: Sequence[str] = ("lrp", "gradcam"),
        every_n_epochs: int = 2,
        num_probes: int = 4,
        metrics: Sequence[str] = METRICS,
        settings: Optional[QualitySettings] = None,
        model: Optional[ModelSpec] = None,
        tag: str = "quality",
        verbose: bool = False,
        asynchronous: bool = False,
    ) -> None:
        super().__init__(every_n_epochs, model, tag, verbose, asynchronous)
        self.explainers = tuple(explainers)
        make_explainers(self.explainers)  # validate the names now, not at the first epoch end
        bad = [m for m in metrics if m not in METRICS]
        if bad:
            raise ValueError(f"unknown metrics {bad}; choose from {METRICS}")
        if num_probes < 1:
            raise ValueError(f"num_probes must be >= 1, got {num_probes}")
        self.num_probes = num_probes
        self.metrics = tuple(metrics)
        self.settings = settings if settings is not None else QualitySettings()
        self.probes: Optional[Probes] = None
        self.last_report: Optional[QualityReport] = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if trainer.is_global_zero and self.probes is None:
            dataset = validation_dataset(getattr(trainer, "datamodule", None), trainer)
            self.probes = select_probes(dataset, self.num_probes, self.settings.seed, num_artifact=0)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.measure_now(trainer):
            if trainer.is_global_zero and self.probes is not None:
                self.resolve(trainer, pl_module, self.probes.images[:2].clone(), self.probes.targets)
            self.run(trainer, pl_module, trainer.current_epoch)

    def _targets(self, module: torch.nn.Module, probes: Probes) -> torch.Tensor:
        """The class explained per probe: its (stand-in) label; its predicted class when it has none."""
        labels = stand_in_labels(probes.targets)
        if (labels < 0).any():
            with torch.no_grad():
                predicted = module(probes.images).argmax(1).to(labels.device)
            labels = torch.where(labels < 0, predicted, labels)
        return labels

    def measure(self, contract: ModelContract, module: torch.nn.Module, epoch: int, mode: str) -> dict[str, Any]:
        if self.probes is None:
            return {"report": None}
        s = self.settings
        images = self.probes.images.clone()
        report = evaluate_quality(
            module,
            images,
            self._targets(module, self.probes),
            self.explainers,
            metrics=self.metrics,
            patch=s.patch,
            steps=s.steps,
            fraction=s.fraction,
            sensitivity_samples=s.sensitivity_samples,
            infidelity_samples=s.infidelity_samples,
            randomization_steps=s.randomization_steps,
            transforms=s.transforms,
            seed=s.seed,
        )
        return {"report": report}

    def record(self, result: dict[str, Any], epoch: int, mode: str) -> list[dict[str, Any]]:
        report = result["report"]
        if report is None:
            return []
        self.last_report = report
        result["scalars"] = report.scalars(self.tag)
        return [{"epoch": epoch, "step": epoch_step(epoch), **result["scalars"]}]

    def render(self, result: dict[str, Any], epoch: int, mode: str) -> dict[str, Any]:
        report: Optional[QualityReport] = result["report"]
        if report is None:
            return {}
        outputs: dict[str, Any] = dict(result["scalars"])  # computed once, in record
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
            outputs[f"{self.tag}/pixel_flipping"] = Picture(plot, f"AOPC (higher = more faithful): {aopc}")
        if report.randomization:
            first = next(iter(report.randomization.values()))
            # step 0 is the trained model itself (similarity 1), so the drop from it is visible
            curves = {m: [1.0] + [float(v) for v in r.spearman.mean(1)] for m, r in report.randomization.items()}
            steps = ", ".join(f"{i + 1}={name}" for i, name in enumerate(first.layers))
            plot = line_plot(
                curves,
                x=list(range(len(first.layers) + 1)),
                title=f"cascading randomisation (epoch {epoch}): similarity to trained maps",
                xlabel=f"layers randomised, output first: 0=none, {steps}",
                ylabel="Spearman",
            )
            outputs[f"{self.tag}/randomization"] = Picture(plot)
        if report.stability:
            names = self.contract.class_names if self.contract is not None else None
            ids = self.probes.ids if self.probes is not None else None
            header, rows = report.stability_table(names, ids)
            title = f"augmentation stability, epoch {epoch}: predicted class and probability; heatmap similarity"
            outputs[f"{self.tag}/stability"] = Picture(table_image(header, rows, title=title))
            outputs[f"{self.tag}/stability_table"] = report.stability_markdown(names, ids)
        return outputs
