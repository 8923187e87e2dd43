"""Explanation drift: similarity between heatmaps of the same probes at two points in training.

All functions take two heatmap batches ``(N, H, W)`` and return one value per probe ``(N,)``; 1 means identical
(up to the invariance of the measure), lower means the explanation changed.

Example:
    >>> a = torch.rand(4, 16, 16)
    >>> torch.allclose(drift_scores(a, a)["spearman"], torch.ones(4))
    True
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["DRIFT_MEASURES", "DriftTracker", "cosine", "drift_scores", "spearman", "ssim", "topk_iou"]


def _check(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(
            f"heatmaps must both be (N, H, W) with equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    return a.detach().float(), b.detach().float()


def _scale(x: torch.Tensor) -> torch.Tensor:
    """Per-map scaling to [-1, 1] by the max |value|, so SSIM compares patterns, not relevance magnitudes."""
    return x / x.flatten(1).abs().amax(1).clamp_min(1e-12)[:, None, None]


def ssim(a: torch.Tensor, b: torch.Tensor, kernel_size: int = 7) -> torch.Tensor:
    """Structural similarity (torchmetrics) of max-|.|-normalised maps, per probe, in [-1, 1]."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    a, b = _check(a, b)
    k = min(kernel_size, a.shape[-1], a.shape[-2])
    k = k if k % 2 == 1 else k - 1
    return structural_similarity_index_measure(
        _scale(a)[:, None], _scale(b)[:, None], data_range=2.0, kernel_size=k, reduction="none"
    )


def _ranks(x: torch.Tensor) -> torch.Tensor:
    """Average ranks along dim 1 (ties share their mean rank, as in scipy.stats.rankdata)."""
    n, m = x.shape
    order = x.argsort(dim=1)
    sorted_x = x.gather(1, order)
    ranks = torch.empty_like(x)
    positions = torch.arange(m, dtype=x.dtype, device=x.device).expand(n, m)
    ranks.scatter_(1, order, positions)
    # average tied ranks: group equal values in the sorted order
    for i in range(n):
        values, inverse, counts = torch.unique_consecutive(sorted_x[i], return_inverse=True, return_counts=True)
        if len(values) == m:
            continue
        sums = torch.zeros(len(values), dtype=x.dtype, device=x.device).scatter_add_(0, inverse, positions[i])
        ranks[i, order[i]] = (sums / counts)[inverse]
    return ranks


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation of the pixel relevances, per probe, in [-1, 1]."""
    a, b = _check(a, b)
    ra, rb = _ranks(a.flatten(1)), _ranks(b.flatten(1))
    return F.cosine_similarity(ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True), dim=1, eps=1e-12)


def topk_iou(a: torch.Tensor, b: torch.Tensor, fraction: float = 0.1) -> torch.Tensor:
    """Intersection over union of the top ``fraction`` most relevant pixels (positive relevance), per probe."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    a, b = _check(a, b)
    fa, fb = a.flatten(1), b.flatten(1)
    k = max(1, int(round(fraction * fa.shape[1])))
    ma = torch.zeros_like(fa, dtype=torch.bool).scatter_(1, fa.topk(k, dim=1).indices, True)
    mb = torch.zeros_like(fb, dtype=torch.bool).scatter_(1, fb.topk(k, dim=1).indices, True)
    return (ma & mb).sum(1).float() / (ma | mb).sum(1).float()


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of the flattened maps, per probe."""
    a, b = _check(a, b)
    return F.cosine_similarity(a.flatten(1), b.flatten(1), dim=1, eps=1e-12)


DRIFT_MEASURES = {"ssim": ssim, "spearman": spearman, "iou": topk_iou, "cosine": cosine}


def drift_scores(
    a: torch.Tensor,
    b: torch.Tensor,
    measures: tuple[str, ...] = ("ssim", "spearman", "iou", "cosine"),
    top_fraction: float = 0.1,
) -> dict[str, torch.Tensor]:
    """All requested similarity measures between ``a`` and ``b``: ``{name: (N,)}``."""
    out = {}
    for name in measures:
        if name not in DRIFT_MEASURES:
            raise ValueError(f"unknown drift measure {name!r}; choose from {sorted(DRIFT_MEASURES)}")
        out[name] = topk_iou(a, b, top_fraction) if name == "iou" else DRIFT_MEASURES[name](a, b)
    return out


def _degenerate(maps: torch.Tensor) -> torch.Tensor:
    """``(N,)`` True where a map holds NaN or Inf."""
    return ~torch.isfinite(maps.flatten(1)).all(1)


class DriftTracker:
    """Explanation drift of a fixed probe set across training, like a torchmetrics metric:
    :meth:`update` with each epoch's maps, read the scalars it returns, checkpoint with :meth:`state_dict`.

    For every method it keeps the first and the previous maps (average-pooled to at most ``size`` pixels a side) and
    a timeline of the last ``timeline_length`` epochs. Degenerate maps (NaN/Inf) never look "perfectly stable": their
    measures are NaN, the probe is listed in :attr:`degenerate`, and means are taken over the other probes.
    All-zero maps have defined measures (identical zero maps are similar, 1; a zero vs. a non-zero map is not).

    Args:
        measures: names in :data:`DRIFT_MEASURES`.
        top_fraction: pixel fraction of the top-k IoU measure.
        size: maps are pooled to at most this side length (keeps the checkpoint small).
        timeline_length: epochs kept per method for timelines.
        per_probe_scalars: a monitor also logs every probe's measures (off: the means are what people read).

    Example:
        >>> tracker = DriftTracker(measures=("spearman",))
        >>> _ = tracker.update({"lrp": torch.rand(3, 8, 8)}, epoch=0)
        >>> scalars, per_probe = tracker.update({"lrp": torch.rand(3, 8, 8)}, epoch=1)
        >>> sorted(scalars)
        ['lrp/spearman_first', 'lrp/spearman_prev']
    """

    def __init__(
        self,
        measures: tuple[str, ...] | list[str] = ("ssim", "spearman", "iou"),
        top_fraction: float = 0.1,
        size: int = 64,
        timeline_length: int = 12,
        per_probe_scalars: bool = False,
    ) -> None:
        bad = [m for m in measures if m not in DRIFT_MEASURES]
        if bad or not measures:
            raise ValueError(f"unknown drift measures {bad or measures}; choose from {sorted(DRIFT_MEASURES)}")
        if not 0.0 < top_fraction <= 1.0:
            raise ValueError(f"top_fraction must be in (0, 1], got {top_fraction}")
        if size < 4:
            raise ValueError(f"size must be >= 4 pixels, got {size}")
        if timeline_length < 1:
            raise ValueError(f"timeline_length must be >= 1, got {timeline_length}")
        self.measures = tuple(measures)
        self.top_fraction = top_fraction
        self.size = size
        self.timeline_length = timeline_length
        self.per_probe_scalars = per_probe_scalars
        self.first: dict[str, torch.Tensor] = {}
        self.previous: dict[str, torch.Tensor] = {}
        self.timeline: dict[str, list[tuple[int, torch.Tensor]]] = {}
        #: per method, the probe rows whose latest maps were degenerate (NaN/Inf)
        self.degenerate: dict[str, list[int]] = {}

    def pool(self, maps: torch.Tensor) -> torch.Tensor:
        """Maps average-pooled to at most :attr:`size` pixels a side (float32, CPU)."""
        maps = maps.detach().float().cpu()
        h, w = maps.shape[-2:]
        if max(h, w) <= self.size:
            return maps
        out = (max(1, round(h * self.size / max(h, w))), max(1, round(w * self.size / max(h, w))))
        return F.adaptive_avg_pool2d(maps[:, None], out)[:, 0]

    def scores(self, a: torch.Tensor, b: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-probe measures between two pooled batches; NaN where either map is degenerate."""
        bad = _degenerate(a) | _degenerate(b)
        clean_a = torch.where(bad[:, None, None], torch.zeros_like(a), a)
        clean_b = torch.where(bad[:, None, None], torch.zeros_like(b), b)
        out = drift_scores(clean_a, clean_b, self.measures, self.top_fraction)
        both_zero = (clean_a.flatten(1).abs().amax(1) == 0) & (clean_b.flatten(1).abs().amax(1) == 0)
        return {k: torch.where(bad, torch.nan, torch.where(both_zero, 1.0, v)) for k, v in out.items()}

    def update(
        self, maps: dict[str, torch.Tensor], epoch: int, row_labels: list[str] | None = None
    ) -> tuple[dict[str, float], dict[str, float]]:
        """Add one epoch's maps ``{method: (N, H, W)}``.

        Returns:
            ``(means, per_probe)``: ``{"<method>/<measure>_{prev,first}": mean over non-degenerate probes}`` and
            ``{"<method>/<row label>/<measure>_{prev,first}": value}``.
        """
        means: dict[str, float] = {}
        per_probe: dict[str, float] = {}
        for method, raw in maps.items():
            small = self.pool(raw)
            self.degenerate[method] = _degenerate(small).nonzero().flatten().tolist()
            for ref_name, ref in (("prev", self.previous.get(method)), ("first", self.first.get(method))):
                if ref is None or ref.shape != small.shape:
                    continue
                for measure, values in self.scores(small, ref).items():
                    finite = values[~torch.isnan(values)]
                    means[f"{method}/{measure}_{ref_name}"] = float(finite.mean()) if len(finite) else math.nan
                    labels = row_labels or [f"p{i}" for i in range(len(values))]
                    for label, value in zip(labels, values.tolist()):
                        per_probe[f"{method}/{label}/{measure}_{ref_name}"] = value
            self.previous[method] = small
            self.first.setdefault(method, small)
            frames = self.timeline.setdefault(method, [])
            frames.append((epoch, small.half()))
            del frames[: max(0, len(frames) - self.timeline_length)]
        return means, per_probe

    def reset(self, methods: list[str] | None = None) -> None:
        """Forget the references (all methods, or the given ones): drift restarts at the next update."""
        for store in (self.first, self.previous, self.timeline, self.degenerate):
            for key in list(store):
                if methods is None or key in methods:
                    del store[key]

    def state_dict(self) -> dict:
        return {
            "first": dict(self.first),
            "previous": dict(self.previous),
            "timeline": {k: list(v) for k, v in self.timeline.items()},
        }

    def load_state_dict(self, state: dict, methods: list[str] | None = None) -> None:
        """Restore the references; with ``methods`` only those methods' state (others start fresh)."""
        keep = (lambda k: True) if methods is None else (lambda k: k in methods)
        self.first = {k: v for k, v in state.get("first", {}).items() if keep(k)}
        self.previous = {k: v for k, v in state.get("previous", {}).items() if keep(k)}
        self.timeline = {k: list(v) for k, v in state.get("timeline", {}).items() if keep(k)}

    def __repr__(self) -> str:
        return (
            f"DriftTracker(measures={self.measures!r}, top_fraction={self.top_fraction}, size={self.size}, "
            f"timeline_length={self.timeline_length})"
        )
