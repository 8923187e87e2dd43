"""The pictures of :class:`~lit_xai.callbacks.ExplanationMonitor` as pure functions: the probe grids (maps and
concepts), the outcome grid, the timelines and the drift chart. Torch in, uint8 ``(3, H, W)`` out; the callback only
names them and hands them to its sinks.

``result`` is a :class:`lit_xai.explainers.ProbeExplanations` (read through its attributes, so this package still
imports nothing of lit_xai).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Optional

import torch

from .charts import line_plot
from .grids import concept_grid, explanation_grid, timeline_grid
from .tables import table_image
from .verdict import IMAGES_CARD_WIDTH

__all__ = ["LATTICE_NOTE", "OUTCOMES", "drift_chart", "outcome_grid", "probe_grids", "timeline_grids"]

#: legend note of LRP grids of networks with strided convolutions (see ``python -m benchmarks checkerboard``)
LATTICE_NOTE = (
    "strided convolutions can leave a faint regular lattice of dots in LRP maps: a trace of the stride, not an image "
    "feature (epsilon_gamma_box weakens it about 4x against epsilon_plus_flat; Grad-CAM has none)"
)

#: headings of the outcome grid's groups
OUTCOMES = {"FP": "false positives", "FN": "false negatives", "TP": "true positives", "TN": "true negatives"}

_EXPLAINED = {"true": "the true class", "pred": "the predicted class"}


def probe_grids(
    result: Any,
    images01: torch.Tensor,
    class_names: Sequence[str],
    epoch_label: str,
    *,
    tile: int,
    signed: Mapping[str, bool],
    notes: Optional[Mapping[str, str]] = None,
    warnings: Optional[Mapping[str, str]] = None,
    masks: Optional[torch.Tensor] = None,
    references: Optional[dict] = None,
) -> dict[str, torch.Tensor]:
    """One explanation grid per explainer and explained class (``"<label>/<true|pred>"``) and, for the primary
    class, one concept grid per concept explainer (``"<label>/concepts"``).

    Args:
        result: the probes' explanations.
        images01: the probe images in [0, 1], ``(N, 3, H, W)``.
        class_names: names for the captions.
        epoch_label: the epoch named in the captions.
        tile: the side of one tile in pixels.
        signed: per explainer label, whether its maps are signed (LRP) or not (Grad-CAM).
        notes: per explainer label, a note for the legend (e.g. :data:`LATTICE_NOTE`).
        warnings: per explainer label, a warning added to the method line (e.g. failed conservation).
        masks: ``(N, H, W)`` bool outlines of the probes' flagged artifacts, or None.
        references: concept channel -> reference crop, for the concept grids.
    """
    notes, warnings = notes or {}, warnings or {}
    out: dict[str, torch.Tensor] = {}
    for kind, rows in result.rows.items():
        captions = result.captions(kind, class_names, epoch_label)
        row_images = images01[rows.probe]
        row_masks = None if masks is None else masks[rows.probe]
        for label, maps in result.maps.items():
            out[f"{label}/{kind}"] = explanation_grid(
                row_images,
                maps[kind],
                captions,
                tile=tile,
                method=f"{result.descriptions.get(label, label)}, explaining {_EXPLAINED[kind]}"
                + (f" (WARNING: {warnings[label]})" if label in warnings else ""),
                masks=row_masks,
                signed=signed.get(label, True),
                note=notes.get(label, ""),
            )
        if kind == result.primary:
            for label, concepts in result.concepts.items():
                out[f"{label}/concepts"] = concept_grid(
                    row_images,
                    concepts.maps,
                    concepts.channels,
                    captions,
                    shares=concepts.shares,
                    references=references,
                    tile=max(64, tile * 3 // 4),
                    layer=concepts.layer,
                    method=result.descriptions.get(label, label),
                    fit_width=IMAGES_CARD_WIDTH,
                )
    return out


def outcome_grid(
    result: Any,
    images01: torch.Tensor,
    outcome_names: Sequence[str],
    counts: Sequence[tuple[str, int]],
    class_names: Sequence[str],
    epoch_label: str,
    *,
    tile: int,
    signed: Mapping[str, bool],
    per_outcome: int,
) -> tuple[str, torch.Tensor]:
    """``(explainer label, grid)``: the first map explainer's maps of validation images grouped by outcome (FP, FN,
    TP, TN; ``counts`` gives each group's size, ``outcome_names`` each image's)."""
    captions = [f"{o} {c}" for o, c in zip(outcome_names, result.captions("pred", class_names, epoch_label))]
    label = next(iter(result.maps))
    grid = explanation_grid(
        images01,
        result.maps[label]["pred"],
        captions,
        tile=tile,
        method=f"{result.descriptions.get(label, label)}, explaining the predicted class",
        note=f"validation images re-picked every epoch, up to {per_outcome} per outcome",
        signed=signed.get(label, True),
        groups=[(OUTCOMES[name], n) for name, n in counts],
    )
    return label, grid


def timeline_grids(
    timeline: Mapping[str, Sequence[tuple[int, torch.Tensor]]],
    result: Any,
    row_labels: Sequence[str],
    images01: torch.Tensor,
    *,
    tile: int,
    signed: Mapping[str, bool],
    masks: Optional[torch.Tensor] = None,
) -> dict[str, torch.Tensor]:
    """Per explainer still explained (``"<label>/timeline"``): its maps of the primary rows over the epochs (``-1``
    is the initial model); ``images01`` and ``masks`` are those rows'."""
    out: dict[str, torch.Tensor] = {}
    for label, frames in timeline.items():
        if label not in result.maps:
            continue
        columns = ["init" if e < 0 else f"ep{e}" for e, _ in frames]
        out[f"{label}/timeline"] = timeline_grid(
            [f.float() for _, f in frames],
            columns,
            list(row_labels),
            tile=max(40, tile // 2),
            method=result.descriptions.get(label, label),
            signed=signed.get(label, True),
            images01=images01,
            masks=masks,
            fit_width=IMAGES_CARD_WIDTH,
        )
    return out


def drift_chart(
    history: Sequence[Mapping[str, Any]], tag: str, labels: Sequence[str], measures: Sequence[str]
) -> Optional[tuple[torch.Tensor, str]]:
    """``(picture, caption)``: mean drift per measure against the previous and the first epoch, one coloured line
    per method with a legend, read from the history's ``<tag>_drift/<label>/<measure>_{prev,first}`` scalars; None
    before the first explained epoch.

    Example:
        >>> history = [{"epoch": e, "XAI_drift/lrp/ssim_prev": 0.9, "XAI_drift/lrp/ssim_first": 0.8} for e in (0, 1)]
        >>> picture, caption = drift_chart(history, "XAI", ["lrp"], ["ssim"])
        >>> picture.dtype, caption.startswith("explanation drift")
        (torch.uint8, True)
    """
    entries = [h for h in history if h.get("epoch", -1) >= 0]
    if not entries:
        return None
    x = [h["epoch"] for h in entries]
    charts = []
    for measure in measures:
        for ref, words in (("prev", "previous"), ("first", "first")):
            curves = {
                label: [h.get(f"{tag}_drift/{label}/{measure}_{ref}", float("nan")) for h in entries]
                for label in labels
            }
            curves = {k: v for k, v in curves.items() if any(value == value for value in v)}  # not all NaN
            if curves:
                charts.append(
                    line_plot(curves, x=x, title=f"{measure} vs {words} epoch", xlabel="epoch", width=320, height=220)
                )
    if not charts:  # every drift value NaN (NaN/Inf maps): say so instead of leaving the picture out
        note = table_image(
            ["method", "drift"],
            [[label, "NaN: every probe map is NaN/Inf (see the conserved scalars and the warnings)"]
             for label in labels],
            title=f"explanation drift up to epoch {x[-1]}: nothing to draw",
        )  # fmt: skip
        return note, "explanation drift: not drawn, every drift value so far is NaN (NaN/Inf maps)"
    rows = [torch.cat(charts[k : k + 2], dim=2) if k + 1 < len(charts) else _pad_right(charts[k], 640)
            for k in range(0, len(charts), 2)]  # fmt: skip
    caption = "explanation drift: similarity of each method's probe maps to the previous / first explained epoch"
    return torch.cat(rows, dim=1), caption


def _pad_right(image: torch.Tensor, width: int) -> torch.Tensor:
    """``(3, H, W)`` uint8 padded with white to ``width`` columns."""
    pad = torch.full((3, image.shape[1], max(0, width - image.shape[2])), 255, dtype=image.dtype)
    return torch.cat([image, pad], dim=2)
