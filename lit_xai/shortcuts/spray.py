"""Spectral Relevance Analysis (SpRAy, Lapuschkin et al. 2019): cluster heatmaps to reveal Clever-Hans strategies.

Pipeline (CoRelAy's ``SpectralClustering`` recipe, numpy/scipy only):

1. take |R| (or positive R) per heatmap, area-pool it to ``size`` (default 16x16), normalise each to sum 1, flatten;
2. euclidean k-nearest neighbours, found in row chunks (memory ``O(chunk * N)``, never the ``N x N`` distance matrix),
   as a *sparse* symmetric binary affinity ``A = (K + K^T) / 2`` (``O(N k)`` memory);
3. normalised Laplacian ``L = I - D^-1/2 A D^-1/2``, its *smallest* eigenpairs as the *largest algebraic* ones of
   ``D^-1/2 A D^-1/2`` from the sparse Lanczos solver ``scipy.sparse.linalg.eigsh(which='LA')`` (CoRelAy's
   ``which='LM'`` can return eigenvalues from the wrong end of the spectrum, producing fake eigengaps); tiny inputs
   use the dense ``scipy.linalg.eigh``;
4. eigengap heuristic: ``k = argmax_k (lambda_k - lambda_{k-1})``, k in 1..``max_clusters``;
5. seeded k-means (k-means++ init, several restarts) on the row-normalised first ``k`` eigenvectors
   (Ng-Jordan-Weiss).

:func:`artifact_cluster` then flags a *small* cluster whose mean map puts a lot of relevance where the other
samples put little — the signature of a shortcut such as a ring, a tag or a ruler.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from scipy import linalg, sparse
from scipy.sparse.linalg import eigsh
from scipy.spatial.distance import cdist

from .reliance import relevance_in_mask

__all__ = [
    "SprayResult",
    "ClusterReport",
    "ArtifactClusterResult",
    "spray",
    "artifact_cluster",
    "spray_features",
    "kmeans",
]


@dataclass
class SprayResult:
    """Result of :func:`spray`.

    Attributes:
        labels: ``(N,)`` int cluster of each heatmap.
        eigenvalues: ``(max_clusters + 1,)`` smallest eigenvalues of the normalised Laplacian, ascending.
        n_clusters: the k used (eigengap choice unless given).
        eigengap_k: the k the eigengap heuristic suggests.
        eigengap: the gap ``lambda_k - lambda_{k-1}`` at ``eigengap_k``.
        cluster_means: ``(k, h, w)`` mean normalised heatmap of each cluster (at the pooled size, sums to 1).
        cluster_sizes: ``(k,)`` members per cluster.
        features: ``(N, h * w)`` the pooled, normalised heatmaps that were clustered.
        embedding: ``(N, k)`` row-normalised spectral embedding.
    """

    labels: np.ndarray
    eigenvalues: np.ndarray
    n_clusters: int
    eigengap_k: int
    eigengap: float
    cluster_means: np.ndarray
    cluster_sizes: np.ndarray
    features: np.ndarray
    embedding: np.ndarray
    size: tuple[int, int] = (16, 16)


def spray_features(heatmaps: torch.Tensor, size: tuple[int, int] = (16, 16), mode: str = "abs") -> np.ndarray:
    """SpRAy inputs ``(N, h * w)``: |R| (``mode="abs"``) or positive R (``"positive"``), area-pooled, sum 1.

    A map with no mass becomes uniform (it cannot be told apart from any other, so it sits in the middle).
    """
    if heatmaps.ndim == 4:
        heatmaps = heatmaps.sum(1)
    if heatmaps.ndim != 3:
        raise ValueError(f"heatmaps must be (N, H, W) or (N, C, H, W), got {tuple(heatmaps.shape)}")
    r = heatmaps.detach().float().cpu()
    if mode == "abs":
        r = r.abs()
    elif mode == "positive":
        r = r.clamp_min(0.0)
    else:
        raise ValueError(f"mode must be 'abs' or 'positive', got {mode!r}")
    # adaptive average pooling = area pooling when the size divides the map, close to it otherwise
    pooled = F.adaptive_avg_pool2d(r[:, None], size)[:, 0].flatten(1).double().cpu().numpy()
    total = pooled.sum(1, keepdims=True)
    uniform = np.full_like(pooled, 1.0 / pooled.shape[1])
    return np.where(total > 0, pooled / np.where(total > 0, total, 1.0), uniform)


def kmeans(
    x: np.ndarray, k: int, seed: int = 0, n_init: int = 10, max_iter: int = 100
) -> tuple[np.ndarray, np.ndarray, float]:
    """Seeded k-means (k-means++ init, best of ``n_init`` restarts by inertia). Returns ``(labels, centres, inertia)``.

    Example:
        >>> import numpy as np
        >>> x = np.r_[np.zeros((5, 2)), np.ones((5, 2))]
        >>> labels, _, inertia = kmeans(x, 2)
        >>> len(set(labels[:5])), len(set(labels[5:])), bool(labels[0] != labels[5]), inertia
        (1, 1, True, 0.0)
    """
    n = len(x)
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, {n}], got {k}")
    rng = np.random.default_rng(seed)
    best: tuple[np.ndarray, np.ndarray, float] | None = None
    for _ in range(n_init):
        centres = _kmeans_pp(x, k, rng)
        labels = np.zeros(n, dtype=np.int64)
        for it in range(max_iter):
            d = cdist(x, centres, "sqeuclidean")
            new = d.argmin(1)
            if it > 0 and np.array_equal(new, labels):
                break
            labels = new
            for c in range(k):
                members = x[labels == c]
                # an emptied cluster restarts at the point worst served by its centre
                centres[c] = members.mean(0) if len(members) else x[d.min(1).argmax()]
        inertia = float(cdist(x, centres, "sqeuclidean")[np.arange(n), labels].sum())
        if best is None or inertia < best[2] - 1e-12:
            best = (labels.copy(), centres.copy(), inertia)
    assert best is not None
    return best


def _kmeans_pp(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    centres = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        d = cdist(x, np.asarray(centres), "sqeuclidean").min(1)
        total = d.sum()
        idx = rng.choice(len(x), p=d / total) if total > 0 else rng.integers(len(x))
        centres.append(x[idx])
    return np.array(centres, dtype=np.float64)


#: rows of the distance matrix computed at once by the kNN search (bounds its memory: ``_KNN_CHUNK * N`` floats)
_KNN_CHUNK = 512
#: extra candidates per row re-ranked with exact distances, so ties and rounding order match a dense ``cdist``
_KNN_SLACK = 8


def _knn(features: np.ndarray, k: int) -> np.ndarray:
    """``(N, k)`` indices of each row's k nearest other rows (euclidean; ties broken by index).

    Candidates come in row chunks from one matrix product each (``|a|^2 + |b|^2 - 2 a.b``); the ``k + slack`` best
    of a row are then re-ranked by ``cdist`` distances with a stable sort on (distance, index), which reproduces the
    neighbour lists of a full ``cdist`` + stable ``argsort``. A row whose k-th distance is (within rounding) as
    large as its last candidate's may have tied points outside the candidates: it is ranked against all rows.
    """
    n = len(features)
    sq = np.einsum("ij,ij->i", features, features)
    n_cand = min(k + _KNN_SLACK, n - 1)
    out = np.empty((n, k), dtype=np.int64)
    everyone = np.arange(n)
    for start in range(0, n, _KNN_CHUNK):
        rows = features[start : start + _KNN_CHUNK]
        idx = np.arange(start, start + len(rows))
        d2 = sq[idx, None] + sq[None, :] - 2.0 * (rows @ features.T)
        d2[np.arange(len(rows)), idx] = np.inf  # self is not a neighbour
        cand = np.argpartition(d2, n_cand - 1, axis=1)[:, :n_cand]
        cand_d2_max = np.take_along_axis(d2, cand, axis=1).max(1)
        tol = 1e-9 * (sq[idx] + sq.max()) + 1e-12  # rounding of the matrix-product distances
        for r, i in enumerate(idx):
            pool = cand[r]
            dist = cdist(features[i : i + 1], features[pool])[0]
            order = np.lexsort((pool, dist))
            if n_cand < n - 1 and cand_d2_max[r] <= dist[order[k - 1]] ** 2 + tol[r]:
                pool = everyone[everyone != i]  # ties may reach beyond the candidates
                dist = cdist(features[i : i + 1], features[pool])[0]
                order = np.lexsort((pool, dist))
            out[i] = pool[order[:k]]
    return out


def _normalised_affinity(features: np.ndarray, n_neighbors: int) -> sparse.csr_matrix:
    """Sparse ``D^-1/2 A D^-1/2`` of the symmetric binary kNN graph (``L = I -`` this)."""
    n = len(features)
    k = min(n_neighbors, n - 1)
    nearest = _knn(features, k)
    knn = sparse.csr_matrix((np.ones(n * k), (np.repeat(np.arange(n), k), nearest.ravel())), shape=(n, n))
    affinity = ((knn + knn.T) * 0.5).tocsr()
    inv_sqrt = 1.0 / np.sqrt(np.asarray(affinity.sum(1)).ravel())  # every node has >= k > 0 neighbours
    scale = sparse.diags(inv_sqrt)
    return (scale @ affinity @ scale).tocsr()


def _smallest_laplacian_eigenpairs(
    norm_affinity: sparse.csr_matrix, m: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``m + 1`` smallest eigenpairs of ``L = I - norm_affinity``, ascending."""
    n = norm_affinity.shape[0]
    if n <= max(4 * (m + 1), 64):  # too small for Lanczos to pay off (and ARPACK needs ncv < n)
        lap = np.eye(n) - norm_affinity.toarray()
        # only the m + 1 smallest eigenpairs: LAPACK's bisection driver (evx) is faster than a full solve
        return linalg.eigh(lap, subset_by_index=[0, m], driver="evx")
    # largest algebraic eigenvalues of D^-1/2 A D^-1/2 (in [-1, 1]) = smallest of L; seeded start vector so the
    # result is reproducible (a start at D^1/2 1, the top eigenvector, would make Lanczos stop at once)
    v0 = np.random.default_rng(seed).uniform(0.5, 1.5, n)
    values, vectors = eigsh(norm_affinity, k=m + 1, which="LA", v0=v0, ncv=min(n - 1, max(2 * (m + 1) + 1, 40)))
    order = np.argsort(-values, kind="stable")
    return 1.0 - values[order], vectors[:, order]


def spray(
    heatmaps: torch.Tensor,
    n_neighbors: int = 10,
    max_clusters: int = 8,
    size: tuple[int, int] = (16, 16),
    n_clusters: int | None = None,
    mode: str = "abs",
    seed: int = 0,
) -> SprayResult:
    """Spectral clustering of heatmaps with eigengap selection of the number of clusters.

    Args:
        heatmaps: ``(N, H, W)`` (or ``(N, C, H, W)``, summed over channels) relevance maps, usually of one class.
        n_neighbors: k of the kNN affinity graph. Keep it below the size of the smallest group you want to find:
            a group of at most ``n_neighbors`` maps must take neighbours outside itself and blends in.
        max_clusters: largest k the eigengap heuristic may choose.
        size: pooled map size.
        n_clusters: force k (the eigengap choice is still reported in ``eigengap_k``).
        mode: ``"abs"`` (|R|, SpRAy default) or ``"positive"``.
        seed: k-means seed.

    Example:
        >>> import torch
        >>> maps = torch.zeros(30, 32, 32)
        >>> maps[:20, 12:20, 12:20] = 1.0  # relevance on the lesion
        >>> maps[20:, :4, :4] = 1.0  # a tag in the corner
        >>> res = spray(maps + 0.01 * torch.rand(30, 32, 32, generator=torch.Generator().manual_seed(0)))
        >>> res.eigengap_k, sorted(res.cluster_sizes.tolist())
        (2, [10, 20])
    """
    n = heatmaps.shape[0]
    if n < 3:
        raise ValueError(f"SpRAy needs at least 3 heatmaps, got {n}")
    if n_neighbors < 1 or max_clusters < 1:
        raise ValueError("n_neighbors and max_clusters must be >= 1")
    features = spray_features(heatmaps, size, mode)
    m = min(max_clusters, n - 1)
    eigenvalues, eigenvectors = _smallest_laplacian_eigenpairs(_normalised_affinity(features, n_neighbors), m, seed)
    eigenvalues = np.clip(eigenvalues, 0.0, None)  # round-off can make the zero eigenvalue slightly negative
    gaps = np.diff(eigenvalues)  # gaps[k - 1] = lambda_k - lambda_{k-1}
    eigengap_k = int(np.argmax(gaps)) + 1
    k = eigengap_k if n_clusters is None else int(n_clusters)
    if not 1 <= k <= m:
        raise ValueError(f"n_clusters must be in [1, {m}], got {k}")
    emb = eigenvectors[:, :k]
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    labels = kmeans(emb, k, seed=seed)[0] if k > 1 else np.zeros(n, dtype=np.int64)
    labels = _relabel_by_size(labels)
    sizes = np.bincount(labels, minlength=k)
    h, w = size
    means = np.stack([features[labels == c].mean(0) for c in range(k)]).reshape(k, h, w)
    return SprayResult(
        labels=labels,
        eigenvalues=eigenvalues,
        n_clusters=k,
        eigengap_k=eigengap_k,
        eigengap=float(gaps[eigengap_k - 1]),
        cluster_means=means,
        cluster_sizes=sizes,
        features=features,
        embedding=emb,
        size=(h, w),
    )


def _relabel_by_size(labels: np.ndarray) -> np.ndarray:
    """Cluster 0 = largest (ties by first occurrence), so labels do not depend on k-means' arbitrary order."""
    ids, first, counts = np.unique(labels, return_index=True, return_counts=True)
    order = ids[np.lexsort((first, -counts))]
    mapping = np.empty(labels.max() + 1, dtype=np.int64)
    mapping[order] = np.arange(len(order))
    return mapping[labels]


@dataclass
class ClusterReport:
    """One SpRAy cluster as judged by :func:`artifact_cluster`.

    Attributes:
        cluster: cluster id.
        size: members; fraction: share of all heatmaps.
        mass_ratio: relevance-mass ratio — the cluster's mean map mass in its *focus region* (the smallest set of
            pooled cells holding half of its mass) divided by the mass the other samples' mean map puts there.
            ~1 for clusters that look where everybody looks; large when the cluster looks somewhere new.
        focus: ``(h, w)`` bool focus region at the pooled size.
        mask_relevance: mean :func:`relevance_in_mask` of the members (when masks are given).
        flagged: small and distinct (see :func:`artifact_cluster`).
    """

    cluster: int
    size: int
    fraction: float
    mass_ratio: float
    focus: np.ndarray
    mask_relevance: float | None = None
    flagged: bool = False


@dataclass
class ArtifactClusterResult:
    """Result of :func:`artifact_cluster`: ``cluster`` is the most suspicious flagged cluster, or ``None``."""

    flagged: bool
    cluster: int | None
    clusters: list[ClusterReport] = field(default_factory=list)
    criteria: dict[str, float] = field(default_factory=dict)


def artifact_cluster(
    result: SprayResult,
    heatmaps: torch.Tensor | None = None,
    masks: torch.Tensor | None = None,
    max_fraction: float = 0.3,
    min_size: int = 3,
    min_mass_ratio: float = 3.0,
    min_mask_relevance: float | None = None,
) -> ArtifactClusterResult:
    """Flag a small, distinct SpRAy cluster: a candidate Clever-Hans strategy for a human to inspect.

    A cluster is flagged when it holds at least ``min_size`` and at most ``max_fraction`` of the heatmaps (artifacts
    affect a minority) and its ``mass_ratio`` (:class:`ClusterReport`) is at least ``min_mass_ratio``: it puts its
    relevance where the other samples put ``min_mass_ratio`` times less. With ``masks`` (artifact masks of the same
    images, e.g. from :func:`lit_xai.artifacts.detect_ring`) and the full-resolution ``heatmaps``, each cluster also
    gets its members' mean :func:`relevance_in_mask`; ``min_mask_relevance`` optionally requires it.

    Args:
        result: output of :func:`spray` on ``heatmaps``.
        heatmaps: the ``(N, H, W)`` maps given to :func:`spray` (only needed with ``masks``).
        masks: ``(N, H, W)`` bool artifact masks.

    Example:
        >>> import torch
        >>> maps = torch.zeros(32, 32, 32); maps[:24, 12:20, 12:20] = 1.0; maps[24:, :4, :4] = 1.0
        >>> maps += 0.01 * torch.rand(32, 32, 32, generator=torch.Generator().manual_seed(0))
        >>> found = artifact_cluster(spray(maps, n_neighbors=5))
        >>> found.flagged, found.clusters[found.cluster].size
        (True, 8)
    """
    n = len(result.labels)
    k = result.n_clusters
    mask_scores = None
    if masks is not None:
        if heatmaps is None:
            raise ValueError("pass the full-resolution heatmaps together with masks")
        if heatmaps.shape[0] != n:
            raise ValueError(f"heatmaps ({heatmaps.shape[0]}) and the SpRAy result ({n}) differ in length")
        mask_scores = relevance_in_mask(heatmaps, masks).cpu().numpy()
    reports = []
    for c in range(k):
        members = result.labels == c
        size = int(members.sum())
        mean_c = result.features[members].mean(0)
        rest = result.features[~members].mean(0) if size < n else np.full_like(mean_c, 1.0 / len(mean_c))
        # focus: the fewest cells holding half of the cluster's mass
        order = np.argsort(-mean_c, kind="stable")
        n_focus = int(np.searchsorted(np.cumsum(mean_c[order]), 0.5) + 1)
        focus = np.zeros_like(mean_c, dtype=bool)
        focus[order[:n_focus]] = True
        mass_ratio = float(mean_c[focus].sum() / max(rest[focus].sum(), 1e-12))
        mask_rel = None
        if mask_scores is not None:
            vals = mask_scores[members]
            vals = vals[~np.isnan(vals)]
            mask_rel = float(vals.mean()) if len(vals) else math.nan
        flagged = min_size <= size <= max_fraction * n and mass_ratio >= min_mass_ratio
        if flagged and min_mask_relevance is not None:
            flagged = mask_rel is not None and not math.isnan(mask_rel) and mask_rel >= min_mask_relevance
        reports.append(
            ClusterReport(c, size, size / n, mass_ratio, focus.reshape(result.size), mask_rel, bool(flagged))
        )
    candidates = [r for r in reports if r.flagged]
    best = max(candidates, key=lambda r: r.mass_ratio).cluster if candidates else None
    criteria = {"max_fraction": max_fraction, "min_size": float(min_size), "min_mass_ratio": min_mass_ratio}
    if min_mask_relevance is not None:
        criteria["min_mask_relevance"] = min_mask_relevance
    return ArtifactClusterResult(flagged=best is not None, cluster=best, clusters=reports, criteria=criteria)
