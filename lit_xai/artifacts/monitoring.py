"""Reliance monitoring, the pure part of :class:`~lit_xai.callbacks.ShortcutMonitor`: a pool of validation images
read once, the reliance evidence for one (artifact, class), and the alert rule.

Example:
    >>> import torch
    >>> rule = AlertRule(shift_threshold=0.2, relevance_threshold=1.5, patience=2)
    >>> evidence = {"counterfactual": {"mean_shift": 0.5}, "relevance_ratio": 2.0}
    >>> [rule.update("ring/melanoma", rule.met(evidence, audit_flagged=False)) for _ in range(3)]
    [False, True, False]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .registry import get_artifact
from .reliance import paired_shift, relevance_in_mask
from .spray import artifact_cluster, spray

__all__ = ["AlertRule", "ReliancePool", "measure_reliance"]


class ReliancePool:
    """Validation images read once and reused every epoch: model inputs, the same images in [0, 1], labels, and
    per-artifact detector flags and masks.

    Args:
        images01: ``(N, C, H, W)`` images in [0, 1] (what detectors and inserters work on).
        inputs: ``(N, C, H, W)`` model inputs (normalized as the model expects).
        labels: ``(N,)`` class indices (multi-label: the first positive label stands for the image).
        ids: dataset indices, for captions and reports.
        roi_masks: optional ``(N, H, W)`` bool regions of interest (e.g. lungs).
    """

    def __init__(
        self,
        images01: torch.Tensor,
        inputs: torch.Tensor,
        labels: torch.Tensor,
        ids: list[int],
        roi_masks: torch.Tensor | None = None,
    ) -> None:
        self.images01, self.inputs, self.labels, self.ids = images01, inputs, labels.long(), list(ids)
        self.roi_masks = roi_masks
        self.flags: dict[str, torch.Tensor] = {}
        self.masks: dict[str, torch.Tensor] = {}
        # edited copies (artifact inserted / removed) depend only on the images, the rows and the seed, never on the
        # model: made once and reused every epoch (inpainting a ring costs more than the model's forward passes)
        self._edits: dict[tuple, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def detect(self, name: str) -> None:
        """Run the registered detector of artifact ``name`` and keep flags (score >= threshold) and masks."""
        artifact = get_artifact(name)
        scores, masks = artifact.detect(self.images01)
        self.flags[name] = scores >= artifact.threshold
        self.masks[name] = masks

    def edited(self, key: tuple, rows: torch.Tensor, edit: Callable[[torch.Tensor], Any]) -> torch.Tensor:
        """``edit(images01[rows])`` (its images, when it returns ``(images, masks)``), cached under ``key`` + rows.

        Args:
            key: names the edit, e.g. ``("insert", "ring", seed)``; the same key and rows give the cached tensor.
            rows: pool rows to edit.
            edit: images in [0, 1] -> edited images (or ``(images, masks)``); must be deterministic for the key.

        Example:
            >>> import torch
            >>> pool = ReliancePool(torch.zeros(3, 3, 4, 4), torch.zeros(3, 3, 4, 4), torch.zeros(3), [0, 1, 2])
            >>> a = pool.edited(("plus1",), torch.tensor([0, 2]), lambda x: x + 1)
            >>> a is pool.edited(("plus1",), torch.tensor([0, 2]), lambda x: x + 2)
            True
        """
        full = (*key, tuple(int(r) for r in rows))
        if full not in self._edits:
            out = edit(self.images01[rows])
            self._edits[full] = out[0] if isinstance(out, tuple) else out
        return self._edits[full]


def measure_reliance(
    module: nn.Module,
    pool: ReliancePool,
    artifact: str,
    target_class: int,
    normalize: Callable[[torch.Tensor], torch.Tensor],
    explainer: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    task: str = "multiclass",
    num_probes: int = 16,
    num_counterfactual: int = 64,
    spray_samples: int = 0,
    seed: int = 0,
) -> dict[str, Any]:
    """Reliance of ``module`` on ``artifact`` as evidence for ``target_class`` (pure; no Lightning).

    Args:
        module: maps model inputs to logits ``(N, K)``.
        pool: the validation pool (with ``pool.detect(artifact)`` done).
        artifact: a registered artifact with an inserter (:func:`lit_xai.artifacts.register_artifact`).
        target_class: the class the artifact is suspected to predict.
        normalize: images in [0, 1] -> model input.
        explainer: map explainer for the relevance measures (default: :class:`lit_xai.explainers.LRP`).
        task: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        num_probes: flagged images explained for the relevance ratio.
        num_counterfactual: clean images of other classes that get the artifact inserted (and flagged images of the
            class it is removed from).
        spray_samples: heatmaps of the class clustered by SpRAy (0 = off).
        seed: insertion seed.

    Returns:
        ``tests`` (which tests ran), ``relevance_ratio`` (mean relevance-in-mask of flagged images, 1 = no
        preference), ``counterfactual`` (shift of P(target) when inserted into clean images of other classes),
        ``removal`` (when removed from flagged images of the class; only with a remover), optionally ``spray``, the
        flagged ``probe_rows`` and their ``heatmaps``.

    Raises:
        ValueError: when the artifact has no inserter (it could only be audited, not watched).
    """
    spec = get_artifact(artifact)
    if spec.insert is None:
        raise ValueError(
            f"artifact {artifact!r} has no inserter, so the counterfactual test cannot run; register one with "
            "lit_xai.artifacts.register_artifact(name, detect=..., threshold=..., insert=...) or stop watching it"
        )
    if explainer is None:
        from ..explainers import LRP

        explainer = LRP()
    flags, masks, labels = pool.flags[artifact], pool.masks[artifact], pool.labels
    out: dict[str, Any] = {"artifact": artifact, "target_class": target_class, "tests": []}
    flagged = flags.nonzero().flatten()[:num_probes]
    out["probe_rows"] = flagged.tolist()
    out["relevance_ratio"] = math.nan
    if len(flagged):
        heat = explainer(module, pool.inputs[flagged], torch.full((len(flagged),), target_class))
        out["heatmaps"] = heat
        ratio = relevance_in_mask(heat, masks[flagged])
        out["relevance_ratio"] = float(torch.nanmean(ratio)) if not torch.isnan(ratio).all() else math.nan
        out["tests"].append("relevance_in_mask")
    clean_other = ((~flags) & (labels != target_class)).nonzero().flatten()[:num_counterfactual]
    if len(clean_other) >= 2:
        # the same edit as counterfactual_shift (an inserter seeded with ``seed``), made once per pool
        after = pool.edited(
            ("insert", artifact, seed), clean_other, lambda x: spec.insert(x, torch.Generator().manual_seed(seed))
        )
        cf = paired_shift(module, pool.images01[clean_other], after, target_class, normalize, task)
        out["counterfactual"] = {k: v for k, v in cf.items() if k != "shifts"}
        out["tests"].append("insertion")
    flagged_target = (flags & (labels == target_class)).nonzero().flatten()[:num_counterfactual]
    if spec.remove is not None and len(flagged_target) >= 2:
        after = pool.edited(("remove", artifact), flagged_target, lambda x: spec.remove(x, masks[flagged_target]))
        rm = paired_shift(module, pool.images01[flagged_target], after, target_class, normalize, task)
        out["removal"] = {k: v for k, v in rm.items() if k != "shifts"}
        out["tests"].append("removal")
    if spray_samples > 0:
        members = (labels == target_class).nonzero().flatten()[:spray_samples]
        if len(members) >= 12:
            heat = explainer(module, pool.inputs[members], torch.full((len(members),), target_class))
            result = spray(heat, n_neighbors=min(10, len(members) - 1))
            found = artifact_cluster(result, heat, masks[members])
            cluster_flags = flags[members]
            entry: dict[str, Any] = {"n": len(members), "clusters": result.n_clusters, "flagged": found.flagged}
            if found.flagged and found.cluster is not None:
                in_cluster = torch.as_tensor(result.labels == found.cluster)
                entry["cluster_size"] = int(in_cluster.sum())
                entry["cluster_artifact_share"] = float(cluster_flags[in_cluster].float().mean())
                entry["rest_artifact_share"] = (
                    float(cluster_flags[~in_cluster].float().mean()) if (~in_cluster).any() else math.nan
                )
            out["spray"] = entry
            out["tests"].append("spray")
    return out


class AlertRule:
    """When reliance on an artifact becomes an alert (a small object YAML can configure with ``class_path``).

    The rule is met when inserting the artifact moves P(class) by at least ``shift_threshold`` (the causal test)
    AND either the relevance concentrates on the artifact (ratio >= ``relevance_threshold``) or the audit found the
    artifact label-predictive (guarding against inserted pixels that merely look like class evidence). An alert
    fires once per key after ``patience`` consecutive measurements meet the rule: early in training a network
    briefly leans on any salient pattern, a shortcut persists.

    For a region of interest (e.g. the lungs) the rule is met when the share of positive relevance outside the
    region is at least ``outside_roi_threshold``.

    Args:
        shift_threshold: counterfactual mean shift of P(class) that counts as reliance.
        relevance_threshold: relevance-in-mask ratio that counts as concentrated on the artifact.
        patience: consecutive measurements meeting the rule before the alert fires.
        outside_roi_threshold: share of positive relevance outside the region of interest that counts as reliance
            on something outside it.
    """

    def __init__(
        self,
        shift_threshold: float = 0.2,
        relevance_threshold: float = 1.5,
        patience: int = 2,
        outside_roi_threshold: float = 0.5,
    ) -> None:
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        if not 0.0 < outside_roi_threshold <= 1.0:
            raise ValueError(f"outside_roi_threshold must be in (0, 1], got {outside_roi_threshold}")
        self.shift_threshold = shift_threshold
        self.relevance_threshold = relevance_threshold
        self.patience = patience
        self.outside_roi_threshold = outside_roi_threshold
        self.streak: dict[str, int] = {}
        self.fired: set[str] = set()

    def met(self, evidence: dict[str, Any], audit_flagged: bool) -> bool:
        """Whether one measurement of an artifact meets the rule."""
        shift = evidence.get("counterfactual", {}).get("mean_shift", math.nan)
        ratio = evidence.get("relevance_ratio", math.nan)
        if not (isinstance(shift, float) and shift >= self.shift_threshold):
            return False
        return audit_flagged or (not math.isnan(ratio) and ratio >= self.relevance_threshold)

    def met_roi(self, outside_share: float) -> bool:
        """Whether one measurement of relevance outside the region of interest meets the rule."""
        return not math.isnan(outside_share) and outside_share >= self.outside_roi_threshold

    def update(self, key: str, met: bool) -> bool:
        """Record one measurement for ``key``; True exactly when the alert for ``key`` fires now."""
        self.streak[key] = self.streak.get(key, 0) + 1 if met else 0
        if key in self.fired or self.streak[key] < self.patience:
            return False
        self.fired.add(key)
        return True

    def criteria(self) -> dict[str, float]:
        return {
            "shift_threshold": self.shift_threshold,
            "relevance_threshold": self.relevance_threshold,
            "patience": self.patience,
            "outside_roi_threshold": self.outside_roi_threshold,
        }

    def state_dict(self) -> dict[str, Any]:
        return {"streak": dict(self.streak), "fired": sorted(self.fired)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.streak = dict(state.get("streak", {}))
        self.fired = set(state.get("fired", []))

    @staticmethod
    def message(artifact: str, cls: str, evidence: dict[str, Any], audit_flagged: bool) -> str:
        """A sentence a person can act on, with the evidence and the tests that ran."""
        cf = evidence.get("counterfactual", {})
        parts = [
            f"the model relies on the {artifact} artifact as evidence for '{cls}': inserting it into {cf.get('n', 0)} "
            f"clean images of other classes raises P({cls}) by {cf.get('mean_shift', math.nan):+.2f} on average "
            f"({100 * cf.get('flips_to_target', 0):.0f} % flip to {cls})",
        ]
        ratio = evidence.get("relevance_ratio", math.nan)
        if not math.isnan(ratio):
            parts.append(f"LRP puts {ratio:.1f}x the area-proportional relevance on the {artifact}")
        if "removal" in evidence:
            parts.append(f"removing it changes P({cls}) by {evidence['removal']['mean_shift']:+.2f}")
        if audit_flagged:
            parts.append(f"and the training data makes the {artifact} label-predictive for '{cls}'")
        tests = evidence.get("tests")
        if tests:
            parts.append(f"tests run: {', '.join(tests)}")
        return "; ".join(parts)

    @staticmethod
    def roi_message(cls: str, outside_share: float, n: int) -> str:
        return (
            f"the model's evidence for '{cls}' lies outside the region of interest: on {n} validation images "
            f"{100 * outside_share:.0f} % of the positive LRP relevance falls outside the mask (e.g. the lungs)"
        )

    def __repr__(self) -> str:
        return f"AlertRule({', '.join(f'{k}={v!r}' for k, v in self.criteria().items())})"
