"""From a discovered candidate to a testable artifact: masks, a template detector, an inserter and a remover.

A :class:`~lit_xai.shortcuts.discovery.Candidate` is a group of images whose explanations look alike and look
somewhere new. To test whether the model *relies* on what they share, the reliance tests need what a registered
artifact has (:func:`lit_xai.artifacts.register_artifact`):

* **masks**: per member, the region of its relevance that sets the group apart — its positive relevance, smoothed,
  inside the cells where the members' mean map exceeds the rest of the class's by ``contrast`` times, cut to the
  smallest set of pixels holding ``mass`` of it (:func:`candidate_masks`);
* **detect**: a template detector for any image: the members' per-pixel median inside the *region* (pixels where at
  least ``region_share`` of the member masks agree) and ``score = 1 - mean |image - template|`` there; the threshold
  separates members from other-class images best (Youden's J). A template that cannot tell them apart (J below
  :data:`MIN_DETECTOR_J`: e.g. white text whose letters differ, whose median is mostly background) flags no image: its
  flags would be noise, and they decide which images the tests use (flagged images are left out of the insertion
  test; on the text of ``benchmarks/discovery_recall.py`` such a detector flagged 99 % of the other classes' images,
  leaving none to insert into). The members alone are then the artifact's images (:meth:`CandidateArtifact.flag_pool`);
* **insert**: paste a (seeded) random member's masked pixels into each image — the counterfactual insertion test;
* **remove**: inpaint the mask (the harmonic fill of :func:`lit_xai.artifacts.remove_ring`) — the removal test.

Two-step workflow (no detector written by hand)::

    cands = discover_candidates(heatmaps, labels, ids)            # step 1: look
    art = candidate_artifact(cands[0], images01, heatmaps, labels=labels)
    with art.registered("candidate_0"):                            # step 2: test it like a registered artifact
        pool.detect("candidate_0")
        art.flag_pool(pool, "candidate_0")  # members are flagged even where the template misses
        evidence = measure_reliance(model, pool, "candidate_0", cands[0].class_index, normalize)

Example:
    >>> import torch
    >>> from lit_xai.shortcuts.discovery import Candidate
    >>> images = torch.full((6, 3, 16, 16), 0.4); images[:3, :, :4, :4] = 1.0  # rows 0-2 carry a tag
    >>> heat = torch.zeros(6, 16, 16); heat[:, 6:10, 6:10] = 1.0; heat[:3, :4, :4] = 3.0
    >>> cand = Candidate(class_index=1, members=[10, 11, 12], score=2.0, size=3, fraction=0.5, rows=[0, 1, 2])
    >>> art = candidate_artifact(cand, images, heat, labels=torch.tensor([1, 1, 1, 1, 0, 0]))
    >>> scores, _ = art.detect(images)
    >>> (scores >= art.threshold).tolist()
    [True, True, True, False, False, False]
    >>> tagged, masks = art.insert(images[3:], torch.Generator().manual_seed(0))
    >>> bool(tagged[:, :, :4, :4].min() == 1.0), bool((art.remove(tagged, masks)[0] - images[3:]).abs().max() < 0.05)
    (True, True)
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..artifacts.inserters import remove_ring
from ..artifacts.registry import ARTIFACTS, Artifact, register_artifact
from .discovery import Candidate

__all__ = ["MIN_DETECTOR_J", "CandidateArtifact", "MemberArtifact", "candidate_artifact", "candidate_masks"]

#: the smallest Youden J (share of members flagged minus share of other-class images flagged, at the threshold) of a
#: template detector that is used; below it the detector flags nothing and the members alone carry the artifact.
#: ``benchmarks/discovery_recall.py`` (3 seeds, the text and ruler candidates): J 0.01-0.33 where the template flags
#: 62-99 % of the other classes' images, 0.55-1.0 where it flags 0-5 %
MIN_DETECTOR_J: float = 0.5


def _distinct_region(heatmaps: torch.Tensor, member: torch.Tensor, rest: torch.Tensor, contrast: float) -> torch.Tensor:
    """``(H, W)`` bool: where the members' mean |R| exceeds the rest's ``contrast`` times (on a coarse grid)."""
    h, w = heatmaps.shape[-2:]
    cells = (max(1, h // 16), max(1, w // 16))  # about a 16 x 16 grid, as the clustering
    r = F.avg_pool2d(heatmaps.abs().float()[:, None], cells, ceil_mode=True)[:, 0]
    r = r / r.flatten(1).sum(1).clamp_min(1e-12)[:, None, None]
    mean_s = r[member].mean(0)
    mean_r = r[rest].mean(0) if rest.any() else torch.zeros_like(mean_s)
    region = mean_s >= contrast * mean_r
    region &= mean_s >= mean_s.mean()  # not cells where both are near zero
    if not region.any():
        region = mean_s >= mean_s.max()
    return F.interpolate(region[None, None].float(), size=(h, w), mode="nearest")[0, 0] > 0


def candidate_masks(
    heatmaps: torch.Tensor,
    region: torch.Tensor | None = None,
    mass: float = 0.6,
    smooth: int | None = None,
    dilate: int = 1,
) -> torch.Tensor:
    """Per map, the smallest set of pixels holding ``mass`` of its smoothed positive relevance (inside ``region``).

    Args:
        heatmaps: ``(M, H, W)`` relevance of the members.
        region: optional ``(H, W)`` or ``(M, H, W)`` bool area the masks must lie in.
        mass: share of the (smoothed, positive, in-region) relevance the mask holds.
        smooth: box-filter size in pixels (default ~6 % of the shorter side, odd), so a mask covers whole strokes.
        dilate: pixels the mask grows by at the end.

    Returns:
        ``(M, H, W)`` bool masks (a map without positive relevance in the region gets an empty mask).

    Example:
        >>> import torch
        >>> heat = torch.zeros(1, 16, 16); heat[0, 2:5, 2:5] = 1.0; heat[0, 10, 10] = 0.1
        >>> m = candidate_masks(heat, smooth=1, dilate=0)
        >>> bool(m[0, 3, 3]), bool(m[0, 10, 10])
        (True, False)
    """
    if heatmaps.ndim != 3:
        raise ValueError(f"heatmaps must be (M, H, W), got {tuple(heatmaps.shape)}")
    if not 0.0 < mass <= 1.0:
        raise ValueError(f"mass must be in (0, 1], got {mass}")
    m, h, w = heatmaps.shape
    k = smooth if smooth is not None else max(1, round(0.06 * min(h, w)) // 2 * 2 + 1)
    r = heatmaps.detach().float().cpu().clamp_min(0.0)[:, None]
    if k > 1:
        r = F.avg_pool2d(F.pad(r, (k // 2,) * 4, mode="replicate"), k, 1)
    r = r[:, 0]
    if region is not None:
        r = r * region.to(r.device).float().expand(m, h, w)
    flat = r.flatten(1)
    values, order = flat.sort(1, descending=True)
    cum = values.cumsum(1)
    total = cum[:, -1:]
    keep = (cum - values) < mass * total  # a pixel is kept while the mass before it is short of the target
    keep &= values > 0
    masks = torch.zeros_like(flat, dtype=torch.bool).scatter(1, order, keep).view(m, h, w)
    if dilate > 0:
        masks = F.max_pool2d(masks[:, None].float(), 2 * dilate + 1, 1, dilate)[:, 0] > 0
        if region is not None:
            masks &= region.bool().expand(m, h, w)
    return masks


class MemberArtifact:
    """What every artifact built from a discovered group shares (:class:`CandidateArtifact`,
    :class:`~lit_xai.shortcuts.colour.ColourCast`): registered for a ``with`` block only, and its members flagged in
    a pool. A subclass has ``candidate``, ``register(name)`` and ``member_masks`` (``(M, H, W)``, rows of
    ``candidate.members``)."""

    candidate: Candidate

    def register(self, name: str | None = None) -> Artifact:
        raise NotImplementedError

    @property
    def member_masks(self) -> torch.Tensor:
        raise NotImplementedError

    @contextlib.contextmanager
    def registered(self, name: str | None = None) -> Iterator[Artifact]:
        """Registered for the ``with`` block only (the registry is global: leave no trace), e.g. around
        ``pool.detect(name); art.flag_pool(pool, name); measure_reliance(...)``."""
        artifact = self.register(name)
        try:
            yield artifact
        finally:
            ARTIFACTS.pop(artifact.name, None)

    def flag_pool(self, pool: Any, name: str) -> None:
        """Flag the group's members in a :class:`~lit_xai.shortcuts.ReliancePool` (by id) with their own masks,
        on top of what ``pool.detect(name)`` found (call that first when the artifact is registered)."""
        member_masks = self.member_masks
        n = len(pool)
        flags = pool.flags.get(name, torch.zeros(n, dtype=torch.bool)).clone()
        masks = pool.masks.get(name, torch.zeros(n, *member_masks.shape[-2:], dtype=torch.bool)).clone()
        where = {int(i): row for row, i in enumerate(pool.ids)}
        for j, member in enumerate(self.candidate.members):
            row = where.get(int(member))
            if row is not None:
                flags[row] = True
                masks[row] = member_masks[j]
        pool.flags[name], pool.masks[name] = flags, masks


@dataclass
class CandidateArtifact(MemberArtifact):
    """What a candidate needs to be tested like a registered artifact (see the module docstring).

    Attributes:
        candidate: the candidate.
        masks: ``(M, H, W)`` bool member masks (rows of ``candidate.rows``).
        member_images: ``(M, C, H, W)`` the members in [0, 1] (the inserter pastes from them).
        region: ``(H, W)`` bool where the member masks agree (the template detector looks there).
        template: ``(C, H, W)`` members' per-pixel median (used inside ``region``).
        threshold: template score from which an image is flagged (``inf``: the template is not selective, see
            ``detector_j``; no image is flagged by it).
        shift: largest shift (pixels) of the template the detector tries.
        detector_j: the template's Youden J on the images it was built on (members against other classes), at its
            threshold; below :data:`MIN_DETECTOR_J` the threshold is ``inf``.
    """

    candidate: Candidate
    masks: torch.Tensor
    member_images: torch.Tensor
    region: torch.Tensor
    template: torch.Tensor
    threshold: float
    shift: int = 0
    detector_j: float = math.nan
    #: the images, scores and masks of the last :meth:`detect` call, the one cache of the detector: the monitor
    #: detects on the same pool images twice (the threshold in :func:`candidate_artifact`, then ``pool.detect``,
    #: which scores the whole pool in one call), a search over (2 shift + 1)^2 template positions each time
    _last: Optional[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = field(
        default=None, init=False, repr=False, compare=False
    )

    def detect(self, images01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Template scores ``(N,)`` and masks ``(N, H, W)`` (the region, at the best shift).

        The score is ``1 - mean |image - template|`` in the region, the best over shifts of up to ``shift`` pixels
        (an artifact's position jitters a little from image to image). The same images as the last call give that
        call's result again (copies), without the search.
        """
        x = images01.detach().float().cpu()
        if x.shape[1:] != self.template.shape:
            raise ValueError(f"images {tuple(x.shape[1:])} differ from the candidate's {tuple(self.template.shape)}")
        last = self._last
        if last is not None and last[0].shape == x.shape and torch.equal(last[0], x):
            return last[1].clone(), last[2].clone()
        scores, masks = self._search(x)
        self._last = (x.clone(), scores.clone(), masks.clone())
        return scores, masks

    def _search(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, _, h, w = x.shape
        t = self.shift
        padded = F.pad(x, (t, t, t, t), mode="replicate") if t > 0 else x
        best = torch.full((n,), -math.inf)
        best_shift = torch.zeros(n, 2, dtype=torch.long)
        # only the region's bounding box is compared; where the region fills under half of it (a ring, a line) only
        # its own pixels, gathered pixel-major (one contiguous row of every image's channels per pixel), at each
        # shift; both give the masked mean of the region (the gather up to float rounding)
        ys, xs = self.region.nonzero(as_tuple=True)
        if len(ys) == 0:
            ys, xs = torch.arange(h).repeat_interleave(w), torch.arange(w).repeat(h)
        y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
        sparse = len(ys) < 0.5 * (y1 - y0) * (x1 - x0)
        if sparse:
            box = padded[:, :, y0 : y1 + 2 * t, x0 : x1 + 2 * t]  # the box grown by the shift, padded coordinates
            width = box.shape[-1]
            pixels = box.flatten(2).permute(2, 0, 1).contiguous()  # (box pixels, N, C)
            base = (ys - y0 + t) * width + (xs - x0 + t)
            template = self.template[:, ys, xs].T[:, None, :]  # (R, 1, C)
        else:
            template, region = self.template[:, y0:y1, x0:x1], self.region[y0:y1, x0:x1]
        for dy in range(-t, t + 1):
            for dx in range(-t, t + 1):
                if sparse:
                    window = pixels[base + dy * width + dx]  # (R, N, C)
                    score = 1.0 - (window - template).abs().mean(2).mean(0)
                else:
                    window = padded[:, :, t + dy + y0 : t + dy + y1, t + dx + x0 : t + dx + x1]
                    score = 1.0 - (window - template).abs().mean(1)[:, region].mean(1)
                better = score > best
                best = torch.where(better, score, best)
                best_shift[better] = torch.tensor([dy, dx])
        masks = torch.stack(
            [torch.roll(self.region, (int(a), int(b)), dims=(0, 1)) for a, b in best_shift.tolist()]
        ) if n else torch.zeros(0, h, w, dtype=torch.bool)
        return best, masks

    def insert(
        self, images01: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Paste a seeded random member's masked pixels into every image; returns ``(images, masks)``."""
        if images01.shape[1:] != self.member_images.shape[1:]:
            raise ValueError(
                f"images {tuple(images01.shape[1:])} differ from the members' {tuple(self.member_images.shape[1:])}"
            )
        pick = torch.randint(len(self.member_images), (len(images01),), generator=generator)
        masks = self.masks[pick].to(images01.device)
        donors = self.member_images[pick].to(images01.device, images01.dtype)
        return torch.where(masks[:, None], donors, images01), masks.clone()

    def remove(
        self, images01: torch.Tensor, masks: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Inpaint ``masks`` (default: the region) with the harmonic fill of :func:`~lit_xai.artifacts.remove_ring`."""
        if masks is None:
            masks = self.region.expand(len(images01), -1, -1)
        return remove_ring(images01, masks)

    def register(self, name: str | None = None) -> Artifact:
        """Register as ``name`` (default ``"candidate_c<class>_<first member>"``) with detector, inserter, remover."""
        cand = self.candidate
        name = name or f"candidate_c{cand.class_index}_{cand.members[0]}"
        return register_artifact(name, detect=self.detect, threshold=self.threshold, insert=self.insert,
                                 remove=self.remove)  # fmt: skip

    @property
    def member_masks(self) -> torch.Tensor:
        """``(M, H, W)`` the members' own masks (what :meth:`flag_pool` gives them)."""
        return self.masks


def candidate_artifact(
    candidate: Candidate,
    images01: torch.Tensor,
    heatmaps: torch.Tensor,
    *,
    labels: torch.Tensor | Sequence[int] | None = None,
    mass: float = 0.6,
    contrast: float = 2.0,
    region_share: float = 0.3,
    shift_fraction: float = 0.06,
) -> CandidateArtifact:
    """Masks, template detector, inserter and remover of a candidate (rows index ``images01`` and ``heatmaps``).

    Args:
        candidate: from :func:`lit_xai.shortcuts.discover_candidates` run on these ``heatmaps``.
        images01: ``(N, C, H, W)`` the same images in [0, 1].
        heatmaps: ``(N, H, W)`` the maps that were clustered.
        labels: ``(N,)`` classes; the distinct region is measured against the rest of the candidate's class and the
            detector threshold against other classes (without labels: against all non-members).
        mass: share of each member's relevance (inside the distinct region) its mask holds.
        contrast: the distinct region is where the members' mean |R| is at least this times the rest's.
        region_share: a pixel belongs to the template region when at least this share of member masks cover it.
        shift_fraction: the detector tries template shifts up to this fraction of the image side.
    """
    n = images01.shape[0]
    if heatmaps.shape[0] != n or heatmaps.shape[-2:] != images01.shape[-2:]:
        raise ValueError(
            f"images01 {tuple(images01.shape)} and heatmaps {tuple(heatmaps.shape)} must be the rows given to "
            "discover_candidates, at the same resolution"
        )
    rows = torch.as_tensor(candidate.rows, dtype=torch.long)
    if len(rows) == 0 or int(rows.max()) >= n:
        raise ValueError(f"candidate rows {candidate.rows[:5]}... do not index these {n} images")
    member = torch.zeros(n, dtype=torch.bool)
    member[rows] = True
    lab = None if labels is None else torch.as_tensor(np.asarray(labels)).long().cpu()
    rest = ~member if lab is None else (~member & (lab == candidate.class_index))
    heat = heatmaps.detach().float().cpu()
    if heat.ndim == 4:
        heat = heat.sum(1)
    distinct = _distinct_region(heat, member, rest, contrast)
    masks = candidate_masks(heat[rows], distinct, mass)
    region = masks.float().mean(0) >= region_share
    if not region.any():
        region = masks.any(0) if masks.any() else distinct
    x = images01.detach().float().cpu()
    template = x[rows].median(0).values
    shift = round(shift_fraction * min(x.shape[-2:]))
    art = CandidateArtifact(candidate, masks, x[rows].clone(), region, template, threshold=1.0, shift=shift)
    scores, _ = art.detect(x)  # kept in art._last: pool.detect on these images reads it
    negatives = ~member if lab is None else (lab != candidate.class_index)
    art.threshold, art.detector_j = _youden_threshold(scores[member], scores[negatives])
    if art.detector_j < MIN_DETECTOR_J:  # NaN (no negatives) keeps the template
        art.threshold = math.inf  # its flags would be noise: the members alone carry the artifact
    return art


def _youden_threshold(pos: torch.Tensor, neg: torch.Tensor) -> tuple[float, float]:
    """The cut that maximises sensitivity + specificity (ties: the midpoint between the neighbouring scores), and
    Youden's J there (sensitivity + specificity - 1; NaN without negatives)."""
    if len(neg) == 0:
        return float(pos.min()), math.nan
    values = torch.cat([pos, neg]).sort().values
    cuts = torch.cat([values[:1], (values[1:] + values[:-1]) / 2, values[-1:] + 1e-6])
    tpr = (pos[None] >= cuts[:, None]).float().mean(1)
    tnr = (neg[None] < cuts[:, None]).float().mean(1)
    best = int(torch.argmax(tpr + tnr))
    return float(cuts[best]), float(tpr[best] + tnr[best] - 1.0)
