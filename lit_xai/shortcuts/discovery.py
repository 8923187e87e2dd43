"""Label-free discovery of suspicious explanation clusters: find the artifact nobody registered.

Every shortcut test elsewhere in :mod:`lit_xai.shortcuts` starts from a registered detector. This module starts from
the explanations alone, as the "reveal" step of SpRAy (Lapuschkin et al. 2019) and PCX (Dreyer et al. 2024) does:
cluster the explanations of each class and rank the clusters that look like a Clever-Hans strategy.

Recipe, per class:

1. **Balanced, capped sample.** At most ``max_per_class`` explanations of the class (a seeded random subset), and at
   most as many of every other class for the label test. Clustering is per class, so a large class never swamps a
   small one, and the cost is bounded by the cap, not by the dataset.
2. **Features.** LRP maps become SpRAy features (|R| area-pooled to 16x16, each map normalised to sum 1,
   :func:`lit_xai.shortcuts.spray_features`); any ``(N, D)`` matrix can be given instead, e.g. CRP concept relevances
   of a layer (rows are normalised the same way: |x| / sum |x|). Given both, both views are clustered at once (each
   row is [concepts, map], each half summing to 1/2, :func:`explanation_features`): a group that uses the same
   concept in the same place. This is what finds the demo's ring: its LRP maps alone cluster, but the benign class's
   maps look at the border too (bright corners speak for benign), so the cluster does not predict the label; the
   concepts the two classes use there differ.
3. **Clusters at several resolutions.** One spectral embedding of the class (kNN graph, normalised Laplacian, as
   :func:`lit_xai.shortcuts.spray`), then seeded k-means for every k in ``2..max_clusters``: a small artifact group is
   a cluster at some k even when the eigengap prefers another. Clusters of size ``min_size..max_fraction * n`` are
   candidates (duplicates across k are merged).
4. **Suspicion score** of each candidate (:class:`Candidate` keeps every term):

   * ``distinct``: how much the cluster's mean looks somewhere new, measured on the maps when given (whatever was
     clustered: *where* the group looks), else on the features. The statistic is the log ratio of the mass the
     cluster's mean puts where it exceeds the rest of the class's mean to the mass the rest puts there. (SpRAy's
     focus ratio, :func:`~lit_xai.shortcuts.artifact_cluster`, looks only where the cluster puts half its mass: an
     artifact that draws less relevance than the object, as the demo's ring, is diluted by the object there.) The
     95th percentile of the same statistic on ``null_draws`` same-size random subsets of the class is subtracted
     (small groups have noisy means) and the excess is weighted by ``sqrt(size / n)``: a large consistent group
     outranks a tiny homogeneous corner of it, and the term does not grow with the number of explanations
     clustered (the imbalance guard for the score itself).
   * ``tightness``: members' mean distance to their centroid over the class's mean distance to its centroid (< 1 is
     tight). Reported, not in the score: it rewarded tiny sub-clusters over the whole artifact group (a ring of
     varying radius is less tight than a few rings of one radius), and consistency is already in ``distinct``.
   * ``specificity``: does membership predict the label? Other-class explanations (balanced: the same cap per class)
     near the cluster in the clustered space (within the 90th percentile of member distances) make it a pattern of
     the data, not of this class. It is ``in_rate / (in_rate + out_rate)`` with *rates per class* (the share of
     each other class near the cluster, then their mean), so class sizes cancel; 0.5 = not predictive, 1 = no
     other class explains itself this way, which is what an artifact in one class only gets.
   * location (maps only, reported, and ``location`` enters the score): ``border`` (share of the cluster mean's mass
     in the outer eighth of the image minus that of the rest), ``corners``, ``outside_roi`` (with ``roi_masks``: share
     outside the region of interest minus the rest's), ``offcentre`` (distance of the cluster mean's centre of mass
     from the class mean's, in half-diagonals); ``location = max(border, corners, 0) + offcentre
     (+ max(outside_roi, 0))``.

   ``score = max(distinct, 0) * (2 * specificity) * (1 + location) ** LOCATION_POWER`` (:data:`LOCATION_POWER` = 2):
   zero when the cluster looks where random subsets of the class look, large when it looks somewhere new,
   consistently, only in this class, and off the object. Location enters squared because it is what tells a small
   artifact group from an object group: a weak artifact at realistic prevalence (8-13 pool images,
   ``benchmarks/discovery_recall.py``) is as *distinct* as an object cluster of 20-50 images (the excess over the null
   times ``sqrt(size / n)``), but it sits off the object (location 0.6-0.9 against 0.1-0.3), and an object cluster
   that crosses the threshold is often causal too (pasting an object part moves the prediction), so only the score
   can keep it from the tests. :data:`SUSPICIOUS_THRESHOLD` (maps alone) and :data:`SUSPICIOUS_THRESHOLD_CONCEPTS`
   (maps beside concepts) are the default decision thresholds, measured on the clean controls and the other classes
   of ``benchmarks/discovery.py`` and ``benchmarks/discovery_recall.py``.
5. **Top-k** per class by score, skipping candidates whose Jaccard overlap with an already chosen one is 0.5 or more.

Example:
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> maps = torch.rand(80, 32, 32, generator=g) * 0.05
    >>> for i in range(80):
    ...     y, x = torch.randint(10, 16, (2,), generator=g).tolist()
    ...     maps[i, y : y + 8, x : x + 8] += 1.0  # the object, somewhere in the middle
    >>> maps[:12, :5, :5] += 3.0  # 12 images of class 0 carry something in the corner
    >>> labels = torch.tensor([0] * 40 + [1] * 40)
    >>> top = discover_candidates(maps, labels, list(range(100, 180)), top_k=1)
    >>> [(c.class_index, c.size, c.suspicious) for c in top], top[0].members == list(range(100, 112))
    ([(0, 12, True), (1, 9, False)], True)
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial.distance import cdist

from ..explainers.inputs import finite_rows
from .spray import _normalised_affinity, _smallest_laplacian_eigenpairs, kmeans, spray_features

__all__ = [
    "Candidate",
    "LOCATION_POWER",
    "SUSPICIOUS_THRESHOLD",
    "SUSPICIOUS_THRESHOLD_CONCEPTS",
    "default_threshold",
    "discover_candidates",
    "explanation_features",
]

#: exponent of ``(1 + location)`` in the score (module docstring): with 1, the best object clusters of the clean
#: controls (1.70) outscored the weak text and ruler groups (1.41-1.58); with 2 every such group clears every
#: control cluster by >= 1.26x (2.56 against 2.02; ``benchmarks/discovery_recall.py``, 3 seeds; benchmarks/README.md)
LOCATION_POWER: float = 2.0
#: default score above which a candidate is called suspicious when the maps (or features) alone are clustered
#: (``benchmarks/discovery.py``: no clean run or other class reaches it, max 1.17 measured; the square and text
#: tags of every run exceed it, min 2.81)
SUSPICIOUS_THRESHOLD: float = 1.35
#: the same with concept relevances beside the maps: classes use different concepts, so nearly every cluster is
#: label-specific (specificity ~1, the factor ``2 * specificity`` ~2) and clean runs score higher (max 2.02 measured
#: over the clean controls and other classes of both discovery benchmarks; the weak planted groups 2.56-3.70)
SUSPICIOUS_THRESHOLD_CONCEPTS: float = 2.25


@dataclass
class Candidate:
    """A suspicious explanation cluster of one class: a group a person should look at.

    Attributes:
        class_index: the class whose explanations were clustered.
        members: dataset ids of the members (from ``ids``).
        score: suspicion score (module docstring); ``suspicious`` = score >= the threshold used.
        size: number of members; ``fraction`` of the class's clustered explanations.
        rows: row indices of the members in the arrays given to :func:`discover_candidates`.
        terms: every term of the score (``distinct``, ``null95``, ``tightness``, ``specificity``, ``location``,
            ``border``, ``corners``, ``offcentre``, ``outside_roi`` when masks were given, ``k`` of the k-means run).
        focus: ``(h, w)`` bool pooled cells where the cluster puts half its relevance (maps only, else ``None``).
        rank: 0 for the class's top candidate.
    """

    class_index: int
    members: list[int]
    score: float
    size: int
    fraction: float
    rows: list[int]
    terms: dict[str, float] = field(default_factory=dict)
    focus: np.ndarray | None = None
    rank: int = 0
    suspicious: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: ``{"class", "members", "score", "size", ...}`` (the monitor adds ``"epoch"``)."""
        return {
            "class": int(self.class_index),
            "members": [int(m) for m in self.members],
            "score": round(float(self.score), 4),
            "size": int(self.size),
            "fraction": round(float(self.fraction), 4),
            "rank": int(self.rank),
            "suspicious": bool(self.suspicious),
            "terms": {k: round(float(v), 4) for k, v in self.terms.items()},
        }


def explanation_features(
    heatmaps: torch.Tensor | None = None,
    features: torch.Tensor | np.ndarray | None = None,
    size: tuple[int, int] = (16, 16),
) -> np.ndarray:
    """The matrix that is clustered: SpRAy features of ``heatmaps`` (what a map shows, *where*), or ``features``
    rows as |x| / sum |x| (e.g. concept relevances: *what*), or, when both are given, the two side by side, each half
    of a row summing to 1/2 (both views at once: a group that uses the same concept in the same place).

    Example:
        >>> explanation_features(features=torch.tensor([[1.0, -3.0], [0.0, 0.0]])).tolist()
        [[0.25, 0.75], [0.5, 0.5]]
        >>> explanation_features(torch.ones(1, 4, 4), torch.tensor([[1.0, 3.0]]), size=(2, 2)).tolist()
        [[0.125, 0.375, 0.125, 0.125, 0.125, 0.125]]
    """
    maps = spray_features(heatmaps, size) if heatmaps is not None else None
    if features is not None:
        x = np.abs(features.detach().double().cpu().numpy() if isinstance(features, torch.Tensor) else features)
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"features must be (N, D), e.g. CRP concept relevances of a layer, got {x.shape}")
        total = x.sum(1, keepdims=True)
        x = np.where(total > 0, x / np.where(total > 0, total, 1.0), 1.0 / x.shape[1])
        return x if maps is None else np.concatenate([0.5 * x, 0.5 * maps], 1)
    if maps is None:
        raise ValueError("pass heatmaps (N, H, W) or features (N, D)")
    return maps


def default_threshold(concepts: bool) -> float:
    """The default decision threshold: :data:`SUSPICIOUS_THRESHOLD_CONCEPTS` when concept relevances are clustered
    beside the maps, else :data:`SUSPICIOUS_THRESHOLD`.

    Example:
        >>> default_threshold(False), default_threshold(True)
        (1.35, 2.25)
    """
    return SUSPICIOUS_THRESHOLD_CONCEPTS if concepts else SUSPICIOUS_THRESHOLD


def _balanced_rows(labels: np.ndarray, cap: int, seed: int) -> dict[int, np.ndarray]:
    """Per class, at most ``cap`` rows (a random subset seeded per class, sorted)."""
    out = {}
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        if len(rows) > cap:
            rows = np.sort(np.random.default_rng([seed, int(c), 1]).choice(rows, cap, replace=False))
        out[int(c)] = rows
    return out


def _focus(x: np.ndarray, member: np.ndarray) -> np.ndarray:
    """The members' focus (bool, D): the fewest cells holding half the mass of their mean (shown in the picture)."""
    mean_s = x[member].mean(0)
    order = np.argsort(-mean_s, kind="stable")
    n_focus = int(np.searchsorted(np.cumsum(mean_s[order]), 0.5 * mean_s.sum()) + 1)
    focus = np.zeros(len(mean_s), dtype=bool)
    focus[order[:n_focus]] = True
    return focus


def _excess_log_ratio(x: np.ndarray, member: np.ndarray) -> float:
    """log(mass of the members' mean where it exceeds the rest's mean / mass of the rest's mean there)."""
    mean_s, mean_r = x[member].mean(0), x[~member].mean(0)
    excess = mean_s > mean_r
    return float(np.log(max(mean_s[excess].sum(), 1e-12) / max(mean_r[excess].sum(), 1e-12)))


def _null_log_ratios(x: np.ndarray, size: int, draws: int, rng: np.random.Generator) -> np.ndarray:
    """:func:`_excess_log_ratio` of ``draws`` same-size random subsets of the class (vectorised over draws)."""
    n = len(x)
    idx = np.argsort(rng.random((draws, n)), axis=1)[:, :size]
    total = x.sum(0)
    mean_s = x[idx].sum(1) / size  # a gather, not a matrix product: BLAS threads cost more than they save here
    mean_r = (total[None] - mean_s * size) / (n - size)
    excess = mean_s > mean_r
    mass_s, mass_r = (mean_s * excess).sum(1), (mean_r * excess).sum(1)
    return np.log(np.maximum(mass_s, 1e-12) / np.maximum(mass_r, 1e-12))


class _Geometry:
    """Location statistics of pooled maps: border band, corners, centre of mass, region of interest."""

    def __init__(self, size: tuple[int, int]) -> None:
        h, w = size
        band_h, band_w = max(1, round(h / 8)), max(1, round(w / 8))
        border = np.zeros((h, w), dtype=bool)
        border[:band_h], border[-band_h:], border[:, :band_w], border[:, -band_w:] = True, True, True, True
        corners = np.zeros((h, w), dtype=bool)
        ch, cw = max(1, round(h / 4)), max(1, round(w / 4))
        for ys in (slice(0, ch), slice(h - ch, h)):
            for xs in (slice(0, cw), slice(w - cw, w)):
                corners[ys, xs] = True
        self.border, self.corners = border.ravel(), corners.ravel()
        yy, xx = np.meshgrid((np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / w, indexing="ij")
        self.coords = np.stack([yy.ravel(), xx.ravel()], 1)  # (D, 2) in [0, 1]

    def centre(self, mean_map: np.ndarray) -> np.ndarray:
        return mean_map @ self.coords / max(mean_map.sum(), 1e-12)


def discover_candidates(
    heatmaps: torch.Tensor | None,
    labels: torch.Tensor | np.ndarray | Sequence[int],
    ids: Sequence[int] | None = None,
    *,
    features: torch.Tensor | np.ndarray | None = None,
    roi_masks: torch.Tensor | None = None,
    classes: Sequence[int] | None = None,
    max_per_class: int = 256,
    top_k: int = 3,
    max_clusters: int = 8,
    n_neighbors: int = 10,
    min_size: int = 4,
    max_fraction: float = 0.5,
    null_draws: int = 64,
    size: tuple[int, int] = (16, 16),
    threshold: float | None = None,
    seed: int = 0,
) -> list[Candidate]:
    """Cluster the explanations of each class and return its ``top_k`` most suspicious clusters (no detector).

    Args:
        heatmaps: ``(N, H, W)`` (or ``(N, C, H, W)``) relevance maps, e.g. LRP of each image's label or prediction;
            may be ``None`` when ``features`` are given (then there are no location terms, and ``distinct`` is
            measured on the features).
        labels: ``(N,)`` class of each explanation (the true label, or the explained class).
        ids: dataset ids reported as members (default: row numbers).
        features: optional ``(N, D)`` matrix clustered with the maps (e.g. CRP concept relevances of a layer; alone
            when ``heatmaps`` is None); the maps, when given, also provide ``distinct`` and the location terms.
        roi_masks: optional ``(N, H, W)`` bool regions of interest (e.g. the lungs): adds ``outside_roi``.
        classes: classes to examine (default: every class in ``labels``).
        max_per_class: cap on explanations clustered per class (a seeded random subset; bounds the cost).
        top_k: candidates returned per class.
        max_clusters: largest k of the k-means runs on the spectral embedding.
        n_neighbors: k of the kNN graph (keep it below the size of the smallest group to be found).
        min_size, max_fraction: candidate clusters hold ``min_size..max_fraction * n`` of the class's explanations.
        null_draws: same-size random subsets of the class behind the null of the ``distinct`` term.
        size: pooled map size of the SpRAy features.
        threshold: score from which ``Candidate.suspicious`` is True; None = :func:`default_threshold` of the view.
        seed: seeds subsampling, k-means and the null (the null per class: a class's candidates do not depend on
            the other classes' clusters).

    Returns:
        Candidates sorted by class, then by score (descending); ``rank`` counts within the class.

    Raises:
        ValueError: on inconsistent lengths or shapes.
    """
    labels_np = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels).astype(np.int64).ravel()
    n = len(labels_np)
    ids_list = list(range(n)) if ids is None else [int(i) for i in ids]
    if len(ids_list) != n:
        raise ValueError(f"got {n} labels but {len(ids_list)} ids; pass one dataset id per explanation")
    if heatmaps is not None and heatmaps.shape[0] != n:
        raise ValueError(f"got {heatmaps.shape[0]} heatmaps but {n} labels")
    if features is not None and len(features) != n:
        raise ValueError(f"got {len(features)} feature rows but {n} labels")
    if roi_masks is not None and (heatmaps is None or roi_masks.shape[0] != n):
        raise ValueError("roi_masks need the heatmaps and one (H, W) mask per explanation")
    if max_per_class < 2 * min_size or min_size < 2:
        raise ValueError(f"need min_size >= 2 and max_per_class >= 2 * min_size, got {min_size}, {max_per_class}")
    if not 0.0 < max_fraction < 1.0:
        raise ValueError(f"max_fraction must be in (0, 1), got {max_fraction}")
    # NaN/Inf explanations (NaN images, a diverged model) would form a "cluster" of their own: left out, with a word
    keep = finite_rows(heatmaps, features) if heatmaps is not None or features is not None else None
    if keep is not None and not bool(keep.all()):
        dropped = [ids_list[i] for i in (~keep).nonzero().flatten().tolist()]
        message = f"discover_candidates: {len(dropped)} explanations with NaN/Inf left out (ids {dropped[:8]})"
        warnings.warn(message, stacklevel=2)
        rows = keep.nonzero().flatten()
        heatmaps = None if heatmaps is None else heatmaps[rows.to(heatmaps.device)]
        features = None if features is None else features[rows.numpy() if isinstance(features, np.ndarray) else rows]
        roi_masks = None if roi_masks is None else roi_masks[rows.to(roi_masks.device)]
        labels_np, ids_list = labels_np[keep.numpy()], [ids_list[i] for i in rows.tolist()]
    x = explanation_features(heatmaps, features, size)
    threshold = default_threshold(heatmaps is not None and features is not None) if threshold is None else threshold
    maps = spray_features(heatmaps, size) if heatmaps is not None else None
    geometry = _Geometry(size) if maps is not None else None
    outside = None
    if roi_masks is not None and maps is not None:
        pooled_roi = F.adaptive_avg_pool2d(roi_masks.detach().float().cpu()[:, None], size)[:, 0].flatten(1).numpy()
        outside = (maps * (1.0 - pooled_roi)).sum(1)  # share of each map's |R| outside its region of interest
    with _one_blas_thread():
        found = _discover(
            x, labels_np, ids_list, maps, geometry, outside, classes, max_per_class, top_k, max_clusters, n_neighbors,
            min_size, max_fraction, null_draws, size, threshold, seed,
        )  # fmt: skip
    if keep is not None and not bool(keep.all()):  # rows index the caller's arrays, not the filtered ones
        original = keep.nonzero().flatten().tolist()
        for candidate in found:
            candidate.rows = [original[r] for r in candidate.rows]
    return found


def _one_blas_thread() -> contextlib.AbstractContextManager:
    """BLAS on one thread for the many small products here: with threads they cost 10x more on a busy machine
    (measured: a 64x256 @ 256x256 product 60 ms vs 3 ms). ``threadpoolctl`` when installed, else a no-op."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def _discover(
    x: np.ndarray,
    labels_np: np.ndarray,
    ids_list: list[int],
    maps: np.ndarray | None,
    geometry: _Geometry | None,
    outside: np.ndarray | None,
    classes: Sequence[int] | None,
    max_per_class: int,
    top_k: int,
    max_clusters: int,
    n_neighbors: int,
    min_size: int,
    max_fraction: float,
    null_draws: int,
    size: tuple[int, int],
    threshold: float,
    seed: int,
) -> list[Candidate]:
    rows_by_class = _balanced_rows(labels_np, max_per_class, seed)
    wanted = sorted(rows_by_class) if classes is None else [int(c) for c in classes]
    out: list[Candidate] = []
    for c in wanted:
        rows = rows_by_class.get(c, np.zeros(0, dtype=np.int64))
        if len(rows) < 2 * min_size:
            continue
        others = np.concatenate([r for k, r in rows_by_class.items() if k != c] or [np.zeros(0, dtype=np.int64)])
        other_labels = labels_np[others]
        found = _class_candidates(
            x, rows, others, other_labels, maps, geometry, outside, max_clusters, n_neighbors, min_size,
            max_fraction, null_draws, np.random.default_rng([seed, c]), seed,
        )  # fmt: skip
        chosen: list[dict[str, Any]] = []
        for cand in sorted(found, key=lambda d: -d["score"]):
            if len(chosen) >= top_k:
                break
            if any(len(cand["set"] & o["set"]) >= 0.5 * len(cand["set"] | o["set"]) for o in chosen):
                continue
            chosen.append(cand)
        for rank, cand in enumerate(chosen):
            member_rows = rows[np.asarray(sorted(cand["set"]))]
            out.append(
                Candidate(
                    class_index=c,
                    members=[ids_list[r] for r in member_rows],
                    score=cand["score"],
                    size=len(member_rows),
                    fraction=len(member_rows) / len(rows),
                    rows=member_rows.tolist(),
                    terms=cand["terms"],
                    focus=None if cand["focus"] is None else cand["focus"].reshape(size),
                    rank=rank,
                    suspicious=cand["score"] >= threshold,
                )
            )
    return out


def _class_candidates(
    x: np.ndarray,
    rows: np.ndarray,
    others: np.ndarray,
    other_labels: np.ndarray,
    maps: np.ndarray | None,
    geometry: _Geometry | None,
    outside: np.ndarray | None,
    max_clusters: int,
    n_neighbors: int,
    min_size: int,
    max_fraction: float,
    null_draws: int,
    rng: np.random.Generator,
    seed: int,
) -> list[dict[str, Any]]:
    xc = x[rows]
    n = len(rows)
    m = min(max_clusters, n - 1)
    clusters: dict[frozenset[int], int] = {}
    _, vectors = _smallest_laplacian_eigenpairs(_normalised_affinity(xc, min(n_neighbors, n - 1)), m, seed)
    for k in range(2, m + 1):
        emb = vectors[:, :k] / np.maximum(np.linalg.norm(vectors[:, :k], axis=1, keepdims=True), 1e-12)
        assign = kmeans(emb, k, seed=seed, n_init=4)[0]
        for j in range(k):
            members = frozenset(np.flatnonzero(assign == j).tolist())
            if min_size <= len(members) <= max_fraction * n and members not in clusters:
                clusters[members] = k
    if not clusters:
        return []
    centre_all = xc.mean(0)
    spread_all = float(np.linalg.norm(xc - centre_all, axis=1).mean())
    other_codes = np.unique(other_labels, return_inverse=True)[1] if len(others) else np.zeros(0, dtype=np.int64)
    n_other_classes = int(other_codes.max()) + 1 if len(others) else 0
    # distances of every candidate's centre to the class and to the other classes' rows, in one pass each
    member_sets = list(clusters)
    centres = np.stack([xc[list(mem)].mean(0) for mem in member_sets])
    dist_in = cdist(centres, xc)
    dist_out = cdist(centres, x[others]) if len(others) else np.zeros((len(centres), 0))
    null_cache: dict[int, tuple[float, float, float]] = {}
    class_map_mean = maps[rows].mean(0) if maps is not None else None
    # where the group looks: the maps when given (the clusters may come from other features, e.g. concepts)
    looks = maps[rows] if maps is not None else xc
    found = []
    for j, members in enumerate(member_sets):
        k = clusters[members]
        member = np.zeros(n, dtype=bool)
        member[list(members)] = True
        size = int(member.sum())
        distinct_raw = _excess_log_ratio(looks, member)
        if size not in null_cache:
            null = _null_log_ratios(looks, size, null_draws, rng)
            null_cache[size] = (float(np.quantile(null, 0.95)), float(null.mean()), float(null.std()))
        null95, null_mean, null_sd = null_cache[size]
        # the excess over what same-size random subsets reach (small groups have noisy means), weighted by
        # sqrt(fraction) so a whole consistent group outranks a tiny homogeneous corner of it; an effect, not a
        # significance: it does not grow with the number of explanations clustered
        distinct = max(distinct_raw - null95, 0.0) * math.sqrt(size / n)
        dist_members = dist_in[j, member]
        tightness = float(dist_members.mean() / max(spread_all, 1e-12))
        radius = float(np.quantile(dist_members, 0.9))
        in_rate = float((dist_in[j] <= radius).mean())
        # the rate of each other class, then their mean: every class counts once, whatever its size
        near = np.bincount(other_codes, weights=dist_out[j] <= radius, minlength=n_other_classes)
        out_rate = float((near / np.bincount(other_codes, minlength=n_other_classes)).mean()) if len(others) else 0.0
        specificity = in_rate / max(in_rate + out_rate, 1e-12)
        terms = {
            "distinct": distinct,
            "distinct_raw": distinct_raw,
            "null95": null95,
            "null_mean": null_mean,
            "null_sd": null_sd,
            "size": float(size),
            "n": float(n),
            "tightness": tightness,
            "specificity": specificity,
            "in_rate": in_rate,
            "out_rate": out_rate,
            "k": float(k),
        }
        location = 0.0
        map_focus = None
        if maps is not None and geometry is not None and class_map_mean is not None:
            mem_rows, rest_rows = rows[member], rows[~member]
            mean_s, mean_r = maps[mem_rows].mean(0), maps[rest_rows].mean(0)
            map_focus = _focus(maps[rows], member)
            terms["border"] = float(mean_s[geometry.border].sum() - mean_r[geometry.border].sum())
            terms["corners"] = float(mean_s[geometry.corners].sum() - mean_r[geometry.corners].sum())
            shift = geometry.centre(mean_s) - geometry.centre(class_map_mean)
            terms["offcentre"] = float(np.linalg.norm(shift) / math.sqrt(0.5))
            location = max(terms["border"], terms["corners"], 0.0) + terms["offcentre"]
            if outside is not None:
                terms["outside_roi"] = float(outside[mem_rows].mean() - outside[rest_rows].mean())
                location += max(terms["outside_roi"], 0.0)
        terms["location"] = location
        score = max(distinct, 0.0) * 2.0 * specificity * (1.0 + location) ** LOCATION_POWER
        found.append({"set": members, "score": float(score), "terms": terms, "focus": map_focus})
    return found
