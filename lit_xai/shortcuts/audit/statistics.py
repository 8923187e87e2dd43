"""The audit's statistics: when is an artifact "label-predictive" (a shortcut waiting to be learned)?

For each class ``c`` (one-vs-rest; per label for multilabel tasks), the 2x2 table artifact x class must show all of

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

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

from .report import ANNOTATED, ArtifactAssociation, AuditCounts, AuditReport

__all__ = [
    "ALPHA",
    "MIN_ODDS_RATIO",
    "MIN_SUPPORT",
    "association_from_counts",
    "association_table",
    "report_from_counts",
]

#: default criteria for "label-predictive" (see the module docstring)
#: default criteria for "label-predictive" (see the module docstring)
ALPHA = 1e-3
MIN_ODDS_RATIO = 3.0
MIN_SUPPORT = 10


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


def report_from_counts(
    counts: AuditCounts,
    alpha: float = ALPHA,
    min_odds_ratio: float = MIN_ODDS_RATIO,
    min_support: int = MIN_SUPPORT,
) -> AuditReport:
    """The :class:`AuditReport` of (possibly merged) :class:`AuditCounts` under the "label-predictive" criteria.

    Example:
        >>> import torch
        >>> from lit_xai.shortcuts.audit import count_dataset
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
