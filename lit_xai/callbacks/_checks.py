"""Checks the monitors run once at fit start on what they are given (probe images, their tags), so that bad input
fails before the first epoch with the monitor's name, not after an epoch deep inside an explainer."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..explainers.inputs import check_finite, check_images

__all__ = ["check_probes", "check_unique_tags"]


def check_probes(probes: Any, who: str) -> None:
    """Raise when the probe set is empty, not an ``(N, C, H, W)`` float batch, or holds NaN/Inf images (named by id).

    Example:
        >>> import torch
        >>> from lit_xai.probes import probes_from_tensors
        >>> check_probes(probes_from_tensors(torch.zeros(0, 3, 8, 8), torch.zeros(0)), "ExplanationMonitor")
        Traceback (most recent call last):
        ...
        ValueError: ExplanationMonitor: probe images are an empty batch (0, 3, 8, 8): nothing to explain; pass at \
least one image (is the validation set or the probe selection empty?)
    """
    check_images(probes.images, who, what="probe images")
    check_finite(probes.images, who, ids=list(probes.ids), what="probe images")


def check_unique_tags(callbacks: Iterable[Any]) -> None:
    """Raise when two lit_xai monitors of one class share a ``tag`` (their pictures, scalars and checkpoint state
    would overwrite each other); Lightning's own message ("state_key must be unique") does not name ``tag``.

    Example:
        >>> from lit_xai.callbacks import ExplanationMonitor
        >>> check_unique_tags([ExplanationMonitor(tag="XAI"), ExplanationMonitor(tag="XAI")])
        Traceback (most recent call last):
        ...
        ValueError: two ExplanationMonitor callbacks have tag='XAI': give each its own tag (e.g. tag='XAI' and \
tag='XAI_2'); the tag prefixes everything a monitor logs and is its checkpoint state_key
    """
    from .base import MonitorBase

    seen: set[tuple[str, str]] = set()
    for cb in callbacks:
        if not isinstance(cb, MonitorBase):
            continue
        key = (type(cb).__name__, cb.tag)
        if key in seen:
            raise ValueError(
                f"two {key[0]} callbacks have tag={cb.tag!r}: give each its own tag (e.g. tag={cb.tag!r} and "
                f"tag='{cb.tag}_2'); the tag prefixes everything a monitor logs and is its checkpoint state_key"
            )
        seen.add(key)
