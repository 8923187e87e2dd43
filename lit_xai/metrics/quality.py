"""All explanation-quality metrics for one probe batch and several explainers: what the quality callback logs.

:func:`evaluate_quality` explains the probes once per method and reuses those maps for pixel flipping (MoRF, LeRF
and a seeded random order as the baseline), infidelity, max-sensitivity, the cascading randomisation check and
augmentation stability. It returns a :class:`QualityReport` with per-probe tensors, flat scalars for a logger, the
mean pixel-flipping curves for a plot and the stability table (rows = augmentations).

Example:
    >>> from lit_xai.models.architectures import build_architecture
    >>> net = build_architecture("tiny_resnet", num_classes=2)
    >>> report = evaluate_quality(net, torch.rand(2, 3, 32, 32), torch.tensor([0, 1]), ["lrp", "gradcam"],
    ...                           steps=4, sensitivity_samples=2, infidelity_samples=4, randomization_steps=1,
    ...                           transforms=["rotate90"])
    >>> sorted(report.aopc)
    ['gradcam', 'lrp', 'random']
    >>> "quality/aopc/lrp" in report.scalars()
    True
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Optional, Union

import torch
from torch import nn

from ._evaluation import Explainer, check_batch, explain
from .faithfulness import Replacement, pixel_flipping
from .infidelity import infidelity
from .randomization import RandomizationResult, randomization_check
from .sensitivity import max_sensitivity
from .stability import STABILITY_TRANSFORMS, StabilityResult, augmentation_stability

__all__ = ["METRICS", "QualityReport", "evaluate_quality", "make_explainers"]

#: the metric groups :func:`evaluate_quality` can compute
METRICS = ("pixel_flipping", "sensitivity", "infidelity", "randomization", "stability")


def make_explainers(
    explainers: Union[Sequence[Union[str, Explainer]], Mapping[str, Explainer]],
) -> dict[str, Explainer]:
    """``{label: explainer}`` from registered names (``"lrp"``, ``"gradcam"``, ...), explainer objects, callables or a
    mapping (see :func:`lit_xai.explainers.build_explainer`)."""
    from ..explainers import build_explainer

    if isinstance(explainers, Mapping):
        out = dict(explainers)
    else:
        built = [build_explainer(e) for e in explainers]
        out = {e.label: e for e in built}
        if len(out) != len(built):
            raise ValueError(f"explainer labels repeat: {[e.label for e in built]}; configure them differently")
    if not out:
        raise ValueError("give at least one explainer")
    if "random" in out:
        raise ValueError("'random' is reserved for the random-order pixel-flipping baseline; rename that explainer")
    return out


@dataclass
class QualityReport:
    """Result of :func:`evaluate_quality`; per-probe tensors on the CPU.

    Attributes:
        methods: explainer names.
        curves: ``name -> (N, steps + 1)`` MoRF pixel-flipping scores; ``"random"`` is the seeded random order
            (averaged over its repeats).
        aopc: ``name -> (N,)`` MoRF AOPC (``"random"``: random order); larger = more faithful.
        aopc_lerf: ``name -> (N,)`` LeRF AOPC; smaller = better.
        sensitivity: ``name -> (N,)`` relative max-sensitivity; smaller = more stable.
        infidelity: ``name -> (N,)``; smaller = more faithful.
        randomization: ``name ->`` :class:`RandomizationResult`.
        stability: ``name ->`` :class:`StabilityResult`.
        seconds: wall time per metric group.
        fraction: ``(steps + 1,)`` share of the regions replaced at each pixel-flipping step.
    """

    methods: list[str]
    curves: dict[str, torch.Tensor] = field(default_factory=dict)
    aopc: dict[str, torch.Tensor] = field(default_factory=dict)
    aopc_lerf: dict[str, torch.Tensor] = field(default_factory=dict)
    sensitivity: dict[str, torch.Tensor] = field(default_factory=dict)
    infidelity: dict[str, torch.Tensor] = field(default_factory=dict)
    randomization: dict[str, RandomizationResult] = field(default_factory=dict)
    stability: dict[str, StabilityResult] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    fraction: Optional[torch.Tensor] = None

    def scalars(self, tag: str = "quality") -> dict[str, float]:
        """Probe-averaged scalars ``{tag}/<metric>/<method>`` for a logger."""
        out: dict[str, float] = {}
        for name, v in self.aopc.items():
            out[f"{tag}/aopc/{name}"] = float(v.mean())
        if "random" in self.aopc:
            for m in self.methods:
                if m in self.aopc:
                    out[f"{tag}/aopc_gain/{m}"] = float((self.aopc[m] - self.aopc["random"]).mean())
        for m, v in self.aopc_lerf.items():
            out[f"{tag}/aopc_lerf/{m}"] = float(v.mean())
        for m, v in self.sensitivity.items():
            out[f"{tag}/sensitivity/{m}"] = float(v.mean())
        for m, v in self.infidelity.items():
            out[f"{tag}/infidelity/{m}"] = float(v.mean())
        for m, r in self.randomization.items():
            if r.layers:
                out[f"{tag}/randomization/{m}/spearman_top"] = float(r.spearman[0].mean())
                out[f"{tag}/randomization/{m}/spearman_last"] = float(r.spearman[-1].mean())
                out[f"{tag}/randomization/{m}/ssim_last"] = float(r.ssim[-1].mean())
        for m, s in self.stability.items():
            out[f"{tag}/stability/{m}/ssim"] = float(s.ssim.mean())
            out[f"{tag}/stability/{m}/spearman"] = float(s.spearman.mean())
        if self.stability:
            s = next(iter(self.stability.values()))
            out[f"{tag}/stability/label_change_rate"] = float(s.label_changes().sum()) / max(1, s.label.numel())
        out[f"{tag}/time_s"] = float(sum(self.seconds.values()))
        return out

    def mean_curves(self, relative: bool = True) -> dict[str, list[float]]:
        """Probe-averaged pixel-flipping curves; ``relative`` subtracts each probe's unperturbed score (a drop)."""
        out = {}
        for name, c in self.curves.items():
            c = c - c[:, :1] if relative else c
            out[name] = [float(v) for v in c.mean(0)]
        return out

    def stability_table(
        self, class_names: Optional[Sequence[str]] = None, probe_ids: Optional[Sequence[int]] = None
    ) -> tuple[list[str], list[list[str]]]:
        """``(header, rows)``: one row per augmentation (first row: the original images).

        Columns: per probe the predicted class and its probability, the number of changed predictions, and per
        method the mean SSIM / Spearman of the transformed heatmaps.
        """
        if not self.stability:
            return [], []
        first = next(iter(self.stability.values()))
        n = first.original_label.shape[0]
        ids = list(probe_ids) if probe_ids is not None else list(range(n))

        def cls(k: int) -> str:
            return class_names[k] if class_names is not None and 0 <= k < len(class_names) else str(k)

        header = ["augmentation"] + [f"probe {i}" for i in ids] + ["changed"]
        for m in self.stability:
            header += [f"{m} SSIM", f"{m} Spearman"]
        rows = [
            ["original"]
            + [f"{cls(int(first.original_label[j]))} {float(first.original_prob[j]):.2f}" for j in range(n)]
            + ["-"]
            + ["1.00", "1.00"] * len(self.stability)
        ]
        for ti, name in enumerate(first.transforms):
            row = [name] + [f"{cls(int(first.label[ti, j]))} {float(first.prob[ti, j]):.2f}" for j in range(n)]
            row.append(f"{int(first.label_changes()[ti])}/{n}")
            for s in self.stability.values():
                row += [f"{float(s.ssim[ti].mean()):.2f}", f"{float(s.spearman[ti].mean()):.2f}"]
            rows.append(row)
        return header, rows

    def stability_markdown(
        self, class_names: Optional[Sequence[str]] = None, probe_ids: Optional[Sequence[int]] = None
    ) -> str:
        """:meth:`stability_table` as a markdown table."""
        header, rows = self.stability_table(class_names, probe_ids)
        if not header:
            return ""
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)


def evaluate_quality(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor | int,
    explainers: Union[Sequence[Union[str, Explainer]], Mapping[str, Explainer]] = ("lrp", "gradcam"),
    metrics: Sequence[str] = METRICS,
    patch: int = 8,
    steps: int = 16,
    fraction: float = 0.25,
    replacement: Replacement = 0.0,
    random_repeats: int = 3,
    sensitivity_samples: int = 5,
    sensitivity_radius: float = 0.02,
    infidelity_samples: int = 10,
    infidelity_noise: float = 0.1,
    randomization_steps: Optional[int] = 3,
    transforms: Sequence[str] = tuple(STABILITY_TRANSFORMS),
    seed: int = 0,
) -> QualityReport:
    """Every metric of :data:`METRICS` for ``images`` and each explainer (the pure core of the quality callback).

    Args:
        model: classifier; never changed (metrics evaluate eval-mode copies).
        images: ``(N, C, H, W)`` probes as the model expects them.
        targets: explained class per probe.
        explainers: names (``"lrp"``, ``"gradcam"``, ``"attention_gradcam"``), callables or ``{name: callable}``.
        metrics: subset of :data:`METRICS` to compute.
        patch, steps, replacement: pixel flipping (:func:`~lit_xai.metrics.pixel_flipping`); ``steps`` is capped at
            the number of regions flipped.
        fraction: share of the regions replaced at the last pixel-flipping step. The default (the first quarter, as
            Samek et al. evaluate the first ~15 %) keeps the AOPC on the informative start of the curve: once most
            of the image is replaced every order ends at the same score, which only dilutes the differences.
        random_repeats: random orders averaged for the baseline curve.
        sensitivity_samples, sensitivity_radius: max-sensitivity cost and radius.
        infidelity_samples, infidelity_noise: infidelity cost and noise level.
        randomization_steps: cascading steps from the output layer (block granularity); None = all blocks.
        transforms: augmentations for the stability table.
        seed: seeds every random choice, so successive epochs see the same perturbations.
    """
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; choose from {METRICS}")
    named = make_explainers(explainers)
    x, t = check_batch(model, images, targets)
    report = QualityReport(methods=list(named))
    seconds: dict[str, float] = {}

    def timed(key: str, start: float) -> None:
        seconds[key] = seconds.get(key, 0.0) + time.perf_counter() - start

    heat = {}
    for name, explainer in named.items():
        start = time.perf_counter()
        heat[name] = explain(explainer, model, x, t)
        timed("explain", start)
    if "pixel_flipping" in metrics:
        start = time.perf_counter()
        h, w = x.shape[2:]
        steps = max(1, min(steps, round(fraction * -(-h // patch) * -(-w // patch))))
        common = dict(patch=patch, steps=steps, replacement=replacement, fraction=fraction)
        for name in named:
            curve, aopc = pixel_flipping(model, x, t, heat[name], order="morf", seed=seed, **common)
            report.curves[name], report.aopc[name] = curve.cpu(), aopc.cpu()
            _, lerf = pixel_flipping(model, x, t, heat[name], order="lerf", seed=seed, **common)
            report.aopc_lerf[name] = lerf.cpu()
        runs = [
            pixel_flipping(model, x, t, None, order="random", seed=seed + r, **common)
            for r in range(max(1, random_repeats))
        ]
        report.curves["random"] = torch.stack([c for c, _ in runs]).mean(0).cpu()
        report.aopc["random"] = torch.stack([a for _, a in runs]).mean(0).cpu()
        report.fraction = torch.linspace(0, fraction, steps + 1)
        timed("pixel_flipping", start)
    for name, explainer in named.items():
        if "infidelity" in metrics:
            start = time.perf_counter()
            report.infidelity[name] = infidelity(
                model, x, t, heat[name], infidelity_samples, infidelity_noise, seed=seed
            ).cpu()
            timed("infidelity", start)
        if "sensitivity" in metrics:
            start = time.perf_counter()
            report.sensitivity[name] = max_sensitivity(
                explainer, model, x, t, sensitivity_radius, sensitivity_samples, seed=seed, heatmaps=heat[name]
            ).cpu()
            timed("sensitivity", start)
        if "randomization" in metrics:
            start = time.perf_counter()
            report.randomization[name] = randomization_check(
                explainer, model, x, t, max_steps=randomization_steps, seed=seed, heatmaps=heat[name]
            )
            timed("randomization", start)
        if "stability" in metrics:
            start = time.perf_counter()
            report.stability[name] = augmentation_stability(explainer, model, x, t, transforms, heatmaps=heat[name])
            timed("stability", start)
    report.seconds = seconds
    return report
