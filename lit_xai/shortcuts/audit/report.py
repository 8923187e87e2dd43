"""The audit's result objects: :class:`AuditCounts` (raw, mergeable counts of a scan), :class:`AuditReport` (the
statistics and verdicts over them) and :class:`ArtifactAssociation` (one artifact's association with the labels).

Plain data with JSON round trips; the numbers come from :mod:`.statistics`, the counts from :mod:`.scan`.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

__all__ = ["ANNOTATED", "ArtifactAssociation", "AuditCounts", "AuditReport", "merge_counts", "to_jsonable"]

#: name under which a dataset's own ``artifact`` flags (annotations) are audited
ANNOTATED = "annotated"
_MAX_FAILURE_MESSAGES = 20


@dataclass
class ArtifactAssociation:
    """Prevalence of one artifact and its association with the labels.

    Per-class lists follow ``AuditReport.class_names``. For multilabel tasks "class" means "label positive".

    Attributes:
        name: detector name (or ``"annotated"`` for the dataset's own flags).
        threshold: detector score threshold used (``None`` for annotations).
        n_with: images flagged.
        prevalence: ``n_with / n_images``.
        count_by_class: flagged images per class.
        prevalence_by_class: P(artifact | class).
        p_class_given_artifact: P(class | artifact) (NaN when nothing is flagged).
        p_class_given_clean: P(class | no artifact).
        p_class: P(class) overall.
        lift: ``P(class | artifact) / P(class)``.
        odds_ratio: odds ratio of the one-vs-rest 2x2 table (Haldane-corrected: +0.5 per cell).
        p_value: two-sided Fisher exact p per class, Bonferroni-corrected over the classes.
        chi2, chi2_p, cramers_v: chi-square test of independence of artifact x class (2 x K; multiclass/binary
            only) and its effect size Cramér's V in [0, 1].
        mutual_information: I(artifact; class) in bits (multiclass/binary only).
        predictive_classes: classes for which the artifact is label-predictive.
        agreement: precision/recall of this detector against the dataset's ``artifact`` flags, when present.
    """

    name: str
    threshold: float | None
    n_with: int
    prevalence: float
    count_by_class: list[int]
    prevalence_by_class: list[float]
    p_class_given_artifact: list[float]
    p_class_given_clean: list[float]
    p_class: list[float]
    lift: list[float]
    odds_ratio: list[float]
    p_value: list[float]
    chi2: float | None = None
    chi2_p: float | None = None
    cramers_v: float | None = None
    mutual_information: float | None = None
    predictive_classes: list[str] = field(default_factory=list)
    agreement: dict[str, float] | None = None

    @property
    def label_predictive(self) -> bool:
        """True when the artifact is label-predictive for at least one class."""
        return bool(self.predictive_classes)


@dataclass
class AuditReport:
    """Result of :func:`audit_dataset`.

    Attributes:
        n_images: images audited (failed items excluded).
        n_failed: items (or batches of a loader) that could not be read; they are *not* silently dropped.
        failures: the first 20 failure messages.
        class_names, task: the label space.
        class_counts: images per class (positives per label for multilabel).
        artifacts: one :class:`ArtifactAssociation` per detector (plus ``"annotated"`` for dataset flags).
        verdicts: human-readable sentences, one per label-predictive artifact and class.
        criteria: the thresholds used for "label-predictive".
    """

    n_images: int
    n_failed: int
    failures: list[str]
    class_names: list[str]
    task: str
    class_counts: list[int]
    artifacts: dict[str, ArtifactAssociation]
    verdicts: list[str]
    criteria: dict[str, float]

    def label_predictive(self, artifact: str) -> bool:
        """Whether ``artifact`` is label-predictive for some class; the error lists the audited artifacts."""
        if artifact not in self.artifacts:
            raise KeyError(f"artifact {artifact!r} was not audited; audited: {', '.join(self.artifacts)}")
        return self.artifacts[artifact].label_predictive

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (NaN and infinities become ``None``), with ``annotation_twin``: the detector whose
        flags are exactly the dataset's annotations (``None`` if none), so readers of the JSON fold the two alike."""
        return {**to_jsonable(asdict(self)), "annotation_twin": self._annotation_twin()}

    def to_json(self, indent: int | None = 2) -> str:
        """The report as a JSON string."""
        return json.dumps(self.to_dict(), indent=indent)

    def summary(self) -> str:
        """A few lines for logs: prevalence per artifact and class, then the verdicts.

        The dataset's own annotations (``"annotated"``) are folded into a detector's line when they flag exactly
        the same images, instead of repeating every number under a second name.
        """
        counts = ", ".join(f"{n} {c}" for c, n in zip(self.class_names, self.class_counts))
        lines = [f"audited {self.n_images} images ({counts}); {self.n_failed} failed"]
        twin = self._annotation_twin()
        for a in self.artifacts.values():
            if twin is not None and a.name == ANNOTATED:
                continue
            per_class = ", ".join(f"{c} {100 * p:.0f} %" for c, p in zip(self.class_names, a.prevalence_by_class))
            v = "" if a.cramers_v is None else f"; Cramér's V {a.cramers_v:.2f}"
            same = "; the dataset's own annotations flag exactly these images" if a.name == twin else ""
            lines.append(f"{a.name}: {a.n_with} images ({100 * a.prevalence:.1f} %; {per_class}{v}){same}")
        verdicts = [v for v in self.verdicts if twin is None or not v.startswith(f"{ANNOTATED}:")]
        lines += verdicts or ["no artifact is label-predictive"]
        return "\n".join(lines)

    def _annotation_twin(self) -> str | None:
        """The detector whose flags coincide with the dataset's annotations (precision = recall = 1), if any."""
        if ANNOTATED not in self.artifacts:
            return None
        for a in self.artifacts.values():
            agreement = a.agreement or {}
            if a.name != ANNOTATED and agreement.get("precision") == 1.0 and agreement.get("recall") == 1.0:
                return a.name
        return None


@dataclass
class AuditCounts:
    """The raw counts behind an :class:`AuditReport`: what :func:`count_dataset` measures, before any statistics.

    Counts of disjoint shards of a dataset add up (:func:`merge_counts`), so ranks can audit their own shard and
    the merged counts give exactly the report of one process over everything (:func:`report_from_counts`). They are
    plain JSON (:meth:`to_dict`, the on-disk cache) and a flat integer tensor (:meth:`to_tensor`, for a collective
    sum such as Lightning's ``trainer.strategy.reduce(t, reduce_op="sum")``).

    Attributes:
        n_images: images audited; n_failed: items that could not be read; failures: the first 20 messages.
        task: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        class_names: the label names given, or ``None`` (the report names them ``class_<k>``).
        class_counts: images per class (positives per label for multilabel).
        artifacts: per detector ``{"threshold", "n_with", "count_by_class", "true_positive"}`` (``true_positive``:
            flagged images the dataset annotates as carrying an artifact; ``None`` without annotations).
        annotated: ``{"n_with", "count_by_class"}`` of the dataset's own artifact flags, ``None`` when not every
            item carries one.
    """

    n_images: int
    n_failed: int
    failures: list[str]
    task: str
    class_names: list[str] | None
    class_counts: list[int]
    artifacts: dict[str, dict[str, Any]]
    annotated: dict[str, Any] | None = None
    #: set on counts read from the cache (not stored, not compared)
    from_cache: bool = field(default=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (without ``from_cache``)."""
        d = asdict(self)
        d.pop("from_cache")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AuditCounts:
        """Inverse of :meth:`to_dict`."""
        return cls(**{k: copy.deepcopy(v) for k, v in d.items() if k != "from_cache"})

    def to_tensor(self, num_classes: int | None = None) -> torch.Tensor:
        """The counts as one flat ``int64`` tensor (classes padded to ``num_classes``), for a collective sum.

        Every rank must hold the same detectors (in the same order) and pass the same ``num_classes``; the failure
        messages do not travel (:meth:`from_tensor` keeps the local ones). Annotations count only when every rank
        has them: the tensor carries a 0/1 flag per rank, summed, that :meth:`from_tensor` checks.
        """
        k = len(self.class_counts) if num_classes is None else num_classes
        if k < len(self.class_counts):
            raise ValueError(f"num_classes={k} is smaller than the {len(self.class_counts)} classes counted")
        values = [self.n_images, self.n_failed, 1, *_pad(self.class_counts, k)]
        for a in self.artifacts.values():
            values += [a["n_with"], a["true_positive"] or 0, *_pad(a["count_by_class"], k)]
        annotated = self.annotated if self.annotated is not None or self.n_images else {"n_with": 0}
        has = annotated is not None
        values += [int(has), annotated["n_with"] if has else 0, *_pad((annotated or {}).get("count_by_class", []), k)]
        return torch.tensor(values, dtype=torch.int64)

    def from_tensor(self, values: torch.Tensor) -> AuditCounts:
        """Counts read back from :meth:`to_tensor`'s layout (e.g. after a sum over ranks); the names, thresholds
        and failure messages come from ``self``."""
        v = [int(x) for x in values.detach().cpu().reshape(-1).tolist()]
        ranks = v[2]
        # layout: n_images, n_failed, ranks, K class counts, per detector (n_with, tp, K), (has, n_with, K)
        k = (len(v) - 5 - 2 * len(self.artifacts)) // (2 + len(self.artifacts))
        if 5 + 2 * len(self.artifacts) + k * (2 + len(self.artifacts)) != len(v):
            raise ValueError(f"a tensor of {len(v)} counts does not match {len(self.artifacts)} detectors")
        pos = 3
        class_counts = v[pos : pos + k]
        pos += k
        artifacts = {}
        for name, a in self.artifacts.items():
            n_with, tp, by_class = v[pos], v[pos + 1], v[pos + 2 : pos + 2 + k]
            pos += 2 + k
            artifacts[name] = {"threshold": a["threshold"], "n_with": n_with, "true_positive": tp,
                               "count_by_class": by_class}  # fmt: skip
        has, ann_with, ann_by_class = v[pos], v[pos + 1], v[pos + 2 : pos + 2 + k]
        annotated = {"n_with": ann_with, "count_by_class": ann_by_class} if has == ranks and v[0] else None
        if annotated is None:
            for a in artifacts.values():
                a["true_positive"] = None
        return AuditCounts(
            v[0], v[1], list(self.failures), self.task, self.class_names, class_counts, artifacts, annotated
        )


def _pad(values: Sequence[int], k: int) -> list[int]:
    return [int(x) for x in values] + [0] * (k - len(values))


def merge_counts(parts: Sequence[AuditCounts]) -> AuditCounts:
    """The counts of disjoint shards added up: equal to one :func:`count_dataset` over all of them.

    Failure messages are concatenated in the order of ``parts`` (pass them by rank) and capped at 20.

    Example:
        >>> import torch
        >>> from lit_xai.shortcuts.audit import count_dataset
        >>> items = [(torch.rand(3, 16, 16), i % 2) for i in range(8)]
        >>> merged = merge_counts([count_dataset(items[:5]), count_dataset(items[5:])])
        >>> merged == count_dataset(items)
        True
    """
    parts = list(parts)
    if not parts:
        raise ValueError("merge_counts needs at least one AuditCounts")
    first = parts[0]
    for p in parts[1:]:
        if p.task != first.task:
            raise ValueError(f"cannot merge counts of task {first.task!r} and {p.task!r}")
        if list(p.artifacts) != list(first.artifacts) or any(
            p.artifacts[n]["threshold"] != first.artifacts[n]["threshold"] for n in first.artifacts
        ):
            raise ValueError(
                "cannot merge counts of different detectors or thresholds: "
                f"{ {n: a['threshold'] for n, a in first.artifacts.items()} } vs "
                f"{ {n: a['threshold'] for n, a in p.artifacts.items()} }"
            )
    names = {tuple(p.class_names) for p in parts if p.class_names is not None}
    if len(names) > 1:
        raise ValueError(f"cannot merge counts with different class names: {sorted(names)}")
    class_names = list(names.pop()) if names else None
    k = max(len(p.class_counts) for p in parts)

    def total(values: Iterable[Sequence[int]]) -> list[int]:
        return [int(x) for x in np.sum([_pad(v, k) for v in values], axis=0)] if k else []

    counted = [p for p in parts if p.n_images]
    has_annotations = bool(counted) and all(p.annotated is not None for p in counted)
    artifacts = {}
    for name, a in first.artifacts.items():
        artifacts[name] = {
            "threshold": a["threshold"],
            "n_with": sum(p.artifacts[name]["n_with"] for p in parts),
            "count_by_class": total(p.artifacts[name]["count_by_class"] for p in parts),
            "true_positive": sum(p.artifacts[name]["true_positive"] for p in counted) if has_annotations else None,
        }
    annotated = None
    if has_annotations:
        annotated = {
            "n_with": sum(p.annotated["n_with"] for p in counted),
            "count_by_class": total(p.annotated["count_by_class"] for p in counted),
        }
    return AuditCounts(
        n_images=sum(p.n_images for p in parts),
        n_failed=sum(p.n_failed for p in parts),
        failures=[m for p in parts for m in p.failures][:_MAX_FAILURE_MESSAGES],
        task=first.task,
        class_names=class_names,
        class_counts=total(p.class_counts for p in parts),
        artifacts=artifacts,
        annotated=annotated,
    )


def to_jsonable(obj: Any) -> Any:
    """Plain JSON-able copy: tensors and NumPy scalars to Python values, NaN and infinities to ``None``."""
    if isinstance(obj, torch.Tensor):
        return to_jsonable(obj.tolist())
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, (np.integer, np.bool_)):
        return obj.item()
    return obj
