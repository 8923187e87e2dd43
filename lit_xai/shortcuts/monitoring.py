"""Reliance monitoring, the pure part of :class:`~lit_xai.callbacks.ShortcutMonitor`: a pool of validation images
read once, the reliance evidence for one (artifact, class), and the alert rule.

The alert is a verdict on causal evidence: sham-controlled insertion and removal tests with bootstrap intervals
(:mod:`lit_xai.shortcuts.causal`); relevance in the mask, SpRAy and the audit only support it.

Example:
    >>> rule = AlertRule(min_effect=0.05, patience=2)
    >>> evidence = {"counterfactual": {"effect": 0.3, "interval": [0.2, 0.4], "confidence": 0.95, "n": 20,
    ...                                "n_sham": 20}, "exposure": {"images": 30}, "relevance_ratio": 0.8}
    >>> [rule.update("ring/melanoma", rule.met(evidence, audit_flagged=False)) for _ in range(3)]
    [False, True, False]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal, Optional

import torch
from torch import nn

from ..artifacts.registry import get_artifact
from .causal import summarize_test
from .reliance import paired_shift, relevance_in_mask
from .sham import sham_insert, sham_masks
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
        split: where the images came from (``"val"``, ``"train"``), recorded with every test run on them.
    """

    def __init__(
        self,
        images01: torch.Tensor,
        inputs: torch.Tensor,
        labels: torch.Tensor,
        ids: list[int],
        roi_masks: torch.Tensor | None = None,
        split: str = "val",
    ) -> None:
        self.images01, self.inputs, self.labels, self.ids = images01, inputs, labels.long(), list(ids)
        self.roi_masks = roi_masks
        self.split = split
        self.flags: dict[str, torch.Tensor] = {}
        self.masks: dict[str, torch.Tensor] = {}
        # edited copies (artifact inserted / removed) depend only on the images, the rows and the seed, never on the
        # model: made once and reused every epoch (inpainting a ring costs more than the model's forward passes)
        self._edits: dict[tuple, tuple[torch.Tensor, torch.Tensor | None]] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def detect(self, name: str) -> None:
        """Run the registered detector of artifact ``name`` and keep flags (score >= threshold) and masks."""
        artifact = get_artifact(name)
        scores, masks = artifact.detect(self.images01)
        self.flags[name] = scores >= artifact.threshold
        self.masks[name] = masks

    def edit(
        self, key: tuple, rows: torch.Tensor, edit: Callable[[torch.Tensor], Any]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``edit(images01[rows])`` as ``(images, masks or None)``, made once and cached under ``key`` + rows.

        Args:
            key: names the edit, e.g. ``("insert", "ring", seed)``; the same key and rows give the cached result.
            rows: pool rows to edit.
            edit: images in [0, 1] -> edited images, or ``(images, masks)``; must be deterministic for the key.
        """
        full = (*key, tuple(int(r) for r in rows))
        if full not in self._edits:
            out = edit(self.images01[rows])
            self._edits[full] = (out[0], out[1]) if isinstance(out, tuple) else (out, None)
        return self._edits[full]

    def forget(self, name: str) -> None:
        """Drop artifact ``name``'s flags, masks and cached edits (a candidate tested for one measurement)."""
        self.flags.pop(name, None)
        self.masks.pop(name, None)
        self._edits = {k: v for k, v in self._edits.items() if not (len(k) > 1 and k[1] == name)}

    def edited(self, key: tuple, rows: torch.Tensor, edit: Callable[[torch.Tensor], Any]) -> torch.Tensor:
        """The images of :meth:`edit` (cached the same way).

        Example:
            >>> import torch
            >>> pool = ReliancePool(torch.zeros(3, 3, 4, 4), torch.zeros(3, 3, 4, 4), torch.zeros(3), [0, 1, 2])
            >>> a = pool.edited(("plus1",), torch.tensor([0, 2]), lambda x: x + 1)
            >>> a is pool.edited(("plus1",), torch.tensor([0, 2]), lambda x: x + 2)
            True
        """
        return self.edit(key, rows, edit)[0]


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
    removal_pool: ReliancePool | None = None,
    min_removal_images: int = 16,
    sham: Literal["mean", "shuffle"] = "mean",
    confidence: float = 0.95,
    resamples: int = 2000,
    explained: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
) -> dict[str, Any]:
    """Reliance of ``module`` on ``artifact`` as evidence for ``target_class`` (pure; no Lightning).

    The causal evidence is two sham-controlled tests (:mod:`lit_xai.shortcuts.causal`), each edit made once per pool
    (:meth:`ReliancePool.edit`) and re-scored every call:

    * insertion: the artifact inserted into up to ``num_counterfactual`` clean images of other classes vs a sham
      insertion (:func:`~lit_xai.shortcuts.sham.sham_insert`) on the same images, paired;
    * removal (artifacts with a remover): the artifact inpainted away on up to ``num_counterfactual`` images of the
      class that carry it vs inpainting same-shaped regions at random places on up to ``num_counterfactual`` images
      of the class without it (of any class when the class has none without it: ``sham_images``). When ``pool``
      holds fewer than ``min_removal_images`` artifact images of the class and a ``removal_pool`` (e.g. training
      images) is given, the removal test runs on that pool, and says so (``split``).

    The relevance ratio and SpRAy are supporting evidence (a salient artifact draws relevance whether or not the
    decision uses it).

    Args:
        module: maps model inputs to logits ``(N, K)``.
        pool: the validation pool (with ``pool.detect(artifact)`` done).
        artifact: a registered artifact with an inserter (:func:`lit_xai.artifacts.register_artifact`).
        target_class: the class the artifact is suspected to predict.
        normalize: images in [0, 1] -> model input.
        explainer: map explainer for the relevance measures (default: :class:`lit_xai.explainers.LRP`).
        task: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        num_probes: flagged images explained for the relevance ratio (0 = no relevance measures).
        num_counterfactual: images per group of each causal test.
        spray_samples: heatmaps of the class clustered by SpRAy (0 = off).
        seed: seeds the insertion, the shams and the bootstrap.
        removal_pool: a second pool (e.g. training images, ``split="train"``) for the removal test when ``pool``
            has too few artifact images of the class; its detector runs on first use.
        min_removal_images: artifact images of the class below which the removal test moves to ``removal_pool``.
        sham: sham insertion kind, ``"mean"`` (the region at the image's mean colour) or ``"shuffle"`` (the
            artifact's pixel changes, patches permuted over the image); an artifact registered with its own
            ``sham`` uses that instead (reported as ``"own"``).
        confidence: level of the bootstrap intervals.
        resamples: bootstrap resamples.
        explained: ``(rows, targets, maps)``: maps of ``pool`` rows that ``explainer`` already made of this
            ``module`` (e.g. the discovery pass of the same measurement); a relevance measure needing the map of such
            a row for the same target reads it there instead of explaining the image again (an image's map does
            not depend on the other images of its batch, up to float rounding; the maps only support the verdict).

    Returns:
        ``tests`` (which tests ran); ``counterfactual`` (insertion) and ``removal``, each
        :func:`~lit_xai.shortcuts.causal.summarize_test`'s dict (``effect`` positive = reliance, ``interval``,
        ``confidence``, ``n``, ``n_sham``, ``split``, ``sham``, ``sham_shift``, the real edit's ``mean_shift``,
        ``p_before``/``p_after``, flip rates); ``removal_skipped`` (why, when removal did not run); ``exposure``
        (``images``: images of the class carrying the artifact in the pool the removal test uses, ``of``: images
        of the class there, ``split``);
        ``relevance_ratio`` (mean relevance-in-mask of flagged images, 1 = no preference); optionally ``spray``;
        the flagged ``probe_rows`` and their ``heatmaps``.

    Raises:
        ValueError: when the artifact has no inserter (it could only be audited, not watched).
    """
    spec = get_artifact(artifact)
    if spec.insert is None:
        raise ValueError(
            f"artifact {artifact!r} has no inserter, so the counterfactual test cannot run; register one with "
            "lit_xai.artifacts.register_artifact(name, detect=..., threshold=..., insert=...) or stop watching it"
        )
    flags, masks, labels = pool.flags[artifact], pool.masks[artifact], pool.labels
    out: dict[str, Any] = {"artifact": artifact, "target_class": target_class, "tests": []}
    flagged = flags.nonzero().flatten()[:num_probes]
    out["probe_rows"] = flagged.tolist()
    out["relevance_ratio"] = math.nan
    if explainer is None:
        from ..explainers import LRP

        explainer = LRP()
    if len(flagged):
        heat = _maps(explainer, module, pool, flagged, target_class, explained)
        out["heatmaps"] = heat
        ratio = relevance_in_mask(heat, masks[flagged])
        out["relevance_ratio"] = float(torch.nanmean(ratio)) if not torch.isnan(ratio).all() else math.nan
        out["tests"].append("relevance_in_mask")
    stats = {"confidence": confidence, "resamples": resamples, "seed": seed}
    clean_other = ((~flags) & (labels != target_class)).nonzero().flatten()[:num_counterfactual]
    if len(clean_other) >= 2:
        # the same edits as insertion_test (an inserter seeded with ``seed``, the sham with ``seed + 1``)
        after, inserted = pool.edit(
            ("insert", artifact, seed), clean_other, lambda x: spec.insert(x, torch.Generator().manual_seed(seed))
        )
        kind, make = sham, lambda x: sham_insert(x, after, inserted, sham, torch.Generator().manual_seed(seed + 1))
        if spec.sham is not None:  # the artifact's own control (e.g. a cast of the same size in another hue)
            kind, make = "own", lambda x: spec.sham(x, after, inserted, torch.Generator().manual_seed(seed + 1))
        control = pool.edited(("sham_insert", artifact, seed, kind), clean_other, make)
        before = pool.images01[clean_other]
        real = paired_shift(module, before, after, target_class, normalize, task)
        fake = paired_shift(module, before, control, target_class, normalize, task)
        out["counterfactual"] = summarize_test("insertion", real, fake, kind, pool.split, **stats)
        out["tests"].append("insertion")
    # exposure: how many images of the class carry the artifact (where the model could have learned it from)
    rows = (flags & (labels == target_class)).nonzero().flatten()
    source = pool
    if len(rows) < min_removal_images and removal_pool is not None:
        if artifact not in removal_pool.flags:
            removal_pool.detect(artifact)
        source = removal_pool
    exposed = int((source.flags[artifact] & (source.labels == target_class)).sum())
    out["exposure"] = {"images": exposed, "split": source.split, "of": int((source.labels == target_class).sum())}
    if spec.remove is not None:
        removal = _removal(module, source, spec, artifact, target_class, normalize, task, num_counterfactual, stats)
        if isinstance(removal, str):
            out["removal_skipped"] = removal
        else:
            out["removal"] = removal
            out["tests"].append("removal")
    if spray_samples > 0:
        members = (labels == target_class).nonzero().flatten()[:spray_samples]
        if len(members) >= 12:
            heat = _maps(explainer, module, pool, members, target_class, explained)
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


def _maps(
    explainer: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
    module: nn.Module,
    pool: ReliancePool,
    rows: torch.Tensor,
    target: int,
    explained: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None,
) -> torch.Tensor:
    """Maps of ``pool`` rows ``rows`` for class ``target``: read from ``explained`` where it has them, else made."""
    targets = torch.full((len(rows),), target)
    if explained is None:
        return explainer(module, pool.inputs[rows], targets)
    known_rows, known_targets, known_maps = explained
    where = torch.full((len(pool),), -1, dtype=torch.long)
    where[known_rows.long().cpu()] = torch.arange(len(known_rows))
    at = where[rows.cpu()]
    hit = torch.zeros(len(rows), dtype=torch.bool)
    hit[at >= 0] = known_targets.long().cpu()[at[at >= 0]] == target
    if not hit.any():
        return explainer(module, pool.inputs[rows], targets)
    maps = known_maps.new_empty((len(rows), *known_maps.shape[1:]))
    maps[hit.to(maps.device)] = known_maps[at[hit].to(known_maps.device)]
    if not hit.all():
        missing = (~hit).nonzero().flatten()
        maps[missing.to(maps.device)] = explainer(module, pool.inputs[rows[missing]], targets[missing]).to(maps)
    return maps


def _removal(
    module: nn.Module,
    pool: ReliancePool,
    spec: Any,
    artifact: str,
    target_class: int,
    normalize: Callable[[torch.Tensor], torch.Tensor],
    task: str,
    num: int,
    stats: dict[str, Any],
) -> dict[str, Any] | str:
    """The removal test on ``pool`` (the same edits as :func:`~lit_xai.shortcuts.causal.removal_test`), or why not."""
    flags, masks, labels = pool.flags[artifact], pool.masks[artifact], pool.labels
    rows = (flags & (labels == target_class)).nonzero().flatten()[:num]
    clean = ((~flags) & (labels == target_class)).nonzero().flatten()[:num]
    sham_images = "class"
    if len(clean) < 2:  # the artifact is on (nearly) every image of the class: inpaint clean images of any class
        clean, sham_images = (~flags).nonzero().flatten()[:num], "all classes"
    if len(rows) < 2 or len(clean) < 2:
        return (
            f"{len(rows)} images of class {target_class} with the {artifact} and {len(clean)} without it in the "
            f"{pool.split} pool (need 2 of each); give a larger pool or removal_pool="
        )
    seed = stats["seed"]
    after = pool.edited(("remove", artifact), rows, lambda x: spec.remove(x, masks[rows]))
    regions = tuple(int(r) for r in rows)
    control = pool.edited(
        ("sham_remove", artifact, seed, regions),
        clean,
        lambda x: spec.remove(x, sham_masks(masks[rows], len(clean), torch.Generator().manual_seed(seed))),
    )
    real = paired_shift(module, pool.images01[rows], after, target_class, normalize, task)
    fake = paired_shift(module, pool.images01[clean], control, target_class, normalize, task)
    out = summarize_test("removal", real, fake, "inpaint elsewhere", pool.split, **stats)
    out["sham_images"] = sham_images
    return out


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


class AlertRule:
    """When reliance on an artifact becomes an alert (a small object YAML can configure with ``class_path``).

    One measurement meets the rule when at least one causal test of :func:`measure_reliance` (insertion or removal,
    each against its sham control) shows a sham-corrected effect on P(class) above ``min_effect`` *with its
    confidence interval excluding it* (lower bound > ``min_effect``), on at least ``min_images`` images in each
    group. An alert fires once per key after ``patience`` consecutive measurements meet the rule: early in training
    a network briefly leans on any salient pattern, a shortcut persists.

    Relevance in the artifact mask, SpRAy and the dataset audit are *supporting evidence* in the message, never a
    gate: a dark ring draws relevance whether or not the decision uses it, so no alert depends on them.

    The defaults come from ``python benchmarks/calibration.py`` (tiny CNNs on shortcut and control data, 10+ seeds
    per case; table in ``benchmarks/README.md``).

    For a region of interest (e.g. the lungs) :meth:`met_roi` is met when the share of positive relevance outside the
    region is at least ``outside_roi_threshold``.

    Args:
        min_effect: smallest sham-corrected change of P(class) (probability units, 0.05 = five points) that counts
            as reliance; the interval's lower bound must exceed it.
        patience: consecutive measurements meeting the rule before the alert fires.
        confidence: level of the intervals the rule reads; :func:`measure_reliance` must have been run with
            ``confidence`` at least this (a wider interval is a stricter test).
        min_images: images needed in each group of a test (real and sham) for it to count.
        min_exposure: the insertion test counts only when at least this many images of the class carry the artifact
            (``evidence["exposure"]``, in the pool the removal test uses): a model cannot have learned a shortcut from
            an artifact its data never pairs with the class, yet it may react to an unseen pattern pasted into its
            images (in the calibration, tiny CNNs moved P(class) by up to 0.75 for a ring they never saw). 0 = off.
        outside_roi_threshold: share of positive relevance outside the region of interest that counts as reliance
            on something outside it.
        min_logit_effect: where P is saturated on a test's images (its ``reach``, the change of P one unit of
            log-odds causes there, is below ``min_effect``: e.g. other-class images already at P(class) = 0.9, or
            artifact images at P = 1.0), the test is read on the log-odds of the class instead: it meets the rule
            when the lower bound of its sham-corrected log-odds effect exceeds this; otherwise it is *blind* and,
            when every counted test is blind, the measurement neither meets nor resets the streak (:meth:`decide`).

    Example:
        >>> rule = AlertRule(min_effect=0.05, patience=2)
        >>> removal = {"effect": 0.4, "interval": [0.3, 0.5], "confidence": 0.95, "n": 30, "n_sham": 40}
        >>> [rule.update("ring/melanoma", rule.met({"removal": removal}, audit_flagged=False)) for _ in range(3)]
        [False, True, False]
        >>> rule.met({"relevance_ratio": 9.0}, audit_flagged=True)  # relevance and audit alone never alert
        False
    """

    #: evidence keys of the causal tests and their names
    TESTS: tuple[tuple[str, str], ...] = (("counterfactual", "insertion"), ("removal", "removal"))

    def __init__(
        self,
        min_effect: float = 0.15,
        patience: int = 2,
        confidence: float = 0.95,
        min_images: int = 8,
        min_exposure: int = 8,
        outside_roi_threshold: float = 0.5,
        min_logit_effect: float = 1.0,
    ) -> None:
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        if not 0.0 <= min_effect < 1.0:
            raise ValueError(f"min_effect must be in [0, 1) (a change of probability), got {min_effect}")
        if not 0.0 < confidence < 1.0:
            raise ValueError(f"confidence must be in (0, 1), got {confidence}")
        if min_images < 2:
            raise ValueError(f"min_images must be >= 2, got {min_images}")
        if min_exposure < 0:
            raise ValueError(f"min_exposure must be >= 0, got {min_exposure}")
        if not 0.0 < outside_roi_threshold <= 1.0:
            raise ValueError(f"outside_roi_threshold must be in (0, 1], got {outside_roi_threshold}")
        self.min_effect = min_effect
        self.patience = patience
        self.confidence = confidence
        self.min_images = min_images
        self.min_exposure = min_exposure
        if not min_logit_effect > 0.0:
            raise ValueError(f"min_logit_effect must be > 0 (log-odds units), got {min_logit_effect}")
        self.outside_roi_threshold = outside_roi_threshold
        self.min_logit_effect = min_logit_effect
        self.streak: dict[str, int] = {}
        self.fired: set[str] = set()

    def status(self, evidence: dict[str, Any]) -> dict[str, str]:
        """Per causal test in ``evidence`` (``"insertion"``, ``"removal"``) what it says: ``"met"`` (its effect clears
        ``min_effect`` on P, or, where P is saturated, ``min_logit_effect`` on the log-odds), ``"clear"`` (it could
        show an effect and shows none above the threshold), ``"blind"`` (P is saturated on its images -- ``reach``
        below ``min_effect`` -- and the log-odds do not clear ``min_logit_effect`` either: it could not show an
        effect) or ``"uncounted"`` (too few images, or insertion without exposure)."""
        out: dict[str, str] = {}
        for key, name in self.TESTS:
            test = evidence.get(key)
            if not isinstance(test, dict) or "interval" not in test:
                continue
            level = test.get("confidence", math.nan)
            if not level >= self.confidence - 1e-9:
                raise ValueError(
                    f"the {name} interval has confidence {level}, below the rule's {self.confidence}; measure with "
                    f"measure_reliance(..., confidence={self.confidence})"
                )
            enough = min(test.get("n", 0), test.get("n_sham", 0)) >= self.min_images
            if name == "insertion" and self.min_exposure > 0:
                enough = enough and evidence.get("exposure", {}).get("images", 0) >= self.min_exposure
            if not enough:
                out[name] = "uncounted"
            elif _number(test["interval"][0]) > self.min_effect:
                out[name] = "met"
            elif not _number(test.get("reach")) >= self.min_effect:  # NaN reach (older evidence): not saturated
                if math.isnan(_number(test.get("reach"))):
                    out[name] = "clear"
                elif _number((test.get("logit_interval") or [math.nan])[0]) > self.min_logit_effect:
                    out[name] = "met"
                else:
                    out[name] = "blind"
            else:
                out[name] = "clear"
        return out

    def passing(self, evidence: dict[str, Any]) -> list[str]:
        """Names of the causal tests in ``evidence`` that meet the rule (``"insertion"``, ``"removal"``)."""
        return [name for name, state in self.status(evidence).items() if state == "met"]

    def decide(self, evidence: dict[str, Any]) -> tuple[Optional[bool], str]:
        """One measurement's decision and its reason: True (a test meets the rule), False (the counted tests could
        show an effect and show none) or None (every counted test was blind: P saturated on its images; the streak
        is kept, neither met nor reset -- an epoch that could not show an effect is no evidence against one).

        Example:
            >>> rule = AlertRule()
            >>> blind = {"effect": 0.0, "interval": [-0.01, 0.01], "confidence": 0.95, "n": 30, "n_sham": 30,
            ...          "reach": 0.001, "logit_interval": [-0.2, 0.4]}
            >>> rule.decide({"removal": blind})
            (None, 'not informative: P saturated in removal (reach 0.001 per unit of log-odds), log-odds inconclusive')
        """
        state = self.status(evidence)
        met = [name for name, s in state.items() if s == "met"]
        if met:
            return True, "met by " + ", ".join(met)
        counted = {name: s for name, s in state.items() if s != "uncounted"}
        if counted and all(s == "blind" for s in counted.values()):
            tests = [(key, name) for key, name in self.TESTS if name in counted]
            reaches = ", ".join(f"{name} (reach {_number(evidence[key].get('reach')):.3f} per unit of log-odds)"
                                for key, name in tests)  # fmt: skip
            return None, f"not informative: P saturated in {reaches}, log-odds inconclusive"
        if not counted:
            return False, "no causal test with enough images"
        return False, "not met: " + ", ".join(f"{name} {s}" for name, s in counted.items())

    def met(self, evidence: dict[str, Any], audit_flagged: bool) -> bool:
        """Whether one measurement meets the rule. ``audit_flagged`` is supporting evidence only (not a gate)."""
        return bool(self.passing(evidence))

    def met_roi(self, outside_share: float) -> bool:
        """Whether one measurement of relevance outside the region of interest meets the rule."""
        return not math.isnan(outside_share) and outside_share >= self.outside_roi_threshold

    def update(self, key: str, met: Optional[bool]) -> bool:
        """Record one measurement for ``key``; True exactly when the alert for ``key`` fires now. ``met=None`` (an
        uninformative measurement, :meth:`decide`) keeps the streak as it is."""
        if met is None:
            self.streak.setdefault(key, 0)
            return False
        self.streak[key] = self.streak.get(key, 0) + 1 if met else 0
        if key in self.fired or self.streak[key] < self.patience:
            return False
        self.fired.add(key)
        return True

    def criteria(self) -> dict[str, float]:
        return {
            "min_effect": self.min_effect,
            "patience": self.patience,
            "confidence": self.confidence,
            "min_images": self.min_images,
            "min_exposure": self.min_exposure,
            "outside_roi_threshold": self.outside_roi_threshold,
            "min_logit_effect": self.min_logit_effect,
        }

    def state_dict(self) -> dict[str, Any]:
        return {"streak": dict(self.streak), "fired": sorted(self.fired)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.streak = dict(state.get("streak", {}))
        self.fired = set(state.get("fired", []))

    @staticmethod
    def describe_test(test: dict[str, Any], artifact: str, cls: str) -> str:
        """One causal test in words: what was edited on how many images of which split, real vs sham, the effect
        and its interval."""
        level = round(100 * test.get("confidence", math.nan))
        low, high = test.get("interval", [math.nan, math.nan])
        where = f"{test.get('split', '?')} split"
        if test.get("test") == "removal":
            what = (
                f"removal: inpainting the {artifact} away on {test.get('n', 0)} '{cls}' images that carry it "
                f"({where}) changes P({cls}) by {test.get('mean_shift', math.nan):+.2f}, the sham (inpainting a "
                f"{artifact}-shaped region on {test.get('n_sham', 0)} '{cls}' images without it) by "
                f"{test.get('sham_shift', math.nan):+.2f}"
            )
        else:
            what = (
                f"insertion: inserting the {artifact} into {test.get('n', 0)} clean images of other classes ({where}) "
                f"changes P({cls}) by {test.get('mean_shift', math.nan):+.2f}, the sham (a neutral "
                f"{test.get('sham', '')} object of the same area on the same images) by "
                f"{test.get('sham_shift', math.nan):+.2f}"
            )
        text = f"{what}: reliance effect {test.get('effect', math.nan):+.2f} ({level} % CI {low:+.2f} to {high:+.2f})"
        if "logit_effect" in test:
            llow, lhigh = test.get("logit_interval", [math.nan, math.nan])
            text += (
                f"; on the log-odds of '{cls}' {test['logit_effect']:+.2f} ({level} % CI {llow:+.2f} to {lhigh:+.2f}; "
                f"one unit of log-odds moves P by {_number(test.get('reach')):.2f} on these images)"
            )
        return text

    @staticmethod
    def message(
        artifact: str, cls: str, evidence: dict[str, Any], audit_flagged: bool, passing: Sequence[str] | None = None
    ) -> str:
        """A text a person can act on: each causal test with its effect, sham, interval, images and split; then the
        supporting evidence.

        Args:
            passing: names of the tests that met the rule (:meth:`passing`), marked in the text.
        """
        tests = [evidence[key] for key, _ in AlertRule.TESTS if isinstance(evidence.get(key), dict)]
        marked = set(passing or ())
        what = artifact if artifact.startswith("unnamed artifact") else f"the {artifact} artifact"
        lines = [f"the model relies on {what} as evidence for '{cls}' (sham-controlled tests):"]
        for test in tests:
            flag = " [meets the rule]" if test.get("test") in marked else ""
            lines.append(f"- {AlertRule.describe_test(test, artifact, cls)}{flag}")
        exposure = evidence.get("exposure")
        if isinstance(exposure, dict):
            lines.append(
                f"- the {artifact} is on {exposure.get('images', 0)} of {exposure.get('of', 0)} '{cls}' images in the "
                f"{exposure.get('split', '?')} pool"
            )
        if "removal_skipped" in evidence:
            lines.append(f"- removal not tested: {evidence['removal_skipped']}")
        support = []
        ratio = evidence.get("relevance_ratio", math.nan)
        if ratio is not None and not math.isnan(ratio):
            support.append(f"LRP puts {ratio:.1f}x the area-proportional relevance on the {artifact}")
        spray_entry = evidence.get("spray")
        if isinstance(spray_entry, dict) and spray_entry.get("flagged"):
            support.append(f"SpRAy finds a cluster of '{cls}' heatmaps focused on the {artifact}")
        if audit_flagged:
            support.append(f"the training data makes the {artifact} label-predictive for '{cls}'")
        if support:
            lines.append("- supporting evidence (not required for the alert): " + "; ".join(support))
        if evidence.get("tests"):
            lines.append(f"- tests run: {', '.join(evidence['tests'])}")
        return "\n".join(lines)

    @staticmethod
    def roi_message(cls: str, outside_share: float, n: int) -> str:
        return (
            f"the model's evidence for '{cls}' lies outside the region of interest: on {n} validation images "
            f"{100 * outside_share:.0f} % of the positive LRP relevance falls outside the mask (e.g. the lungs)"
        )

    def __repr__(self) -> str:
        return f"AlertRule({', '.join(f'{k}={v!r}' for k, v in self.criteria().items())})"
