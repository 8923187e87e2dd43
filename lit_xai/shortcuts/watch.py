"""The policy of :class:`~lit_xai.callbacks.ShortcutMonitor` as a pure object: which (artifact, class) pairs to
watch, the reliance evidence of one measurement, label-free discovery and the relevance outside a region of interest.

No Lightning inside: a notebook measures a model with it directly, and the callback wraps it (schedule, ranks,
logging, alerts), as Lightning's ``ThroughputMonitor`` wraps ``Throughput``.

Example:
    >>> watch = ShortcutWatch(("ring",), budget=ShortcutBudget(pool_size=16))
    >>> watch.detectors, watch.budget.num_counterfactual
    (('ring',), 64)
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional, Union

import torch

from ..artifacts import ARTIFACTS
from ..artifacts.roi import relevance_outside_roi
from ..contracts import ModelContract, Probes, probabilities, stand_in_labels
from ..explainers import CRP, Explainer, ExplainerNotApplicable, build_explainer
from ..schedule import due
from .candidate_artifact import candidate_artifact
from .colour import colour_cast
from .discovery import default_threshold, discover_candidates
from .monitoring import AlertRule, ReliancePool, measure_reliance

__all__ = ["MIN_REMOVAL_IMAGES", "PERSIST_BEFORE", "Discovery", "ShortcutBudget", "ShortcutWatch"]

#: artifact images of a watched class in the validation pool below which the removal test also reads training images
MIN_REMOVAL_IMAGES = 16
#: share of the threshold a group must have scored at the previous discovery to count as persisting
#: (:attr:`Discovery.persist`; the demo's ring, seed 42, scores 0.75 of it at epoch 1: 1.69 against 2.25,
#: ``python -m benchmarks discovery --demo``)
PERSIST_BEFORE = 0.5


@dataclass
class ShortcutBudget:
    """How much the :class:`ShortcutMonitor` reads and measures (YAML: a plain mapping).

    Args:
        audit: audit the training split at fit start.
        audit_max_samples: size of the audited (seeded) subset; None = every item.
        pool_size: validation images read once (seeded) for the reliance measures.
        num_probes: flagged images explained for the relevance ratio.
        num_counterfactual: clean images of other classes that get the artifact inserted.
        spray_samples: heatmaps of the suspected class clustered by SpRAy (0 = off).
        seed: selection / insertion seed.
        audit_cache: keep the audit's counts on disk (``$LIT_XAI_CACHE/audit``, else ``~/.cache/lit_xai/audit``),
            keyed by the files (names, sizes, modification times) or, for in-memory data, a hash of every pixel, plus
            a hash of a few decoded items and every setting; other datasets are audited afresh every run
            (:func:`lit_xai.shortcuts.audit.count_sample`).

    Example:
        >>> ShortcutBudget(pool_size=128).num_counterfactual
        64
    """

    audit: bool = True
    audit_max_samples: Optional[int] = 1024
    pool_size: int = 256
    num_probes: int = 8
    num_counterfactual: int = 64
    spray_samples: int = 64
    seed: int = 0
    audit_cache: bool = True

    def __post_init__(self) -> None:
        for name, low in (("pool_size", 4), ("num_probes", 1), ("num_counterfactual", 2), ("spray_samples", 0)):
            if getattr(self, name) < low:
                raise ValueError(f"ShortcutBudget({name}=...) must be >= {low}, got {getattr(self, name)}")
        if self.audit_max_samples is not None and self.audit_max_samples < 1:
            raise ValueError(
                f"ShortcutBudget(audit_max_samples=...) must be >= 1 or None, got {self.audit_max_samples}"
            )


@dataclass
class Discovery:
    """Label-free discovery of suspicious explanation clusters in the :class:`ShortcutMonitor` (YAML: a mapping):
    artifacts nobody registered (rulers, ink, tags, burnt-in text) found by clustering each class's explanations of
    the validation pool (:func:`lit_xai.shortcuts.discover_candidates`): its LRP maps (*where* the model looks) side
    by side with the positive CRP concept relevances of the profile's concept layer (*what* it uses there).

    Args:
        every_n_epochs: run at every N-th measured epoch (and the last); 0 = off.
        top_k: candidates kept per class.
        max_per_class: explanations clustered per class (seeded subset; bounds the cost).
        threshold: score above which a candidate is suspicious; None = the default of what is clustered
            (:func:`lit_xai.shortcuts.default_threshold`, measured in ``benchmarks/discovery.py``).
        verify: test every candidate above the threshold like a registered artifact (issue 32): an artifact built
            from its members alone (:func:`lit_xai.shortcuts.candidate_artifact`: member masks where their relevance
            sets them apart, a template detector, an inserter pasting a member's masked pixels, the harmonic remover)
            goes through the same sham-controlled insertion / removal tests (:func:`measure_reliance`) and the same
            :class:`AlertRule`; an alert reads "unnamed artifact k of class 'c'". ``verify=False``: list only.
        concepts: cluster the concept relevances with the maps (one more LRP pass). Without them a shortcut that
            draws little relevance is missed: on the demo the ring's LRP maps alone form a cluster, but the benign
            class's maps look at the image border too (bright corners speak for benign), so that cluster does not
            predict the label; the concepts behind the two differ. Off, or where CRP does not apply (no concept
            layer in the model's explanation profile; a warning says so), the maps alone are clustered.
        persist: with ``verify``, a candidate below the threshold is tested too when it *persists*: its score is at
            least ``persist`` times the threshold now, and its members are the same group (Jaccard >= 0.5 of the
            member ids) as a candidate of its class at the previous discovery that scored at least
            :data:`PERSIST_BEFORE` times the threshold. The score of a real artifact
            group hovers around the threshold while the model learns it (the demo's ring, seed 42, at epoch 3: 2.95 on
            one torch thread, 2.56 on two, threshold 2.25; before the squared location term of the score it was 1.95
            and 1.749 against 1.75), so a single crossing can be a coin flip; a group that comes back is
            no chance cluster, and the sham-controlled test, not the score, decides. None: the threshold alone.
            (At 0.5 a class's object cluster at 0.63 of the threshold came back and met the rule in a planted
            benchmark run, ``python -m benchmarks discovery_recall --discoveries 2``: the band is narrow on purpose.)

    Example:
        >>> Discovery(every_n_epochs=0).every_n_epochs
        0
    """

    every_n_epochs: int = 2
    top_k: int = 3
    max_per_class: int = 128
    threshold: Optional[float] = None
    concepts: bool = True
    verify: bool = True
    persist: Optional[float] = 0.75

    def __post_init__(self) -> None:
        if self.every_n_epochs < 0 or self.top_k < 1 or self.max_per_class < 8:
            raise ValueError("Discovery: every_n_epochs >= 0, top_k >= 1 and max_per_class >= 8 are required")
        if self.persist is not None and not 0.0 < self.persist <= 1.0:
            raise ValueError(f"Discovery(persist=...) must be in (0, 1] or None, got {self.persist}")

    def due(self, epoch: int, max_epochs: Optional[int]) -> bool:
        """Whether discovery runs at ``epoch`` (every N-th and the last epoch)."""
        return self.every_n_epochs > 0 and epoch >= 0 and due(epoch, self.every_n_epochs, max_epochs)


class ShortcutWatch:
    """What :class:`~lit_xai.callbacks.ShortcutMonitor` watches and how it measures it.

    Args:
        detectors: watched artifacts, names in :data:`lit_xai.artifacts.ARTIFACTS` with an inserter.
        rule: the :class:`~lit_xai.shortcuts.AlertRule` (its confidence sets the bootstrap intervals).
        budget: what is read and measured (:class:`ShortcutBudget`).
        explainer: map explainer for the relevance measures (name or object).
        discovery: label-free discovery settings (:class:`Discovery`).
        target_class: class name (or index) to watch; None = the classes the audit finds the artifact predictive
            of (:attr:`audit_flags`), else the class it co-occurs with most in the pool.

    Attributes:
        pool: the validation :class:`~lit_xai.shortcuts.ReliancePool` (:meth:`read_pool`), None before.
        train_pool: training images for the removal test where the pool holds too few (:meth:`needs_train_pool`).
        audit_flags: per artifact, the classes the dataset audit found it label-predictive of.
    """

    def __init__(
        self,
        detectors: Sequence[str] = ("ring",),
        rule: Optional[AlertRule] = None,
        budget: Optional[ShortcutBudget] = None,
        explainer: Union[str, Explainer] = "lrp",
        discovery: Optional[Discovery] = None,
        target_class: Optional[Union[str, int]] = None,
    ) -> None:
        detectors = [detectors] if isinstance(detectors, str) else list(detectors)
        unknown = [d for d in detectors if d not in ARTIFACTS]
        if unknown or not detectors:
            raise ValueError(f"unknown artifacts {unknown or detectors}; choose from {', '.join(sorted(ARTIFACTS))}")
        no_inserter = [d for d in detectors if ARTIFACTS[d].insert is None]
        if no_inserter:
            raise ValueError(
                f"artifacts {no_inserter} have no inserter, so their counterfactual test cannot run; register one "
                "with lit_xai.artifacts.register_artifact(name, detect=..., threshold=..., insert=...) or audit them "
                "with lit_xai.shortcuts.audit_dataset instead of watching them"
            )
        self.detectors = tuple(detectors)
        self.rule = rule if rule is not None else AlertRule()
        self.budget = budget if budget is not None else ShortcutBudget()
        self.explainer = build_explainer(explainer)
        self.discovery = discovery if discovery is not None else Discovery()
        self.target_class = target_class
        self.pool: Optional[ReliancePool] = None
        self.train_pool: Optional[ReliancePool] = None
        self.audit_flags: dict[str, list[str]] = {}
        self._concepts_warned = False
        # per class, the member sets (and scores) of the previous discovery's candidates: for Discovery.persist
        self._previous: dict[int, list[tuple[frozenset[int], float]]] = {}

    # ------------------------------------------------------------------ what to watch
    def check_target_class(self, names: Sequence[str]) -> None:
        """Raise when ``target_class`` is not one of the class ``names``."""
        if self.target_class is not None and str(self.target_class) not in names:
            raise ValueError(f"target_class {self.target_class!r} is not a class; choose from {list(names)}")

    def read_pool(self, read: Probes, ids: list[int], to01: Any, split: str) -> ReliancePool:
        """The sample ``read`` (items ``ids``) as a :class:`~lit_xai.shortcuts.ReliancePool` with every watched
        artifact detected; ``to01`` maps model inputs to [0, 1]."""
        labels = stand_in_labels(read.targets)  # multi-label: the first positive label stands for the image
        pool = ReliancePool(to01(read.images), read.images, labels, ids, read.roi_masks, split=split)
        for name in self.detectors:
            pool.detect(name)
        return pool

    def targets_for(self, artifact: str, names: list[str]) -> list[int]:
        """The class indices watched for ``artifact``."""
        if self.target_class is not None:
            return [names.index(str(self.target_class))]
        flagged = self.audit_flags.get(artifact, [])
        if flagged:
            return [names.index(c) for c in flagged if c in names]
        # not label-predictive in the data: still watch the class the artifact co-occurs with most
        pool = self.pool
        flags = pool.flags[artifact] & (pool.labels >= 0)
        if flags.any():
            counts = torch.bincount(pool.labels[flags], minlength=len(names)).float()
            base = torch.bincount(pool.labels[pool.labels >= 0], minlength=len(names)).float().clamp_min(1)
            return [int((counts / base).argmax())]
        return []

    def needs_train_pool(self, names: list[str]) -> bool:
        """Whether the pool holds fewer than :data:`MIN_REMOVAL_IMAGES` artifact images of a watched class."""
        pool = self.pool
        return any(
            int((pool.flags[a] & (pool.labels == c)).sum()) < MIN_REMOVAL_IMAGES
            for a in self.detectors
            for c in self.targets_for(a, names)
        )

    def explained_maps(self, names: Optional[list[str]], discover: bool = False) -> int:
        """How many LRP maps :meth:`measure` explains (at least 1; the time budget's unit of work): the probes' and
        SpRAy's of every watched (artifact, class); with ``discover`` the pool's labelled images instead, which
        those are read from. Before the pool is read, 1."""
        if self.pool is None or names is None:
            return 1
        reliance = sum(len(self.targets_for(a, names)) for a in self.detectors) * (
            self.budget.num_probes + self.budget.spray_samples
        )
        if discover:
            reliance = max(reliance, int((self.pool.labels >= 0).sum()))
        return max(1, reliance)

    # ------------------------------------------------------------------ measure
    def measure(self, contract: ModelContract, module: torch.nn.Module, discover: bool = False) -> dict[str, Any]:
        """The reliance evidence of every watched (artifact, class), the relevance outside the ROI and, with
        ``discover``, the discovered candidates."""
        budget, names = self.budget, contract.class_names
        # discovery first: its maps of the pool (each image for its own class) are the maps the relevance measures
        # (probes, SpRAy) need of the watched class's images, so they are read there instead of explained again
        found = self.discover(module) if discover else None
        explained = None if found is None else (found["rows"], found["labels"], found["heat"])
        evidence: list[tuple[str, str, dict[str, Any]]] = []
        for artifact in self.detectors:
            for cls in self.targets_for(artifact, names):
                measured = measure_reliance(
                    module,
                    self.pool,
                    artifact,
                    cls,
                    contract.value_range.from01,
                    explainer=self.explainer,
                    task=contract.task,
                    num_probes=budget.num_probes,
                    num_counterfactual=budget.num_counterfactual,
                    spray_samples=budget.spray_samples,
                    seed=budget.seed,
                    removal_pool=self.train_pool,
                    min_removal_images=MIN_REMOVAL_IMAGES,
                    confidence=self.rule.confidence,
                    explained=explained,
                )
                evidence.append((artifact, names[cls], measured))
        if found is not None and self.discovery.verify:
            start = time.perf_counter()
            found["verified"] = self.verify(contract, module, found)
            found["verify_seconds"] = time.perf_counter() - start
        return {
            "evidence": evidence,
            "predictions": [self.predict(module, measured, contract.task) for _, _, measured in evidence],
            "method": self.explainer.describe(module),
            "roi": self.measure_roi(contract, module),
            "discovery": found,
        }

    def verify(self, contract: ModelContract, module: torch.nn.Module, found: dict[str, Any]) -> list[dict[str, Any]]:
        """Every suspicious (or persisting, :attr:`Discovery.persist`) candidate of a :meth:`discover` result as a
        tested artifact: built from its members alone (:func:`~lit_xai.shortcuts.candidate_artifact`), registered for
        the measurement only, and measured like a watched artifact (:func:`measure_reliance`: sham-controlled
        insertion and removal, bootstrap intervals). Returns per candidate ``key`` (stable name for the rule's
        streak: class and rank), ``label`` ("unnamed artifact k of class 'c'"), ``class``, ``twin`` (a watched
        detector flagging at least half of the members, else None), ``twin_share``, ``members`` (ids),
        ``mask_share`` (the template region's share of the image), ``region`` (that ``(H, W)`` bool mask),
        ``member_rows`` (the members' rows in the pool: their thumbnails), ``screen`` (``"score"``: above the
        threshold, or ``"persists"``), ``detector_j`` and ``selective`` (the template detector's Youden J, and
        whether it is used: else the members alone carry the artifact, see
        :data:`~lit_xai.shortcuts.candidate_artifact.MIN_DETECTOR_J`) and ``evidence``; candidates whose artifact
        cannot be built are left out,
        and so is a candidate whose template region overlaps (IoU >= 0.5) that of a better-ranked candidate of
        its class (one artifact split over two clusters is tested and named once)."""
        pool = self.pool
        out: list[dict[str, Any]] = []
        tested: list[tuple[int, int, torch.Tensor]] = []
        for cand in found["candidates"]:
            persists = self.persists(cand, found["threshold"])
            if not (cand.suspicious or persists):
                continue
            try:
                art = candidate_artifact(cand, pool.images01[found["rows"]], found["heat"], labels=found["labels"])
            except ValueError:
                continue
            # a class's artifact split over two clusters gives two candidates on one region: tested (and named) once
            same = [k for c, k, region in tested if c == cand.class_index and _iou(region, art.region) >= 0.5]
            if same:
                continue
            tested.append((cand.class_index, cand.rank, art.region))
            rows = found["rows"][torch.as_tensor(cand.rows, dtype=torch.long)]
            entry = self._test(contract, module, cand, art, rows, "unnamed artifact", "candidate")
            out.append({**entry, "screen": "score" if cand.suspicious else "persists"})
        self._previous = {}
        for cand in found["candidates"]:
            self._previous.setdefault(cand.class_index, []).append((frozenset(cand.members), float(cand.score)))
        return out

    def verify_colour(
        self, contract: ModelContract, module: torch.nn.Module, candidates: list[Any], rows: torch.Tensor,
        labels: torch.Tensor,
    ) -> list[dict[str, Any]]:  # fmt: skip
        """Every suspicious colour group (:func:`~lit_xai.shortcuts.colour.colour_candidates` of the pool's ``rows``
        with their ``labels``) as a tested artifact (:func:`~lit_xai.shortcuts.colour.colour_cast`: the group's
        colour offset added, subtracted, and its own sham), measured as :meth:`verify` measures; the same entries,
        labelled "unnamed colour cast k of class 'c'" (``key`` ``colour_k``)."""
        out = []
        for cand in candidates:
            if not cand.suspicious:
                continue
            try:
                art = colour_cast(cand, self.pool.images01[rows], labels=labels)
            except ValueError:
                continue
            members = rows[torch.as_tensor(cand.rows, dtype=torch.long)]
            out.append({**self._test(contract, module, cand, art, members, "unnamed colour cast", "colour"),
                        "screen": "score"})  # fmt: skip
        return out

    def _test(
        self, contract: ModelContract, module: torch.nn.Module, cand: Any, art: Any, rows: torch.Tensor, noun: str,
        kind: str,
    ) -> dict[str, Any]:  # fmt: skip
        """One candidate's artifact ``art`` (members at pool ``rows``) registered for the measurement only and measured
        like a watched artifact; :meth:`verify`'s entry without ``screen``."""
        pool, budget, names = self.pool, self.budget, contract.class_names
        twin, twin_share = None, 0.0
        for detector in self.detectors:
            share = float(pool.flags[detector][rows].float().mean())
            if share >= 0.5 and share > twin_share:
                twin, twin_share = detector, share
        name = f"_unnamed_{kind}_c{cand.class_index}_{cand.rank + 1}"
        pools = [p for p in (pool, self.train_pool) if p is not None]
        with art.registered(name):
            try:
                pool.detect(name)  # the images the artifact was built from are scored once (its detect cache)
                art.flag_pool(pool, name)
                evidence = measure_reliance(
                    module, pool, name, cand.class_index, contract.value_range.from01, explainer=self.explainer,
                    task=contract.task, num_probes=0, num_counterfactual=budget.num_counterfactual,
                    spray_samples=0, seed=budget.seed, removal_pool=self.train_pool,
                    min_removal_images=MIN_REMOVAL_IMAGES, confidence=self.rule.confidence,
                )  # fmt: skip
            finally:
                for p in pools:
                    p.forget(name)
        cls = names[cand.class_index] if cand.class_index < len(names) else str(cand.class_index)
        evidence["artifact"] = label = f"{noun} {cand.rank + 1} of class '{cls}'"
        return {
            "key": f"{kind}_{cand.rank + 1}", "label": label, "class": cls, "class_index": cand.class_index,
            "rank": cand.rank,
            "twin": twin, "twin_share": twin_share, "members": [int(m) for m in cand.members],
            "mask_share": float(art.region.float().mean()), "score": float(cand.score), "evidence": evidence,
            "detector_j": art.detector_j, "selective": art.threshold < math.inf,
            "region": art.region.clone(), "member_rows": rows.tolist(),
        }  # fmt: skip

    def persists(self, cand: Any, threshold: float) -> bool:
        """Whether ``cand`` is a group of the previous discovery come back (:attr:`Discovery.persist`): its score at
        least ``persist * threshold``, the earlier one at least ``PERSIST_BEFORE * threshold``, and Jaccard >= 0.5
        between the member sets."""
        share = self.discovery.persist
        if share is None or cand.score < share * threshold:
            return False
        members = frozenset(cand.members)
        return any(
            score >= PERSIST_BEFORE * threshold and len(members & before) >= 0.5 * len(members | before)
            for before, score in self._previous.get(cand.class_index, [])
        )

    def predict(self, module: torch.nn.Module, evidence: dict[str, Any], task: str) -> Optional[torch.Tensor]:
        """Class probabilities ``(n, K)`` of the flagged probes whose maps are shown (captions), or None."""
        rows = torch.as_tensor(evidence.get("probe_rows", [])).long()
        if len(rows) == 0:
            return None
        with torch.no_grad():
            return probabilities(module(self.pool.inputs[rows]).float(), task).cpu()

    def discover(self, module: torch.nn.Module) -> dict[str, Any]:
        """LRP maps of the pool's labelled images (for their own class), clustered per class."""
        pool, setting = self.pool, self.discovery
        start = time.perf_counter()
        rows = (pool.labels >= 0).nonzero().flatten()
        heat = self.explainer(module, pool.inputs[rows], pool.labels[rows])
        labels = pool.labels[rows]
        concepts, view = self.concepts(module, pool.inputs[rows], labels) if setting.concepts else (None, "")
        threshold = default_threshold(concepts is not None) if setting.threshold is None else setting.threshold
        found = discover_candidates(
            heat,
            labels,
            [pool.ids[int(r)] for r in rows],
            features=concepts,
            roi_masks=None if pool.roi_masks is None else pool.roi_masks[rows],
            max_per_class=setting.max_per_class,
            top_k=setting.top_k,
            threshold=threshold,
            seed=self.budget.seed,
        )
        seconds = time.perf_counter() - start
        view = f"each class's {self.explainer.describe()} maps" + (f" and {view} concept relevances" if view else "")
        return {
            "candidates": found, "heat": heat, "rows": rows, "labels": labels, "seconds": seconds, "view": view,
            "threshold": threshold,
        }  # fmt: skip

    def concepts(
        self, module: torch.nn.Module, inputs: torch.Tensor, labels: torch.Tensor
    ) -> tuple[Optional[torch.Tensor], str]:
        """Positive CRP concept relevances ``(N, C)`` of the profile's concept layer and its description, or
        ``(None, "")`` (with one warning) where CRP does not apply to the model."""
        crp = CRP()
        try:
            view = f"CRP {crp.layer_for(module)}"
            return crp.concept_relevances(module, inputs, labels).clamp_min(0), view
        except (ExplainerNotApplicable, ValueError) as err:
            if not self._concepts_warned:
                self._concepts_warned = True
                warnings.warn(
                    f"ShortcutMonitor discovery clusters the maps alone: no concept relevances ({err})", stacklevel=2
                )
            return None, ""

    def measure_roi(self, contract: ModelContract, module: torch.nn.Module) -> dict[str, tuple[float, int]]:
        """Share of positive relevance outside the region of interest, per class (datasets with ``roi_mask``)."""
        pool = self.pool
        if pool.roi_masks is None:
            return {}
        shares: dict[str, tuple[float, int]] = {}
        for cls, name in enumerate(contract.class_names):
            members = (pool.labels == cls).nonzero().flatten()[: self.budget.num_probes]
            if len(members) == 0:
                continue
            heat = self.explainer(module, pool.inputs[members], torch.full((len(members),), cls))
            share = relevance_outside_roi(heat, pool.roi_masks[members])
            mean = float(torch.nanmean(share)) if not torch.isnan(share).all() else math.nan
            if not math.isnan(mean):
                shares[name] = (mean, len(members))
        return shares


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    """Intersection over union of two bool masks (0 when both are empty)."""
    union = int((a | b).sum())
    return int((a & b).sum()) / union if union else 0.0
