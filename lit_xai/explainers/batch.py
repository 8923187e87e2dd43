"""Explain a probe set with several explainers at once: one model copy, one prediction pass, then every explainer.

This is the pure function behind :class:`lit_xai.callbacks.ExplanationMonitor`; a notebook calls it directly::

    from lit_xai.explainers import explain
    from lit_xai.probes import ProbeSelector
    result = explain(model, ProbeSelector(8).select(val_dataset), ["lrp", "gradcam"])
    result.maps["lrp"]["true"]  # (rows, H, W)

Example:
    >>> import torch
    >>> from lit_xai.models.architectures import build_architecture
    >>> from lit_xai.probes import probes_from_tensors
    >>> net = build_architecture("tiny_resnet", num_classes=2)
    >>> probes = probes_from_tensors(torch.rand(3, 3, 32, 32), torch.tensor([0, 1, 1]))
    >>> out = explain(net, probes, ["lrp", "gradcam"], targets="both")
    >>> sorted(out.maps), out.maps["lrp"]["pred"].shape
    (['gradcam', 'lrp'], torch.Size([3, 32, 32]))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

import torch
from torch import nn

from ..contracts import Probes, check_logits, class_name, probabilities
from ._core import explanation_model
from .base import Concepts, Explainer, build_explainer

__all__ = ["ExplainerError", "ProbeExplanations", "Rows", "explain", "rows_for"]

TargetKind = Literal["true", "predicted", "both"]


class ExplainerError(RuntimeError):
    """An explainer failed; ``label`` names it so callers can point at the argument that configured it."""

    def __init__(self, label: str, error: BaseException) -> None:
        super().__init__(f"explainer {label!r} failed: {type(error).__name__}: {error}")
        self.label = label
        self.error = error


@dataclass
class Rows:
    """Which (probe, class) pairs are explained for one target kind (``"true"`` or ``"pred"``)."""

    probe: torch.Tensor
    cls: torch.Tensor
    ids: list[int]
    artifact: list[bool]
    true_label: list[int]
    pred_label: list[int]
    labels: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)


def rows_for(kind: str, probes: Probes, probs: torch.Tensor, multilabel: bool) -> Rows:
    """The rows of one target kind: one per probe, or for multi-label one per (probe, positive/predicted class)."""
    n = len(probes)
    if not multilabel:
        preds = probs.argmax(1)
        cls = probes.targets.long() if kind == "true" else preds
        probe = torch.arange(n)
        true_label = [int(t) for t in probes.targets.long()]
        pred_label = [int(p) for p in preds]
    else:
        preds = probs > 0.5
        source = torch.nan_to_num(probes.targets.float(), nan=0.0) > 0.5 if kind == "true" else preds
        pairs = [(p, c) for p in range(n) for c in source[p].nonzero().flatten().tolist()]
        if not pairs:  # nothing positive: explain the most probable class of each probe
            pairs = [(p, int(probs[p].argmax())) for p in range(n)]
        probe, cls = (torch.tensor(v) for v in zip(*pairs))
        true_label = [int(c) if probes.targets[int(p)][int(c)] > 0.5 else -1 for p, c in zip(probe, cls)]
        pred_label = [int(c) if preds[int(p)][int(c)] else -1 for p, c in zip(probe, cls)]
    ids = [probes.ids[int(p)] for p in probe]
    labels = [f"#{i}" if not multilabel else f"#{i}/c{int(c)}" for i, c in zip(ids, cls)]
    return Rows(probe, cls.long(), ids, [bool(probes.artifact[int(p)]) for p in probe], true_label, pred_label, labels)


@dataclass
class ProbeExplanations:
    """Explanations of one probe set at one point in training (pure data, produced by :func:`explain`).

    Attributes:
        rows: per target kind (``"true"``, ``"pred"``) the explained (probe, class) rows.
        maps: per explainer label and kind, ``(rows, H, W)`` heatmaps (map explainers).
        concepts: per explainer label, :class:`Concepts` of the primary kind's rows (concept explainers).
        probs: ``(N, K)`` predicted probabilities of the probes.
        primary: the first target kind (drift and concepts use it).
        descriptions: per explainer label, a human-readable description (for legends).
    """

    rows: dict[str, Rows] = field(default_factory=dict)
    maps: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    concepts: dict[str, Concepts] = field(default_factory=dict)
    probs: torch.Tensor = field(default_factory=lambda: torch.empty(0))
    primary: str = "true"
    descriptions: dict[str, str] = field(default_factory=dict)

    def captions(self, kind: str, names: Optional[Sequence[str]], epoch_label: str) -> list[str]:
        """One caption per row: dataset index, epoch, true and predicted class, probability, artifact flag."""

        rows = self.rows[kind]
        out = []
        for r in range(len(rows)):
            p, c = int(rows.probe[r]), int(rows.cls[r])
            true, pred = rows.true_label[r], rows.pred_label[r]
            text = f"{rows.labels[r]} {epoch_label} true={class_name(true, names)} pred={class_name(pred, names)}"
            text += f" p({class_name(c, names)})={float(self.probs[p, c]):.2f}"
            if rows.artifact[r]:
                text += " [artifact]"
            out.append(text)
        return out


def explain(
    model: nn.Module,
    probes: Probes,
    explainers: Sequence[str | Explainer] = ("lrp",),
    targets: TargetKind = "true",
    task: str = "multiclass",
) -> ProbeExplanations:
    """Predictions and explanations of every explainer for the probe rows, on ONE copy of ``model``.

    Args:
        model: network mapping images to logits ``(N, K)`` (any module; it is never changed).
        probes: the probe set.
        explainers: names (``"lrp"``, ``"crp"``, ``"gradcam"``, ...) or explainer objects; labels must be unique.
        targets: explain the ``"true"`` class, the ``"predicted"`` one, or ``"both"`` (multi-label: every positive /
            predicted class, one row per (probe, class)).
        task: ``"binary"``, ``"multiclass"`` or ``"multilabel"`` (sigmoid probabilities).

    Raises:
        ExplainerError: naming the explainer that failed.
    """
    built = [build_explainer(e) for e in explainers]
    labels = [e.label for e in built]
    duplicates = sorted({lb for lb in labels if labels.count(lb) > 1})
    if duplicates:
        raise ValueError(f"explainer labels must be unique, {duplicates} appear twice; configure them differently")
    if targets not in ("true", "predicted", "both"):
        raise ValueError(f"targets must be 'true', 'predicted' or 'both', got {targets!r}")
    multilabel = task == "multilabel"
    probes = probes.clone()  # under trainer.validate/test the probe tensors may be inference tensors
    out = ProbeExplanations()
    kinds = {"true": ["true"], "predicted": ["pred"], "both": ["true", "pred"]}[targets]
    out.primary = kinds[0]
    with explanation_model(model) as net:
        device = next(net.parameters()).device
        with torch.no_grad():
            logits = net(probes.images.to(device))
        check_logits(logits, task)
        out.probs = probabilities(logits.float().cpu(), task)
        for explainer in built:
            out.descriptions[explainer.label] = _safe_describe(explainer, net)
        for kind in kinds:
            rows = rows_for(kind, probes, out.probs, multilabel)
            out.rows[kind] = rows
            x = probes.images[rows.probe].to(device)
            for explainer in built:
                if explainer.kind == "concept" and kind != out.primary:
                    continue
                try:
                    result: Any = explainer.explain(net, x, rows.cls.clone())
                except Exception as err:  # noqa: BLE001 - re-raised with the explainer's name
                    raise ExplainerError(explainer.label, err) from err
                if isinstance(result, Concepts):
                    out.concepts[explainer.label] = result.to("cpu")
                else:
                    out.maps.setdefault(explainer.label, {})[kind] = result.detach().float().cpu()
    return out


def _safe_describe(explainer: Explainer, net: nn.Module) -> str:
    try:
        return explainer.describe(net)
    except Exception:  # noqa: BLE001 - a description never blocks an explanation
        return explainer.label
