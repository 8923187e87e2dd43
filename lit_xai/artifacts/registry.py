"""The artifact registry: each artifact names its detector, decision threshold, inserter and (optionally) remover.

The audit uses the detector and threshold; :class:`~lit_xai.callbacks.ShortcutMonitor` also needs the inserter
(counterfactual insertion test) and uses the remover when there is one (removal test). A watched artifact without an
inserter is an error, never a silent substitute.

Example:
    >>> get_artifact("ring").insert.__name__, get_artifact("marker").remove is None
    ('insert_ring', True)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .detectors import (
    DARK_CORNERS_THRESHOLD,
    MARKER_THRESHOLD,
    RING_THRESHOLD,
    Detector,
    detect_dark_corners,
    detect_marker,
    detect_ring,
)
from .inserters import insert_dark_corners, insert_marker, insert_ring, remove_ring
from .xray import TEXT_MARKER_THRESHOLD, detect_text_marker, insert_text_marker

__all__ = [
    "ARTIFACTS",
    "DEFAULT_THRESHOLDS",
    "DETECTORS",
    "Artifact",
    "get_artifact",
    "get_detector",
    "register_artifact",
    "register_detector",
]

#: ``(images01, generator) -> (images01 with the artifact, masks)``
InsertFn = Callable[..., Any]
#: ``(images01, masks) -> (images01 without the artifact, masks used)``
RemoveFn = Callable[..., Any]
#: ``(images01, edited01, masks, generator) -> images01 with a sham edit`` (the insertion test's control)
ShamFn = Callable[..., Any]


@dataclass(frozen=True)
class Artifact:
    """A registered artifact.

    Attributes:
        name: registry key.
        detect: ``images01 (N, C, H, W) -> (scores (N,), masks (N, H, W) bool)``.
        threshold: an image is flagged when its score is at least this.
        insert: seeded inserter for the counterfactual insertion test (``None``: the artifact can only be audited).
        remove: remover (inpainting) for the removal test (``None``: the test is skipped, and reports say so).
        sham: the insertion test's control, for an artifact the generic shams cannot control (``None``: the
            measurement's :func:`~lit_xai.shortcuts.sham.sham_insert` kind): e.g. a colour cast, whose region is the
            whole image, is controlled by a cast of the same size in another hue.
    """

    name: str
    detect: Detector
    threshold: float
    insert: InsertFn | None = None
    remove: RemoveFn | None = None
    sham: ShamFn | None = None

    @property
    def tests(self) -> tuple[str, ...]:
        """The reliance tests this artifact supports."""
        return ("relevance_in_mask",) + (("insertion",) if self.insert else ()) + (("removal",) if self.remove else ())


#: every registered artifact by name
ARTIFACTS: dict[str, Artifact] = {}


def register_artifact(
    name: str,
    detect: Detector,
    threshold: float,
    insert: InsertFn | None = None,
    remove: RemoveFn | None = None,
    sham: ShamFn | None = None,
) -> Artifact:
    """Register an artifact (duplicates raise).

    Example:
        >>> import torch
        >>> a = register_artifact("bright", detect=lambda x: (x.mean((1, 2, 3)), x.mean(1) > 0.9), threshold=0.9)
        >>> sorted(DETECTORS)[:1], a.tests
        (['bright'], ('relevance_in_mask',))
        >>> _ = ARTIFACTS.pop("bright")  # keep the doctest free of side effects
    """
    if name in ARTIFACTS:
        raise ValueError(f"an artifact named {name!r} is already registered")
    if (
        not callable(detect)
        or (insert is not None and not callable(insert))
        or (remove is not None and not callable(remove))
        or (sham is not None and not callable(sham))
    ):
        raise TypeError(f"artifact {name!r}: detect, insert, remove and sham must be callables")
    artifact = Artifact(name, detect, float(threshold), insert, remove, sham)
    ARTIFACTS[name] = artifact
    return artifact


def register_detector(name: str, threshold: float) -> Callable[[Detector], Detector]:
    """Decorator registering a detection-only artifact (no inserter: it can be audited, not watched by
    :class:`~lit_xai.callbacks.ShortcutMonitor`); see :func:`lit_xai.artifacts.register_artifact` for the full form.

    Example:
        >>> import torch
        >>> from lit_xai.artifacts import ARTIFACTS
        >>> @register_detector("all_white", threshold=0.9)
        ... def detect_all_white(images01):
        ...     scores = images01.mean((1, 2, 3))
        ...     return scores, (images01.mean(1) > 0.95) & (scores >= 0.9)[:, None, None]
        >>> ARTIFACTS["all_white"].insert is None
        True
        >>> _ = ARTIFACTS.pop("all_white")  # keep the doctest side-effect free
    """

    def add(fn: Detector) -> Detector:
        register_artifact(name, detect=fn, threshold=threshold)
        return fn

    return add


def get_artifact(name: str) -> Artifact:
    """The artifact called ``name``; the error lists the registered ones."""
    try:
        return ARTIFACTS[name]
    except KeyError:
        raise ValueError(f"unknown artifact {name!r}; choose one of: {', '.join(sorted(ARTIFACTS))}") from None


def get_detector(name: str) -> Detector:
    """The detector of the artifact called ``name``."""
    return get_artifact(name).detect


class _View(Mapping):
    """Read-only view of one field of every registered artifact (the registry stays the one source)."""

    def __init__(self, field: str) -> None:
        self.field = field

    def __getitem__(self, key: str) -> Any:
        return getattr(ARTIFACTS[key], self.field)

    def __iter__(self) -> Iterator[str]:
        return iter(ARTIFACTS)

    def __len__(self) -> int:
        return len(ARTIFACTS)


#: detector of every registered artifact (read-only view of :data:`ARTIFACTS`)
DETECTORS: Mapping[str, Detector] = _View("detect")
#: decision threshold of every registered artifact (read-only view of :data:`ARTIFACTS`)
DEFAULT_THRESHOLDS: Mapping[str, float] = _View("threshold")

register_artifact("ring", detect_ring, RING_THRESHOLD, insert=insert_ring, remove=remove_ring)
register_artifact(
    "dark_corners", detect_dark_corners, DARK_CORNERS_THRESHOLD, insert=insert_dark_corners, remove=remove_ring
)
register_artifact("marker", detect_marker, MARKER_THRESHOLD, insert=insert_marker)
register_artifact("text_marker", detect_text_marker, TEXT_MARKER_THRESHOLD, insert=insert_text_marker)
