"""Dataset audit: how often do artifacts occur, and do they predict the label (a shortcut waiting to be learned)?

:func:`audit_dataset` runs image-space detectors (:data:`lit_xai.artifacts.DETECTORS`) over any iterable of items
or batches and cross-tabulates the flags with the labels; :func:`audit_datamodule` does it for a split of a
``lit_xai`` datamodule (denormalizing with ``dm.denormalize``, deterministic subset, failed items counted).

**When is an artifact "label-predictive"?** For each class ``c`` (one-vs-rest; per label for multilabel tasks),
the 2x2 table artifact x class must show all of

1. a *significant* association: two-sided Fisher exact test, Bonferroni-corrected over the classes, ``p < 1e-3``
   (strict because audits run many detectors on thousands of images, where tiny, harmless differences are
   significant);
2. a *strong* association: odds ratio ``>= 3`` (Haldane-corrected) in favour of ``c``. The odds ratio is symmetric
   between a class and its complement, so "patches -> benign" is caught although its lift is only
   P(benign | patch) / P(benign) = 0.99 / 0.80 = 1.24; on balanced binary data with a rare artifact it equals
   lift >= 1.5 (75 % vs 50 %);
3. enough *support*: at least 10 images that carry the artifact *and* belong to ``c`` (fewer cannot teach a network
   a shortcut, and percentages of tiny counts mislead).

The thresholds are arguments (``alpha``, ``min_odds_ratio``, ``min_support``) and recorded in the report.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats

from ..contracts import read_item, split_dataset
from ..explainers.inputs import finite_rows
from .detectors import Detector
from .registry import DEFAULT_THRESHOLDS, get_detector

__all__ = [
    "ALPHA",
    "ANNOTATED",
    "MIN_ODDS_RATIO",
    "MIN_SUPPORT",
    "ArtifactAssociation",
    "AuditCounts",
    "AuditReport",
    "audit_dataset",
    "audit_datamodule",
    "add_skipped",
    "audit_sample",
    "association_from_counts",
    "count_dataset",
    "count_sample",
    "dataset_files",
    "dataset_fingerprint",
    "dataset_identity",
    "default_cache_dir",
    "eval_dataset",
    "association_table",
    "merge_counts",
    "report_from_counts",
    "sample_indices",
]

#: default criteria for "label-predictive" (see the module docstring)
ALPHA = 1e-3
MIN_ODDS_RATIO = 3.0
MIN_SUPPORT = 10
#: name under which a dataset's own ``artifact`` flags (annotations) are audited
ANNOTATED = "annotated"
_MAX_FAILURE_MESSAGES = 20
_MAX_CONSECUTIVE_FAILURES = 50


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


def association_table(
    flags: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    task: str = "multiclass",
    name: str = "artifact",
    threshold: float | None = None,
    alpha: float = ALPHA,
    min_odds_ratio: float = MIN_ODDS_RATIO,
    min_support: int = MIN_SUPPORT,
) -> ArtifactAssociation:
    """Association statistics of boolean artifact ``flags`` ``(N,)`` with ``labels``.

    Args:
        flags: ``(N,)`` bool.
        labels: ``(N,)`` class indices, or ``(N, K)`` 0/1 for ``task="multilabel"``.
        class_names: K names.

    Example:
        >>> import numpy as np
        >>> labels = np.repeat([0, 1], 50)
        >>> flags = np.r_[np.zeros(45, bool), np.ones(5, bool), np.zeros(20, bool), np.ones(30, bool)]
        >>> a = association_table(flags, labels, ["benign", "melanoma"], "binary")
        >>> a.predictive_classes, round(a.p_class_given_artifact[1], 2)
        (['melanoma'], 0.86)
    """
    flags = np.asarray(flags, dtype=bool)
    with_c, tot_c = _table_counts(flags, labels, len(class_names), task)
    return association_from_counts(
        len(flags), with_c, tot_c, class_names, task, name, threshold, alpha, min_odds_ratio, min_support,
        n_with=int(flags.sum()),
    )


def _table_counts(flags: np.ndarray, labels: np.ndarray, k: int, task: str) -> tuple[np.ndarray, np.ndarray]:
    """``(flagged images per class, images per class)`` of boolean ``flags`` ``(N,)`` and ``labels``."""
    n = len(flags)
    labels = np.asarray(labels)
    if task == "multilabel":
        member = np.nan_to_num(labels.astype(float)) > 0.5
        if member.shape != (n, k):
            raise ValueError(f"multilabel labels must be (N, {k}), got {member.shape}")
    else:
        labels = labels.astype(np.int64).reshape(-1)
        if len(labels) != n:
            raise ValueError(f"got {n} flags but {len(labels)} labels")
        if n and (labels.min() < 0 or labels.max() >= k):
            raise ValueError(f"labels must be class indices in [0, {k}), got range [{labels.min()}, {labels.max()}]")
        member = labels[:, None] == np.arange(k)[None, :]
    return (member & flags[:, None]).sum(0), member.sum(0)


def association_from_counts(
    n: int,
    count_by_class: Sequence[int],
    class_counts: Sequence[int],
    class_names: Sequence[str],
    task: str = "multiclass",
    name: str = "artifact",
    threshold: float | None = None,
    alpha: float = ALPHA,
    min_odds_ratio: float = MIN_ODDS_RATIO,
    min_support: int = MIN_SUPPORT,
    n_with: int | None = None,
) -> ArtifactAssociation:
    """:func:`association_table` from counts: ``n`` images, ``count_by_class`` flagged images per class and
    ``class_counts`` images per class (positives per label for multilabel; then pass ``n_with``, the flagged images,
    which the per-label counts do not determine). Everything the report says follows from these counts, which is
    why audits of shards merge exactly (:func:`merge_counts`).

    Example:
        >>> a = association_from_counts(100, [5, 30], [50, 50], ["benign", "melanoma"], "binary")
        >>> a.predictive_classes, round(a.p_class_given_artifact[1], 2)
        (['melanoma'], 0.86)
    """
    k = len(class_names)
    with_c = np.asarray(count_by_class, dtype=np.int64).reshape(k)
    tot_c = np.asarray(class_counts, dtype=np.int64).reshape(k)
    clean_c = tot_c - with_c
    if n_with is None:
        if task == "multilabel":
            raise ValueError("multilabel counts need n_with (images may carry several labels or none)")
        n_with = int(with_c.sum())
    n_with = int(n_with)
    # binary one-vs-rest tables of class 0 and class 1 are mirror images: one test, not two
    n_tests = 1 if task == "binary" else max(k, 1)
    odds, pvals = [], []
    for c in range(k):
        a, b = int(with_c[c]), n_with - int(with_c[c])  # artifact & c, artifact & not c
        cc, d = int(clean_c[c]), (n - n_with) - int(clean_c[c])  # clean & c, clean & not c
        odds.append(((a + 0.5) * (d + 0.5)) / ((b + 0.5) * (cc + 0.5)))
        p = stats.fisher_exact([[a, b], [cc, d]])[1] if n else 1.0
        pvals.append(min(1.0, float(p) * n_tests))
    p_c = tot_c / max(n, 1)
    p_c_a = with_c / n_with if n_with else np.full(k, np.nan)
    p_c_clean = clean_c / (n - n_with) if n > n_with else np.full(k, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        lift = np.where(p_c > 0, p_c_a / np.where(p_c > 0, p_c, 1), np.nan)
        prev_c = np.where(tot_c > 0, with_c / np.maximum(tot_c, 1), np.nan)
    predictive = [
        class_names[c] for c in range(k) if pvals[c] < alpha and odds[c] >= min_odds_ratio and with_c[c] >= min_support
    ]
    chi2 = chi2_p = cramers_v = mi = None
    if task != "multilabel":
        table = np.stack([with_c, clean_c]).astype(float)
        chi2, chi2_p, cramers_v, mi = _independence(table)
    return ArtifactAssociation(
        name=name,
        threshold=threshold,
        n_with=n_with,
        prevalence=n_with / max(n, 1),
        count_by_class=[int(x) for x in with_c],
        prevalence_by_class=[float(x) for x in prev_c],
        p_class_given_artifact=[float(x) for x in p_c_a],
        p_class_given_clean=[float(x) for x in p_c_clean],
        p_class=[float(x) for x in p_c],
        lift=[float(x) for x in lift],
        odds_ratio=[float(x) for x in odds],
        p_value=pvals,
        chi2=chi2,
        chi2_p=chi2_p,
        cramers_v=cramers_v,
        mutual_information=mi,
        predictive_classes=predictive,
    )


def _independence(table: np.ndarray) -> tuple[float, float, float, float]:
    """Chi-square (no continuity correction), its p, Cramér's V and mutual information (bits) of a 2 x K table."""
    table = table[:, table.sum(0) > 0]  # empty classes carry no information and break the expected counts
    n = table.sum()
    if n == 0 or table.shape[1] < 2 or (table.sum(1) == 0).any():
        return 0.0, 1.0, 0.0, 0.0  # artifact never or always present (or one class): independent by construction
    chi2, p, _, _ = stats.chi2_contingency(table, correction=False)
    v = math.sqrt(chi2 / (n * (min(table.shape) - 1)))
    joint = table / n
    outer = joint.sum(1, keepdims=True) * joint.sum(0, keepdims=True)
    nz = joint > 0
    mi = float((joint[nz] * np.log2(joint[nz] / outer[nz])).sum())
    return float(chi2), float(p), float(v), mi


def _verdicts(assoc: ArtifactAssociation, class_names: Sequence[str]) -> list[str]:
    out = []
    for c, name in enumerate(class_names):
        if name not in assoc.predictive_classes:
            continue
        subject = "images annotated with an artifact" if assoc.name == ANNOTATED else f"images with {assoc.name}"
        out.append(
            f"{assoc.name}: {100 * assoc.p_class_given_artifact[c]:.0f} % of {subject} are {name} vs "
            f"{100 * assoc.p_class[c]:.0f} % overall (n = {assoc.n_with}; odds ratio "
            f"{assoc.odds_ratio[c]:.1f}, lift {assoc.lift[c]:.2f}, Fisher p = {assoc.p_value[c]:.1e}) -- "
            "label-predictive: a model can learn it as a shortcut"
        )
    return out


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


# ------------------------------------------------------------------------------------------------- collection
class _Collector:
    """Accumulates images into same-shape batches, runs the detectors, keeps flags, labels and annotations."""

    def __init__(
        self,
        detectors: dict[str, tuple[Detector, float]],
        denormalize: Callable[[torch.Tensor], torch.Tensor] | None,
        batch_size: int,
    ) -> None:
        self.detectors = detectors
        self.denormalize = denormalize
        self.batch_size = batch_size
        self.flags: dict[str, list[np.ndarray]] = {name: [] for name in detectors}
        self.labels: list[np.ndarray] = []
        self.annotations: list[np.ndarray] = []
        self.has_annotations = True
        self._images: list[torch.Tensor] = []
        self.n = 0

    def add(self, images: torch.Tensor, labels: np.ndarray, annotations: np.ndarray | None) -> None:
        if self._images and self._images[0].shape[1:] != images.shape[1:]:
            self.flush()  # detectors need one shape per batch; raw datasets may mix sizes
        self._images.append(images)
        self.labels.append(labels)
        if annotations is None:
            self.has_annotations = False
        else:
            self.annotations.append(annotations)
        self.n += len(images)
        if sum(len(x) for x in self._images) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        if not self._images:
            return
        x = torch.cat(self._images).detach().float().cpu()
        self._images = []
        if self.denormalize is not None:
            x = self.denormalize(x)
        if x.min() < -0.25 or x.max() > 1.25:
            raise ValueError(
                f"audit images must be in [0, 1] but range over [{x.min():.2f}, {x.max():.2f}]; they look normalized: "
                "pass denormalize=datamodule.denormalize (audit_datamodule does this for you)"
            )
        x = x.clamp(0.0, 1.0)
        for name, (fn, threshold) in self.detectors.items():
            scores, _ = fn(x)
            self.flags[name].append((scores >= threshold).numpy())


def _split_item(item: Any) -> tuple[torch.Tensor, Any, Any]:
    """``(image(s), target(s), artifact flag(s) or None)`` of a dataset item or a collated batch."""
    try:
        read = read_item(item)
    except (KeyError, TypeError) as err:
        raise ValueError(str(err)) from None
    return read["image"], read["target"], read.get("artifact")


def _as_batch(image: Any, target: Any, flag: Any, task: str) -> tuple[torch.Tensor, np.ndarray, np.ndarray | None]:
    image = torch.as_tensor(image)
    single = image.ndim == 3
    if single:
        image = image[None]
    if image.ndim != 4:
        raise ValueError(f"images must be (C, H, W) or (N, C, H, W), got {tuple(image.shape)}")
    t = torch.as_tensor(target).detach().cpu().numpy()
    if task == "multilabel":
        t = t.reshape(len(image), -1)
    else:
        t = t.reshape(len(image))
    a = None if flag is None else torch.as_tensor(flag).detach().cpu().numpy().astype(bool).reshape(len(image))
    return image, t, a


def audit_dataset(
    items: Iterable[Any],
    detectors: Sequence[str] | dict[str, Detector] = ("ring",),
    class_names: Sequence[str] | None = None,
    denormalize: Callable[[torch.Tensor], torch.Tensor] | None = None,
    threshold: float | dict[str, float] | None = None,
    max_samples: int | None = None,
    task: str = "multiclass",
    batch_size: int = 64,
    alpha: float = ALPHA,
    min_odds_ratio: float = MIN_ODDS_RATIO,
    min_support: int = MIN_SUPPORT,
) -> AuditReport:
    """Audit artifact prevalence and label association over ``items``.

    Args:
        items: a dataset, a list or a DataLoader yielding dict items/batches (``image``, ``target``, optional
            ``artifact``, per ``docs/CONTRACTS.md``) or ``(image, target)`` pairs. Images are ``(C, H, W)`` or
            batches ``(N, C, H, W)``, in [0, 1] unless ``denormalize`` is given.
        detectors: names in :data:`lit_xai.artifacts.DETECTORS`, or a dict name -> detector function.
        class_names: label names; default ``class_0 ...`` sized by the largest label seen.
        denormalize: maps model-input images back to [0, 1] (e.g. ``datamodule.denormalize``).
        threshold: score threshold, one for all detectors or per name; default each detector's own.
        max_samples: stop after this many images (the *first* ones; :func:`audit_datamodule` samples evenly).
        task: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        alpha, min_odds_ratio, min_support: criteria for "label-predictive" (module docstring).

    Returns:
        An :class:`AuditReport`. Items that raise while being read are counted in ``n_failed``.

    Example:
        >>> import torch
        >>> from lit_xai.artifacts import insert_ring
        >>> skin = torch.tensor([0.85, 0.62, 0.5])[None, :, None, None].expand(40, 3, 32, 32).clone()
        >>> ringed, _ = insert_ring(skin[:20], torch.Generator().manual_seed(0))
        >>> items = [(img, 1) for img in ringed] + [(img, 0) for img in skin[20:]]
        >>> report = audit_dataset(items, class_names=["benign", "melanoma"], task="binary")
        >>> report.label_predictive("ring"), report.verdicts[0][:50]
        (True, 'ring: 100 % of images with ring are melanoma vs 50')
    """
    counts = count_dataset(items, detectors, class_names, denormalize, threshold, max_samples, task, batch_size)
    return report_from_counts(counts, alpha, min_odds_ratio, min_support)


def count_dataset(
    items: Iterable[Any],
    detectors: Sequence[str] | dict[str, Detector] = ("ring",),
    class_names: Sequence[str] | None = None,
    denormalize: Callable[[torch.Tensor], torch.Tensor] | None = None,
    threshold: float | dict[str, float] | None = None,
    max_samples: int | None = None,
    task: str = "multiclass",
    batch_size: int = 64,
) -> AuditCounts:
    """The raw, mergeable counts of :func:`audit_dataset` (same arguments, no criteria): images, failures, images
    per class and flagged images per class for each detector. :func:`report_from_counts` turns them into the
    report; :func:`merge_counts` adds the counts of shards.

    Example:
        >>> import torch
        >>> counts = count_dataset([(torch.rand(3, 16, 16), i % 2) for i in range(6)], class_names=["a", "b"])
        >>> counts.n_images, counts.class_counts
        (6, [3, 3])
    """
    if task not in ("binary", "multiclass", "multilabel"):
        raise ValueError(f"task must be 'binary', 'multiclass' or 'multilabel', got {task!r}")
    if max_samples is not None and max_samples < 1:
        raise ValueError(f"max_samples must be >= 1 or None, got {max_samples}")
    chosen = _resolve_detectors(detectors, threshold)
    collector = _Collector(chosen, denormalize, batch_size)
    failures: list[str] = []
    n_failed = 0
    iterator = iter(items)
    position = consecutive = 0

    def fail(message: str) -> None:
        nonlocal n_failed
        n_failed += 1
        if len(failures) < _MAX_FAILURE_MESSAGES:
            failures.append(message)

    while max_samples is None or collector.n < max_samples:
        try:
            item = next(iterator)
        except StopIteration:
            break
        except Exception as err:  # unreadable file, broken decode, ...: count it, keep going
            fail(f"item/batch {position}: {type(err).__name__}: {err}")
            position += 1
            consecutive += 1
            if consecutive >= _MAX_CONSECUTIVE_FAILURES:
                failures.append(f"stopped after {consecutive} consecutive failures")
                break
            continue
        position += 1
        if isinstance(item, _Failure):
            fail(str(item))
            continue
        if item is None:
            fail(f"item/batch {position - 1}: got None")
            continue
        consecutive = 0
        image, target, flag = _as_batch(*_split_item(item), task=task)
        finite = finite_rows(image) if image.is_floating_point() else None
        if finite is not None and not bool(finite.all()):  # NaN/Inf images are failures, not "no artifact"
            for row in (~finite).nonzero().flatten().tolist():
                fail(f"item/batch {position - 1}, image {row}: contains NaN/Inf")
            kept = finite.numpy()
            image, target, flag = image[finite], target[kept], None if flag is None else flag[kept]
            if len(image) == 0:
                continue
        if max_samples is not None and collector.n + len(image) > max_samples:
            keep = max_samples - collector.n
            image, target, flag = image[:keep], target[:keep], None if flag is None else flag[:keep]
        collector.add(image, target, flag)
    collector.flush()
    return _counts(collector, failures, n_failed, class_names, task)


def _resolve_detectors(
    detectors: Sequence[str] | dict[str, Detector], threshold: float | dict[str, float] | None
) -> dict[str, tuple[Detector, float]]:
    if isinstance(detectors, str):
        detectors = (detectors,)
    named = dict(detectors) if isinstance(detectors, dict) else {name: get_detector(name) for name in detectors}
    if not named:
        raise ValueError("give at least one detector, e.g. detectors=('ring',)")
    out = {}
    for name, fn in named.items():
        if isinstance(threshold, dict):
            t = threshold.get(name, DEFAULT_THRESHOLDS.get(name))
        else:
            t = threshold if threshold is not None else DEFAULT_THRESHOLDS.get(name)
        if t is None:
            raise ValueError(f"no default threshold for custom detector {name!r}; pass threshold={{{name!r}: ...}}")
        out[name] = (fn, float(t))
    return out


def _counts(
    col: _Collector, failures: list[str], n_failed: int, class_names: Sequence[str] | None, task: str
) -> AuditCounts:
    if col.n == 0:
        labels = np.zeros((0, len(class_names or [])) if task == "multilabel" else 0)
    else:
        labels = np.concatenate(col.labels)
    if class_names is None:
        k = labels.shape[1] if task == "multilabel" and labels.ndim == 2 else int(labels.max()) + 1 if col.n else 0
        k = max(k, 2) if task == "binary" else k
    else:
        k = len(class_names)
    annotations = np.concatenate(col.annotations) if col.has_annotations and col.annotations else None
    artifacts: dict[str, dict[str, Any]] = {}
    class_counts: np.ndarray = np.zeros(k, np.int64)
    for name, (_, t) in col.detectors.items():
        flags = np.concatenate(col.flags[name]) if col.flags[name] else np.zeros(0, bool)
        with_c, class_counts = _table_counts(flags, labels, k, task)
        artifacts[name] = {
            "threshold": t,
            "n_with": int(flags.sum()),
            "count_by_class": [int(x) for x in with_c],
            "true_positive": None if annotations is None else int((flags & annotations).sum()),
        }
    annotated = None
    if annotations is not None:
        with_c, class_counts = _table_counts(annotations, labels, k, task)
        annotated = {"n_with": int(annotations.sum()), "count_by_class": [int(x) for x in with_c]}
    return AuditCounts(
        n_images=col.n,
        n_failed=n_failed,
        failures=list(failures),
        task=task,
        class_names=None if class_names is None else [str(c) for c in class_names],
        class_counts=[int(x) for x in class_counts],
        artifacts=artifacts,
        annotated=annotated,
    )


def report_from_counts(
    counts: AuditCounts,
    alpha: float = ALPHA,
    min_odds_ratio: float = MIN_ODDS_RATIO,
    min_support: int = MIN_SUPPORT,
) -> AuditReport:
    """The :class:`AuditReport` of (possibly merged) :class:`AuditCounts` under the "label-predictive" criteria.

    Example:
        >>> import torch
        >>> counts = count_dataset([(torch.rand(3, 16, 16), i % 2) for i in range(6)], class_names=["a", "b"])
        >>> report_from_counts(counts).n_images
        6
    """
    k = len(counts.class_counts)
    class_names = list(counts.class_names) if counts.class_names is not None else [f"class_{c}" for c in range(k)]
    task = counts.task
    kwargs = {"alpha": alpha, "min_odds_ratio": min_odds_ratio, "min_support": min_support, "task": task}
    n = counts.n_images
    artifacts: dict[str, ArtifactAssociation] = {}
    annotated = counts.annotated
    for name, a in counts.artifacts.items():
        assoc = association_from_counts(
            n, a["count_by_class"], counts.class_counts, class_names, name=name, threshold=a["threshold"],
            n_with=a["n_with"], **kwargs,
        )
        if annotated is not None:
            tp, flagged, truth = float(a["true_positive"]), a["n_with"], annotated["n_with"]
            assoc.agreement = {
                "precision": tp / flagged if flagged else float("nan"),
                "recall": tp / truth if truth else float("nan"),
                "n_annotated": float(truth),
            }
        artifacts[name] = assoc
    if annotated is not None:
        artifacts[ANNOTATED] = association_from_counts(
            n, annotated["count_by_class"], counts.class_counts, class_names, name=ANNOTATED,
            n_with=annotated["n_with"], **kwargs,
        )
    verdicts = [v for a in artifacts.values() for v in _verdicts(a, class_names)]
    return AuditReport(
        n_images=n,
        n_failed=counts.n_failed,
        failures=list(counts.failures),
        class_names=class_names,
        task=task,
        class_counts=list(counts.class_counts),
        artifacts=artifacts,
        verdicts=verdicts,
        criteria={"alpha": alpha, "min_odds_ratio": min_odds_ratio, "min_support": float(min_support)},
    )


# ------------------------------------------------------------------------------------------------- datamodules
class _Failure:
    """Marker yielded in place of an item that raised, so the audit counts it with its dataset index."""

    def __init__(self, index: int, err: Exception) -> None:
        self.message = f"index {index}: {type(err).__name__}: {err}"

    def __str__(self) -> str:
        return self.message


def _items(dataset: Any, indices: Sequence[int]) -> Iterator[Any]:
    """Items ``indices`` of a map-style dataset; a failing item becomes a :class:`_Failure`, not an exception."""
    for i in indices:
        try:
            yield dataset[i]
        except Exception as err:
            yield _Failure(i, err)


def eval_dataset(dataset: Any, dm: Any) -> Any:
    """``dataset`` as stored, not augmented: a shallow copy with the datamodule's evaluation transform when both
    offer one (the datamodule is untouched), else ``dataset`` itself."""
    if hasattr(dataset, "transform") and callable(getattr(dm, "transform", None)):
        dataset = copy.copy(dataset)
        dataset.transform = dm.transform(train=False)
    return dataset


def _split_dataset(dm: Any, split: str, augmented: bool) -> Any:
    """The split's dataset (:func:`lit_xai.contracts.split_dataset`: ``dm.dataset(split)``, else its loader's)."""
    if hasattr(dm, "setup") and not (hasattr(dm, "dataset") and callable(dm.dataset)):
        dm.setup(None)
    ds = split_dataset(dm, split)
    # audit the stored images, not a random augmentation of them
    return ds if augmented else eval_dataset(ds, dm)


def sample_indices(
    n: int, max_samples: int | None = None, seed: int = 0, shard: tuple[int, int] | None = None
) -> list[int]:
    """The item indices an audit of a dataset of ``n`` items reads: a seeded random subset of ``max_samples``
    (sorted, so a dataset ordered by class is still sampled fairly; all items when ``max_samples`` is None), and of
    those the contiguous block ``shard=(rank, world_size)``. The blocks of all ranks partition the subset, so their
    counts merge into the whole audit (:func:`merge_counts`), and failure messages merged by rank keep their order.

    Example:
        >>> sample_indices(10, shard=(0, 3)), sample_indices(10, shard=(2, 3))
        ([0, 1, 2, 3], [7, 8, 9])
        >>> len(sample_indices(1000, max_samples=64, seed=1))
        64
    """
    indices = np.arange(n)
    if max_samples is not None and max_samples < n:
        indices = np.sort(np.random.default_rng(seed).choice(n, size=max_samples, replace=False))
    if shard is not None:
        rank, world = (int(v) for v in shard)
        if world < 1 or not 0 <= rank < world:
            raise ValueError(f"shard must be (rank, world_size) with 0 <= rank < world_size, got {tuple(shard)}")
        indices = np.array_split(indices, world)[rank]
    return [int(i) for i in indices]


def count_sample(
    dataset: Any,
    max_samples: int | None = None,
    seed: int = 0,
    shard: tuple[int, int] | None = None,
    cache_dir: str | os.PathLike | None = None,
    detectors: Sequence[str] | dict[str, Detector] = ("ring",),
    class_names: Sequence[str] | None = None,
    denormalize: Callable[[torch.Tensor], torch.Tensor] | None = None,
    threshold: float | dict[str, float] | None = None,
    task: str = "multiclass",
    batch_size: int = 64,
    cache_key: str | None = None,
) -> AuditCounts:
    """:func:`count_dataset` on the items :func:`sample_indices` picks (one rank's shard with ``shard``), read from
    / written to an on-disk cache with ``cache_dir``.

    The cache entry is keyed by :func:`dataset_fingerprint` (file names, sizes and modification times where the
    dataset exposes its files, else its length; plus a hash of a few items as the detectors see them, after
    ``denormalize``), ``cache_key``, the detectors and their thresholds, the task and class names,
    ``max_samples``, ``seed`` and ``shard``: a second run or a resume over unchanged data skips the audit; any
    change recomputes it. A dataset that names no files has no identity the fingerprint can trust (two generated
    sets of one length can share the few hashed items): it is cached only under :func:`dataset_identity` (its
    in-memory pixels hashed, or its own ``cache_identity``) or a ``cache_key`` the caller vouches for, else counted
    afresh.

    Args:
        dataset: a map-style dataset (items per ``docs/CONTRACTS.md`` or ``(image, target)`` pairs).
        shard: ``(rank, world_size)``: count only this rank's block of the sampled items.
        cache_dir: folder of the cache (created), e.g. :func:`default_cache_dir`; ``None`` = no cache.
        cache_key: the identity of a dataset without files that :func:`dataset_identity` cannot tell (required to
            cache one); added to the key of any dataset.
        max_samples, seed, detectors, class_names, denormalize, threshold, task, batch_size: see
            :func:`audit_dataset` and :func:`sample_indices`.

    Example:
        >>> import tempfile, torch
        >>> data = [(torch.rand(3, 16, 16), i % 2) for i in range(10)]
        >>> folder = tempfile.mkdtemp()
        >>> parts = [count_sample(data, shard=(r, 2), cache_dir=folder, cache_key="toy v1") for r in range(2)]
        >>> again = count_sample(data, shard=(1, 2), cache_dir=folder, cache_key="toy v1")
        >>> merge_counts(parts) == count_sample(data), again.from_cache
        (True, True)
        >>> count_sample(data, shard=(1, 2), cache_dir=folder).from_cache  # no files, no key: counted afresh
        False
    """
    indices = sample_indices(len(dataset), max_samples, seed, shard)
    entry = None
    if cache_key is None:
        cache_key = dataset_identity(dataset) if cache_dir is not None else None
    if cache_dir is not None and cache_key is None and dataset_files(dataset) is None:
        cache_dir = None
    if cache_dir is not None:
        chosen = _resolve_detectors(detectors, threshold)
        key = {
            "version": _CACHE_VERSION,
            "cache_key": cache_key,
            "dataset": dataset_fingerprint(dataset, denormalize=denormalize, seed=seed),
            "detectors": {name: [_callable_name(fn), t] for name, (fn, t) in chosen.items()},
            "task": task,
            "class_names": None if class_names is None else [str(c) for c in class_names],
            "max_samples": max_samples,
            "seed": seed,
            "shard": None if shard is None else [int(v) for v in shard],
        }
        entry = Path(cache_dir) / f"audit-{_digest(json.dumps(key, sort_keys=True))[:40]}.json"
        cached = _read_cache(entry, key)
        if cached is not None:
            return cached
    counts = count_dataset(
        _items(dataset, indices), detectors, class_names, denormalize, threshold, None, task, batch_size
    )
    if entry is not None:
        _write_cache(entry, key, counts)
    return counts


def audit_sample(
    dataset: Any,
    max_samples: int | None = None,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    alpha: float = ALPHA,
    min_odds_ratio: float = MIN_ODDS_RATIO,
    min_support: int = MIN_SUPPORT,
    **kwargs: Any,
) -> AuditReport:
    """:func:`audit_dataset` on a seeded random subset of ``max_samples`` items of a map-style dataset (sorted
    indices, so a dataset ordered by class is still sampled fairly); a failing item is counted, not raised. With
    ``cache_dir`` the counts are cached on disk (see :func:`count_sample`, which takes the other ``kwargs``).

    Example:
        >>> import torch
        >>> data = [(torch.rand(3, 16, 16), i % 2) for i in range(10)]
        >>> audit_sample(data, max_samples=6, class_names=["a", "b"]).n_images
        6
    """
    counts = count_sample(dataset, max_samples, seed, cache_dir=cache_dir, **kwargs)
    return report_from_counts(counts, alpha, min_odds_ratio, min_support)


# ------------------------------------------------------------------------------------------------- cache
_CACHE_VERSION = 1
_FINGERPRINT_ITEMS = 4


def default_cache_dir() -> Path:
    """Where audits are cached by default: ``$LIT_XAI_CACHE/audit``, else ``$XDG_CACHE_HOME/lit_xai/audit``, else
    ``~/.cache/lit_xai/audit`` (outside the run's log folder, so a new run over the same data hits it too)."""
    if os.environ.get("LIT_XAI_CACHE"):
        return Path(os.environ["LIT_XAI_CACHE"]) / "audit"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lit_xai" / "audit"


def dataset_files(dataset: Any) -> list[str] | None:
    """The image files of ``dataset`` in item order, where it exposes them: a ``lit_xai`` dataset's
    ``reader.paths``, ``paths`` / ``files`` attributes, torchvision's ``ImageFolder.samples``, through
    ``torch.utils.data.Subset``; ``None`` otherwise.

    Example:
        >>> from lit_xai.datamodules.base import FileImageReader
        >>> class Files:
        ...     reader = FileImageReader(["a.jpg", "b.jpg"])
        >>> dataset_files(Files())
        ['a.jpg', 'b.jpg']
    """
    inner, indices = getattr(dataset, "dataset", None), getattr(dataset, "indices", None)
    if inner is not None and indices is not None:  # torch.utils.data.Subset
        files = dataset_files(inner)
        return None if files is None else [files[int(i)] for i in indices]
    for owner, name in ((getattr(dataset, "reader", None), "paths"), (dataset, "paths"), (dataset, "files")):
        value = getattr(owner, name, None) if owner is not None else None
        if isinstance(value, (list, tuple)) and all(isinstance(v, (str, os.PathLike)) for v in value[:8]):
            return [str(v) for v in value]
    samples = getattr(dataset, "samples", None)
    if isinstance(samples, list) and samples and isinstance(samples[0], tuple):
        return [str(s[0]) for s in samples]
    return None


def dataset_identity(dataset: Any) -> str | None:
    """A trusted identity of a dataset that names no files, or ``None``: its own ``cache_identity`` string, else a
    hash of every pixel where its reader holds them in memory (``reader.images``, e.g. the generated synthetic
    splits: ~0.1 s per 50 MB), through ``torch.utils.data.Subset``.

    Example:
        >>> import numpy as np
        >>> from lit_xai.datamodules.base import ArrayImageReader
        >>> class Split:
        ...     def __init__(self, pixels):
        ...         self.reader = ArrayImageReader(pixels)
        >>> a, b = np.zeros((2, 4, 4, 3), np.uint8), np.ones((2, 4, 4, 3), np.uint8)
        >>> same, other = dataset_identity(Split(a.copy())), dataset_identity(Split(b))
        >>> dataset_identity(Split(a)) == same, dataset_identity(Split(a)) == other
        (True, False)
        >>> dataset_identity([1, 2]) is None
        True
    """
    inner, indices = getattr(dataset, "dataset", None), getattr(dataset, "indices", None)
    if inner is not None and indices is not None:  # torch.utils.data.Subset
        base = dataset_identity(inner)
        rows = np.ascontiguousarray(np.asarray(indices, dtype=np.int64)).tobytes()
        return None if base is None else f"{base}/subset-{_digest(rows)[:16]}"
    own = getattr(dataset, "cache_identity", None)
    if isinstance(own, str):
        return own
    reader = getattr(dataset, "reader", None)
    pixels = getattr(reader, "images", None)
    if isinstance(pixels, np.ndarray):
        h = hashlib.sha256(repr((pixels.shape, str(pixels.dtype))).encode())
        h.update(np.ascontiguousarray(pixels).data)
        masks = getattr(reader, "masks", None)
        if isinstance(masks, np.ndarray):
            h.update(np.ascontiguousarray(masks).data)
        return f"pixels-{h.hexdigest()}"
    return None


def dataset_fingerprint(
    dataset: Any,
    denormalize: Callable[[torch.Tensor], torch.Tensor] | None = None,
    seed: int = 0,
    num_items: int = _FINGERPRINT_ITEMS,
) -> dict[str, Any]:
    """What identifies a dataset's audit: its length; where it exposes its files (:func:`dataset_files`) a hash of
    every file's name, size and modification time (no decoding: ~1 s per 100k files) and of its ``targets``; and
    always a hash of ``num_items`` seeded items as the detectors see them (after ``denormalize``), which changes
    with the image size, the transform or the normalization. A dataset with random transforms never matches
    (safe: its audit is recomputed).

    Example:
        >>> import torch
        >>> data = [(torch.full((3, 4, 4), i / 10), i % 2) for i in range(10)]
        >>> same, fewer = dataset_fingerprint(list(data)), dataset_fingerprint(data[:9])
        >>> dataset_fingerprint(data) == same, dataset_fingerprint(data) == fewer
        (True, False)
    """
    n = len(dataset)
    out: dict[str, Any] = {"type": type(dataset).__name__, "length": n}
    files = dataset_files(dataset)
    if files is not None:
        h = hashlib.sha256()
        for path in files:
            try:
                st = os.stat(path)
                h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            except OSError as err:
                h.update(f"{path}\0{type(err).__name__}\n".encode())
        out["files"] = h.hexdigest()
    targets = getattr(dataset, "targets", None)
    if isinstance(targets, (np.ndarray, torch.Tensor, list)):
        out["targets"] = _digest(np.ascontiguousarray(np.asarray(targets, dtype=np.float64)).tobytes())
    h = hashlib.sha256()
    for i in sample_indices(n, min(num_items, n), seed + 1):
        try:
            image, target, flag = _split_item(dataset[i])
            x = torch.as_tensor(image).detach().float().cpu()
            x = denormalize(x[None] if x.ndim == 3 else x) if denormalize is not None else x
            h.update(np.ascontiguousarray(x.detach().float().cpu().numpy()).tobytes())
            h.update(repr((torch.as_tensor(target).tolist(), None if flag is None else bool(flag))).encode())
        except Exception as err:  # a failing item is part of the identity (it is counted as a failure)
            h.update(f"{i}:{type(err).__name__}".encode())
    out["items"] = h.hexdigest()
    return out


def _digest(data: str | bytes) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def _callable_name(fn: Any) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__name__)}"


def _read_cache(path: Path, key: dict[str, Any]) -> AuditCounts | None:
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # absent or torn: recompute
    if stored.get("key") != json.loads(json.dumps(key)):
        return None
    try:
        counts = AuditCounts.from_dict(stored["counts"])
    except (KeyError, TypeError):
        return None
    counts.from_cache = True
    return counts


def _write_cache(path: Path, key: dict[str, Any], counts: AuditCounts) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"key": key, "counts": counts.to_dict()}))
        os.replace(tmp, path)  # atomic: a concurrent reader sees the old entry or the new one, never half
    except OSError as err:  # a read-only cache must not stop training
        warnings.warn(f"could not write the audit cache {path}: {err}", stacklevel=3)


def audit_datamodule(
    dm: Any,
    split: str = "train",
    detectors: Sequence[str] | dict[str, Detector] = ("ring",),
    threshold: float | dict[str, float] | None = None,
    max_samples: int | None = None,
    seed: int = 0,
    augmented: bool = False,
    batch_size: int = 64,
    alpha: float = ALPHA,
    min_odds_ratio: float = MIN_ODDS_RATIO,
    min_support: int = MIN_SUPPORT,
    cache_dir: str | os.PathLike | None = None,
) -> AuditReport:
    """Audit one split of a datamodule (``class_names``, ``task``, ``denormalize`` and ``dataset(split)``).

    Args:
        dm: a :class:`lit_xai.datamodules.ImageDataModule` (or anything exposing the same names).
        split: "train", "val" or "test".
        max_samples: audit a deterministic, seeded random subset of this many items (sorted indices), so a
            split ordered by class is still sampled fairly; ``None`` audits everything.
        augmented: audit images as the training loader sees them; default ``False`` swaps in the evaluation
            transform (on a shallow copy of the dataset; the datamodule is untouched).
        detectors, threshold, alpha, min_odds_ratio, min_support: see :func:`audit_dataset`.
        cache_dir: cache the counts there (see :func:`count_sample`); ``None`` = no cache.

    Example:
        >>> from lit_xai.datamodules import SyntheticShortcutDataModule
        >>> dm = SyntheticShortcutDataModule(num_train=200, num_val=8, num_test=8, image_size=32)
        >>> audit_datamodule(dm, "train").label_predictive("ring")
        True
    """
    for name in ("class_names", "task", "denormalize"):
        if not hasattr(dm, name):
            raise ValueError(f"{type(dm).__name__} has no {name!r}; use audit_dataset(...) with explicit arguments")
    report = audit_sample(
        _split_dataset(dm, split, augmented),
        max_samples=max_samples,
        seed=seed,
        detectors=detectors,
        class_names=list(dm.class_names),
        denormalize=dm.denormalize,
        threshold=threshold,
        task=str(dm.task),
        batch_size=batch_size,
        alpha=alpha,
        min_odds_ratio=min_odds_ratio,
        min_support=min_support,
        cache_dir=cache_dir,
    )
    return add_skipped(report, dm)


def add_skipped(report: AuditReport, dm: Any) -> AuditReport:
    """Count the files ``dm`` dropped at setup (``on_bad_image="skip"``) as failures of the audit: they are failures
    of the dataset, never silently absent."""
    skipped = list(getattr(dm, "skipped", None) or [])
    if skipped:
        report.n_failed += len(skipped)
        notes = [f"skipped at setup: {path} ({reason})" for path, reason in skipped]
        report.failures = (notes + report.failures)[:_MAX_FAILURE_MESSAGES]
    return report
