"""Checks of the images an explainer or a monitor is given: a batch ``(N, C, H, W)`` of floating-point model input.

Each check raises an error that says what is wrong and how to fix it, instead of an error from deep inside a
convolution, a ``torch.cat`` of nothing, or (worse) a silently wrong result: a single image ``(C, H, W)`` read as a
batch of ``C`` one-channel images, or ``uint8`` pixels 0-255 explained as if they were normalised input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["check_finite", "check_images", "finite_rows", "warn_if_nonfinite"]


def check_images(images: Any, who: str = "explainer", what: str = "images") -> torch.Tensor:
    """``images`` if it is a non-empty floating-point ``(N, C, H, W)`` tensor; else an error naming ``who``.

    Example:
        >>> check_images(torch.zeros(2, 3, 8, 8)).shape
        torch.Size([2, 3, 8, 8])
        >>> check_images(torch.zeros(3, 8, 8), "LRP")
        Traceback (most recent call last):
        ...
        ValueError: LRP: images must be a batch (N, C, H, W), got shape (3, 8, 8) (one image without its batch \
dimension?); add it with images.unsqueeze(0)
    """
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{who}: {what} must be a torch.Tensor (N, C, H, W), got {type(images).__name__}")
    if images.ndim != 4:
        hint = (
            " (one image without its batch dimension?); add it with images.unsqueeze(0)"
            if images.ndim == 3
            else "; pass a batch of images (N, C, H, W)"
        )
        raise ValueError(f"{who}: {what} must be a batch (N, C, H, W), got shape {tuple(images.shape)}{hint}")
    if images.shape[0] == 0:
        raise ValueError(
            f"{who}: {what} are an empty batch {tuple(images.shape)}: nothing to explain; pass at least one image "
            "(is the validation set or the probe selection empty?)"
        )
    if not images.is_floating_point():
        raise TypeError(
            f"{who}: {what} have dtype {images.dtype}; pass the floating-point input the model is trained on (e.g. "
            "images.float() / 255, normalised as in training), not raw integer pixels"
        )
    return images


def check_finite(images: torch.Tensor, who: str, ids: Sequence[int] | None = None, what: str = "images") -> None:
    """Raise when some of ``images`` contain NaN/Inf, naming them (by ``ids``, else by position).

    Example:
        >>> x = torch.zeros(2, 1, 2, 2); x[1, 0, 0, 0] = float("nan")
        >>> check_finite(x, "ExplanationMonitor", ids=[7, 9])
        Traceback (most recent call last):
        ...
        ValueError: ExplanationMonitor: 1 of 2 images contain NaN/Inf (#9); their explanations would be NaN. Fix the \
data (decoding, normalisation by a zero std) or leave those images out
    """
    bad = (~torch.isfinite(images.reshape(images.shape[0], -1))).any(1).nonzero().flatten().tolist()
    if bad:
        names = [ids[i] for i in bad] if ids is not None else bad
        shown = ", ".join(f"#{n}" for n in names[:8]) + (", ..." if len(names) > 8 else "")
        raise ValueError(
            f"{who}: {len(bad)} of {images.shape[0]} {what} contain NaN/Inf ({shown}); their explanations would be "
            "NaN. Fix the data (decoding, normalisation by a zero std) or leave those images out"
        )


def finite_rows(*arrays: Any) -> torch.Tensor:
    """``(N,)`` bool: rows whose values are all finite in every given tensor / array (``None`` entries skipped).

    Example:
        >>> finite_rows(torch.tensor([[1.0, 2.0], [float("nan"), 0.0]]), None).tolist()
        [True, False]
    """
    keep: torch.Tensor | None = None
    for a in arrays:
        if a is None:
            continue
        t = torch.as_tensor(a)
        rows = torch.isfinite(t.reshape(t.shape[0], -1)).all(1).cpu() if t.is_floating_point() else None
        if rows is None:
            rows = torch.ones(t.shape[0], dtype=torch.bool)
        keep = rows if keep is None else keep & rows
    if keep is None:
        raise ValueError("finite_rows needs at least one tensor")
    return keep


_WARNED_NONFINITE: set[str] = set()


def warn_if_nonfinite(maps: torch.Tensor, method: str) -> None:
    """Warn once per ``method`` when some of ``maps`` ``(N, ...)`` hold NaN/Inf (a NaN image, diverged weights):
    the maps are returned as computed, and the warning names the rows and the likely cause."""
    bad = (~finite_rows(maps)).nonzero().flatten().tolist()
    if bad and method not in _WARNED_NONFINITE:
        import warnings

        _WARNED_NONFINITE.add(method)
        warnings.warn(
            f"{method}: {len(bad)} of {maps.shape[0]} maps (rows {bad[:8]}) are NaN/Inf: the input images or the "
            "model's weights/logits are not finite (check torch.isfinite(images).all() and the training for "
            "divergence); warned once",
            UserWarning,
            stacklevel=3,
        )
