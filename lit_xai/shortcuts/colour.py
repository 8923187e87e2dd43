"""Colour casts: a subgroup of a class whose images share a colour shift, as a testable artifact.

Discovery (:mod:`lit_xai.shortcuts.discovery`) clusters explanations: *where* a model looks and which concepts it
uses there. A global colour cast (a scanner, a stain, a white balance) has no place, so explanation clusters do not
set its images apart: on ``benchmarks/discovery_recall.py`` a cast at 5 times the default strength is learned by
every model and listed by discovery in none (benchmarks/README.md). The images themselves give it away:

* :func:`chroma`: each image's mean colour per channel minus its mean over the channels (a brighter or darker image
  does not move it, so a bright corner or a dark ring moves it only as much as it changes the hue);
* :func:`colour_candidates`: per class, seeded k-means groups of the standardised chroma (k = 2..6, groups of
  ``min_size`` images up to ``max_fraction`` of the class); ``excess`` is the distance of a group's mean chroma from
  the rest of the class's, in the class's standard deviations, minus the 95th percentile of that distance for
  ``draws`` random same-size subsets; ``other`` the share of other classes' images within the group's
  90th-percentile radius around its mean. A group is suspicious at ``excess >= threshold`` and ``other <=
  max_other`` (:data:`COLOUR_THRESHOLD`, :data:`COLOUR_MAX_OTHER`, measured by ``benchmarks/colour_groups.py``);
* :func:`colour_cast`: the group as an artifact for the reliance tests (:class:`ColourCast`): inserting adds the
  members' mean colour offset from the rest of the class to the whole image, removing subtracts it, the detector
  scores an image's chroma along the offset, and the insertion test's sham adds an offset of the same size and
  brightness in another hue (the generic shams paint or shuffle the artifact's region, which for a whole-image
  region destroys the image or repeats the edit).

Which images form such a group says nothing about the model; the sham-controlled tests decide whether the model
relies on the colour. Inputs with fewer than 3 channels (grayscale X-rays) have no hue: no candidates.

Example:
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> images = 0.4 + 0.2 * torch.rand(200, 3, 1, 1, generator=g).expand(200, 3, 8, 8).clone()
    >>> images[:8] += torch.tensor([0.3, 0.0, -0.2])[:, None, None]  # 8 images of class 0 with a cast
    >>> labels = torch.tensor([0] * 100 + [1] * 100)
    >>> found = colour_candidates(images, labels, list(range(200)))
    >>> [(c.class_index, sorted(c.rows), c.suspicious) for c in found if c.suspicious]
    [(0, [0, 1, 2, 3, 4, 5, 6, 7], True)]
    >>> cast = colour_cast(found[0], images, labels=labels)
    >>> [round(v, 2) for v in cast.offset.tolist()]
    [0.28, 0.0, -0.19]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..artifacts.registry import Artifact, register_artifact
from .candidate_artifact import MIN_DETECTOR_J, MemberArtifact, _youden_threshold
from .discovery import Candidate
from .spray import kmeans

__all__ = ["COLOUR_MAX_OTHER", "COLOUR_THRESHOLD", "ColourCast", "chroma", "colour_candidates", "colour_cast"]

#: ``excess`` from which a colour group is suspicious: ``benchmarks/colour_groups.py`` (the pools of
#: ``discovery_recall``, 3 seeds): the best group of every run without a learnable cast (every artifact kind at its
#: default strength and the clean controls) at most 1.79, the cast at 5 times its strength 2.97-3.42; 2.0 is 1.11x
#: the highest control, as discovery's thresholds are
COLOUR_THRESHOLD: float = 2.0
#: the largest share of other classes' images that may share a suspicious group's colour (the controls' best groups:
#: 0.13-0.22; the x5 casts' 0.00-0.01)
COLOUR_MAX_OTHER: float = 0.05


def chroma(images01: torch.Tensor) -> torch.Tensor:
    """``(N, C)`` float64: each image's mean colour per channel minus its mean over the channels.

    Example:
        >>> chroma(torch.tensor([[[[0.7]], [[0.4]], [[0.4]]]])).round(decimals=3).tolist()
        [[0.2, -0.1, -0.1]]
    """
    m = images01.detach().double().cpu().mean((2, 3))
    return m - m.mean(1, keepdim=True)


def colour_candidates(
    images01: torch.Tensor,
    labels: torch.Tensor | Sequence[int],
    ids: Sequence[int],
    *,
    top_k: int = 1,
    ks: Sequence[int] = range(2, 7),
    min_size: int = 4,
    max_fraction: float = 0.35,
    draws: int = 64,
    threshold: float = COLOUR_THRESHOLD,
    max_other: float = COLOUR_MAX_OTHER,
    seed: int = 0,
) -> list[Candidate]:
    """Per class the ``top_k`` colour groups by ``excess`` (module docstring) as :class:`Candidate` s (``score`` =
    ``excess``; ``terms``: ``excess``, ``distance``, ``null95``, ``other``, ``k``; ``rows`` index ``images01``)."""
    if images01.ndim != 4 or images01.shape[0] != len(ids):
        raise ValueError(f"images01 must be (N, C, H, W) with one id per image, got {tuple(images01.shape)}")
    if images01.shape[1] < 3:
        return []  # no hue to shift
    lab = np.asarray(torch.as_tensor(np.asarray(labels)).long().cpu())
    features = chroma(images01).numpy()
    rng = np.random.default_rng(seed)
    out: list[Candidate] = []
    for c in np.unique(lab[lab >= 0]):
        rows = np.flatnonzero(lab == c)
        if len(rows) < 2 * min_size:
            continue
        centre, sd = np.median(features[rows], 0), features[rows].std(0) + 1e-12
        z, others = (features[rows] - centre) / sd, (features[(lab != c) & (lab >= 0)] - centre) / sd
        groups: dict[tuple[int, ...], dict] = {}
        for k in ks:
            if k > len(z):
                break
            assign = kmeans(z, k, seed=seed)[0]
            for j in range(k):
                member = assign == j
                size = int(member.sum())
                key = tuple(np.flatnonzero(member).tolist())
                if size < min_size or size > max_fraction * len(z) or key in groups:
                    continue
                distance = float(np.linalg.norm(z[member].mean(0) - z[~member].mean(0)))
                null = []
                for _ in range(draws):
                    pick = np.zeros(len(z), bool)
                    pick[rng.choice(len(z), size, replace=False)] = True
                    null.append(np.linalg.norm(z[pick].mean(0) - z[~pick].mean(0)))
                mean = z[member].mean(0)
                radius = np.quantile(np.linalg.norm(z[member] - mean, axis=1), 0.9)
                other = float((np.linalg.norm(others - mean, axis=1) <= radius).mean()) if len(others) else 0.0
                null95 = float(np.quantile(null, 0.95))
                groups[key] = {"excess": distance - null95, "distance": distance, "null95": null95, "other": other,
                               "k": float(k)}  # fmt: skip
        chosen: list[set[int]] = []
        for key, terms in sorted(groups.items(), key=lambda kv: -kv[1]["excess"]):
            members = set(key)
            if any(len(members & s) >= 0.5 * len(members | s) for s in chosen):
                continue
            chosen.append(members)
            local = rows[np.asarray(key)]
            out.append(
                Candidate(
                    class_index=int(c),
                    members=[int(ids[r]) for r in local],
                    score=terms["excess"],
                    size=len(key),
                    fraction=len(key) / len(rows),
                    rows=[int(r) for r in local],
                    terms=terms,
                    rank=len(chosen) - 1,
                    suspicious=terms["excess"] >= threshold and terms["other"] <= max_other,
                )  # fmt: skip
            )
            if len(chosen) == top_k:
                break
    return out


@dataclass
class ColourCast(MemberArtifact):
    """A colour group as an artifact (:func:`colour_cast`): detector, inserter, remover and its own sham; registered
    and flagged in a pool as :class:`~lit_xai.shortcuts.candidate_artifact.MemberArtifact` s are.

    Attributes:
        candidate: the group (:func:`colour_candidates`).
        offset: ``(C,)`` the members' mean colour minus the rest of the class's (what insertion adds).
        centre: ``(C,)`` the rest of the class's mean chroma (the detector's origin).
        threshold: detector score from which an image is flagged (``inf``: not selective, see ``detector_j``).
        detector_j: the detector's Youden J, members against other classes, at the threshold; below
            :data:`~lit_xai.shortcuts.candidate_artifact.MIN_DETECTOR_J` the threshold is ``inf``.
        size: ``(H, W)`` of the images.
    """

    candidate: Candidate
    offset: torch.Tensor
    centre: torch.Tensor
    threshold: float
    detector_j: float
    size: tuple[int, int]

    @property
    def region(self) -> torch.Tensor:
        """The whole image (a cast has no place)."""
        return torch.ones(self.size, dtype=torch.bool)

    @staticmethod
    def _masks(images01: torch.Tensor) -> torch.Tensor:
        return torch.ones(len(images01), *images01.shape[-2:], dtype=torch.bool, device=images01.device)

    def detect(self, images01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores ``(N,)``: an image's chroma along the offset's (0: the rest of the class's colour, 1: the members'),
        and whole-image masks."""
        direction = self.offset.double() - self.offset.double().mean()
        score = ((chroma(images01) - self.centre.double()) @ direction) / direction.dot(direction).clamp_min(1e-12)
        return score.float(), self._masks(images01)

    def insert(
        self, images01: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Add the offset to every pixel (clamped to [0, 1]); returns ``(images, masks)``."""
        shift = self.offset.to(images01.device, images01.dtype)[:, None, None]
        return (images01 + shift).clamp(0.0, 1.0), self._masks(images01)

    def remove(self, images01: torch.Tensor, masks: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Subtract the offset where ``masks`` (default: everywhere); returns ``(images, masks)``."""
        masks = self._masks(images01) if masks is None else masks.to(images01.device)
        shift = self.offset.to(images01.device, images01.dtype)[:, None, None]
        return torch.where(masks[:, None], (images01 - shift).clamp(0.0, 1.0), images01), masks

    def sham(
        self, images01: torch.Tensor, edited01: torch.Tensor, masks: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:  # fmt: skip
        """The insertion test's control: an offset with the same brightness change and a hue change of the same size
        at right angles to the cast's (3 channels: the cross product with the grey axis; more: a seeded direction
        orthogonal to both)."""
        offset = self.offset.double()
        grey = offset.mean()
        hue = offset - grey
        if len(offset) == 3:
            other = torch.linalg.cross(hue, torch.ones(3, dtype=torch.float64))
        else:
            other = torch.randn(len(offset), generator=generator, dtype=torch.float64)
            for axis in (torch.ones_like(offset) / math.sqrt(len(offset)), hue / hue.norm().clamp_min(1e-12)):
                other = other - other.dot(axis) * axis
        other = other / other.norm().clamp_min(1e-12) * hue.norm()
        shift = (grey + other).to(images01.device, images01.dtype)[:, None, None]
        return (images01 + shift).clamp(0.0, 1.0)

    def register(self, name: str | None = None) -> Artifact:
        """Register as ``name`` (default ``"colour_c<class>_<first member>"``) with all four functions."""
        cand = self.candidate
        name = name or f"colour_c{cand.class_index}_{cand.members[0]}"
        return register_artifact(name, detect=self.detect, threshold=self.threshold, insert=self.insert,
                                 remove=self.remove, sham=self.sham)  # fmt: skip

    @property
    def member_masks(self) -> torch.Tensor:
        """``(M, H, W)`` whole-image masks: a cast covers each member entirely."""
        return torch.ones(len(self.candidate.members), *self.size, dtype=torch.bool)


def colour_cast(
    candidate: Candidate, images01: torch.Tensor, *, labels: torch.Tensor | Sequence[int] | None = None
) -> ColourCast:
    """The :class:`ColourCast` of a :func:`colour_candidates` group (``candidate.rows`` index ``images01``): the
    offset from the rest of its class (without labels: from all non-members), the detector's threshold against the
    other classes (Youden's J)."""
    n = images01.shape[0]
    rows = torch.as_tensor(candidate.rows, dtype=torch.long)
    if len(rows) == 0 or int(rows.max()) >= n or images01.shape[1] < 3:
        raise ValueError(f"candidate rows {candidate.rows[:5]}... do not index these {tuple(images01.shape)} images")
    member = torch.zeros(n, dtype=torch.bool)
    member[rows] = True
    lab = None if labels is None else torch.as_tensor(np.asarray(labels)).long().cpu()
    rest = ~member if lab is None else (~member & (lab == candidate.class_index))
    if not rest.any():
        raise ValueError("a colour group needs images of its class outside it (the colour it departs from)")
    x = images01.detach().float().cpu()
    means = x.double().mean((2, 3))
    offset = (means[member].mean(0) - means[rest].mean(0)).float()
    cast = ColourCast(candidate, offset, chroma(x[rest]).mean(0).float(), 1.0, math.nan, tuple(x.shape[-2:]))
    scores, _ = cast.detect(x)
    negatives = ~member if lab is None else (lab != candidate.class_index) & (lab >= 0)
    cast.threshold, cast.detector_j = _youden_threshold(scores[member], scores[negatives])
    if cast.detector_j < MIN_DETECTOR_J:
        cast.threshold = math.inf
    return cast
