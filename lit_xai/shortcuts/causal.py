"""Sham-controlled causal reliance tests with bootstrap confidence intervals.

Does the model *use* an artifact as evidence for a class? Two interventions answer it, each against a sham control
(:mod:`lit_xai.shortcuts.sham`) of the same size and kind:

* :func:`insertion_test` — insert the artifact into clean images of other classes; the sham paints a neutral object
  of the same area on the *same* images. Effect = mean over images of (real shift - sham shift) of P(class),
  paired per image.
* :func:`removal_test` — inpaint the artifact away on images of the class that carry it; the sham inpaints a
  same-shaped region at a random place on images of the class *without* it (same inpainting routine). Effect =
  -(mean real shift - mean sham shift): the drop of P(class) that removing the artifact causes beyond what
  inpainting such a region does anyway (two independent groups).

Both effects are oriented so that **positive = reliance**, in units of probability, with a seeded percentile
bootstrap interval (:func:`bootstrap_effect`). :class:`~lit_xai.shortcuts.AlertRule` reads them.

Example:
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 2))
    >>> out = insertion_test(net, torch.rand(8, 3, 16, 16), target_class=1)
    >>> sorted(k for k in ("effect", "interval", "sham_shift", "n") if k in out)
    ['effect', 'interval', 'n', 'sham_shift']
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from ..artifacts.inserters import insert_ring, remove_ring
from .reliance import paired_shift
from .sham import sham_insert, sham_masks

__all__ = ["bootstrap_effect", "insertion_test", "reach", "removal_test", "summarize_test"]


def bootstrap_effect(
    real: torch.Tensor | np.ndarray,
    sham: torch.Tensor | np.ndarray,
    paired: bool = True,
    sign: float = 1.0,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Sham-corrected effect ``sign * (mean(real) - mean(sham))`` with a percentile bootstrap interval.

    Args:
        real: per-image shifts of the real edit.
        sham: per-image shifts of the sham edit; paired: the same images in the same order.
        paired: resample image indices jointly (paired design) or each group on its own (independent groups).
        sign: ``+1`` or ``-1``, so that a positive effect means reliance (removal: ``-1``, a drop is reliance).
        confidence: two-sided level of the interval.
        resamples: bootstrap resamples (the seeded generator makes the interval reproducible).
        seed: bootstrap seed.

    Returns:
        ``effect``, ``interval`` (``[low, high]``), ``confidence``, ``se`` (bootstrap standard error), ``n``,
        ``n_sham``, ``paired``; NaN effect and interval with fewer than 2 images in a group.

    Example:
        >>> import torch
        >>> out = bootstrap_effect(torch.full((20,), 0.5) + 0.1 * torch.randn(20), torch.zeros(20))
        >>> out["interval"][0] < out["effect"] < out["interval"][1], round(out["effect"], 1)
        (True, 0.5)
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if resamples < 100:
        raise ValueError(f"resamples must be >= 100 for a usable interval, got {resamples}")
    r = np.asarray(torch.as_tensor(real).double().cpu(), dtype=np.float64).ravel()
    s = np.asarray(torch.as_tensor(sham).double().cpu(), dtype=np.float64).ravel()
    if paired and len(r) != len(s):
        raise ValueError(f"paired shifts need the same images: {len(r)} real and {len(s)} sham shifts")
    out: dict[str, Any] = {"n": len(r), "n_sham": len(s), "paired": paired, "confidence": confidence}
    if len(r) < 2 or len(s) < 2:
        return {**out, "effect": math.nan, "interval": [math.nan, math.nan], "se": math.nan}
    rng = np.random.default_rng(seed)
    if paired:
        d = r - s
        means = d[rng.integers(0, len(d), (resamples, len(d)))].mean(1)
        effect = float(d.mean())
    else:
        means = r[rng.integers(0, len(r), (resamples, len(r)))].mean(1)
        means = means - s[rng.integers(0, len(s), (resamples, len(s)))].mean(1)
        effect = float(r.mean() - s.mean())
    alpha = (1.0 - confidence) / 2.0
    low, high = (float(v) for v in np.quantile(sign * means, [alpha, 1.0 - alpha]))
    return {**out, "effect": sign * effect, "interval": [low, high], "se": float(means.std(ddof=1))}


def summarize_test(
    test: str,
    real: dict[str, Any],
    sham: dict[str, Any],
    sham_kind: str,
    split: str,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """One test's evidence from :func:`~lit_xai.shortcuts.paired_shift` results of the real and the sham edit.

    Returns:
        the real edit's statistics (``n``, ``p_before``, ``p_after``, ``mean_shift``, ``flip_rate``, ... as
        :func:`~lit_xai.shortcuts.paired_shift`, without per-image tensors) plus ``test``, ``split``, ``sham``
        (the sham kind), ``sham_shift`` (mean shift under the sham), ``sham_p_before``, ``n_sham``, ``effect``
        (positive = reliance), ``interval``, ``confidence``, ``se`` and ``paired`` -- all in probability units --
        and the same effect on the log-odds of the class where the inputs carry it (``logit_shifts``):
        ``logit_effect``, ``logit_interval`` (same bootstrap draws), ``sham_logit_shift`` and ``reach``: the mean
        change of P(class) that one unit of log-odds in the test's direction (up for insertion, down for removal)
        would cause on the real edit's images. A small ``reach`` means P is saturated there: the test cannot show
        an effect in probability, whatever the model does (:class:`~lit_xai.shortcuts.AlertRule` then reads the
        log-odds).
    """
    paired = test == "insertion"
    stats = bootstrap_effect(
        real["shifts"],
        sham["shifts"],
        paired=paired,
        sign=1.0 if paired else -1.0,
        confidence=confidence,
        resamples=resamples,
        seed=seed,
    )
    out = {k: v for k, v in real.items() if k not in _PER_IMAGE}
    out.update(
        test=test,
        split=split,
        sham=sham_kind,
        sham_shift=sham["mean_shift"],
        sham_p_before=sham["p_before"],
        **{k: stats[k] for k in ("n_sham", "effect", "interval", "confidence", "se", "paired")},
    )
    if "logit_shifts" in real and "logit_shifts" in sham:
        sign = 1.0 if paired else -1.0
        logit = bootstrap_effect(real["logit_shifts"], sham["logit_shifts"], paired, sign, confidence, resamples, seed)
        out.update(
            logit_effect=logit["effect"],
            logit_interval=logit["interval"],
            sham_logit_shift=sham.get("mean_logit_shift", math.nan),
            reach=reach(real["logit_before"], sign),
        )
    return out


#: per-image entries of :func:`~lit_xai.shortcuts.paired_shift` that the summary leaves out
_PER_IMAGE = ("shifts", "masks", "logit_shifts", "logit_before")


def reach(log_odds_before: torch.Tensor | np.ndarray, direction: float = 1.0) -> float:
    """Mean ``|sigmoid(z + direction) - sigmoid(z)|`` over images of log-odds ``z``: how much P(class) one unit of
    log-odds moves there (0.23 at P = 0.5, 0.06 at P = 0.9 upwards, 0.02 at P = 0.99 downwards); NaN without images.

    Example:
        >>> round(reach(torch.zeros(4)), 3), round(reach(torch.full((4,), 20.0), -1.0), 6)
        (0.231, 0.0)
    """
    z = torch.as_tensor(np.asarray(log_odds_before, dtype=np.float64)).double().ravel()
    if len(z) == 0:
        return math.nan
    return float((torch.sigmoid(z + direction) - torch.sigmoid(z)).abs().mean())


def insertion_test(
    model: nn.Module,
    images01: torch.Tensor,
    target_class: int,
    insert_fn: Callable[..., Any] = insert_ring,
    sham: Literal["mean", "shuffle"] = "mean",
    normalize: Callable[[torch.Tensor], torch.Tensor] | None = None,
    task: str = "multiclass",
    seed: int = 0,
    confidence: float = 0.95,
    resamples: int = 2000,
    split: str = "val",
    batch_size: int = 64,
) -> dict[str, Any]:
    """Insert the artifact into clean images (of classes other than ``target_class``) against a sham insertion.

    Args:
        model: maps (normalized) images to logits ``(N, K)``.
        images01: ``(N, C, H, W)`` clean images in [0, 1], normally of the other classes.
        target_class: the class the artifact is suspected to predict.
        insert_fn: ``(images01, generator) -> (images01, masks)``, e.g. :func:`~lit_xai.artifacts.insert_ring`.
        sham: the sham kind of :func:`~lit_xai.shortcuts.sham.sham_insert`.
        normalize: images01 -> model input; ``None`` feeds [0, 1] images.
        task: ``"binary"``/``"multiclass"`` (softmax) or ``"multilabel"`` (sigmoid).
        seed: seeds the insertion (``seed``), the sham (``seed + 1``) and the bootstrap (``seed``).
        confidence, resamples: of the bootstrap interval.
        split: where the images came from (recorded in the result).

    Returns:
        :func:`summarize_test`'s dict (``effect`` = mean paired (real - sham) shift of P(``target_class``)).
    """
    if images01.ndim != 4:
        raise ValueError(f"images01 must be (N, C, H, W), got {tuple(images01.shape)}")
    edited, masks = _split(insert_fn(images01, torch.Generator().manual_seed(seed)))
    control = sham_insert(images01, edited, masks, sham, torch.Generator().manual_seed(seed + 1))
    real = paired_shift(model, images01, edited, target_class, normalize, task, batch_size)
    fake = paired_shift(model, images01, control, target_class, normalize, task, batch_size)
    return summarize_test("insertion", real, fake, sham, split, confidence, resamples, seed)


def removal_test(
    model: nn.Module,
    flagged01: torch.Tensor,
    clean01: torch.Tensor,
    target_class: int,
    masks: torch.Tensor | None = None,
    remove_fn: Callable[..., Any] = remove_ring,
    normalize: Callable[[torch.Tensor], torch.Tensor] | None = None,
    task: str = "multiclass",
    seed: int = 0,
    confidence: float = 0.95,
    resamples: int = 2000,
    split: str = "val",
    batch_size: int = 64,
) -> dict[str, Any]:
    """Inpaint the artifact away on images that carry it, against inpainting a same-shaped region elsewhere.

    Args:
        flagged01: ``(N, C, H, W)`` images of ``target_class`` with the artifact, in [0, 1].
        clean01: ``(M, C, H, W)`` images of ``target_class`` without it (the sham's images).
        masks: ``(N, H, W)`` artifact masks of ``flagged01``; ``None`` lets ``remove_fn`` estimate them.
        remove_fn: ``(images01, masks) -> (images01, masks used)``, the same routine for the real and the sham
            removal.
        seed: seeds the sham regions and the bootstrap.
        model, target_class, normalize, task, confidence, resamples, split: as in :func:`insertion_test`.

    Returns:
        :func:`summarize_test`'s dict (``effect`` = -(mean real shift - mean sham shift): the drop of
        P(``target_class``) caused by removing the artifact beyond what the sham inpainting causes).
    """
    if flagged01.ndim != 4 or clean01.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got {tuple(flagged01.shape)} and {tuple(clean01.shape)}")
    removed, used = _split(remove_fn(flagged01, masks))
    source = masks if masks is not None else used  # the remover's input masks: it grows both alike
    if source is None:
        raise ValueError("remove_fn must return (images, masks used) so the sham can copy the regions' shapes")
    regions = sham_masks(source.cpu(), len(clean01), torch.Generator().manual_seed(seed))
    control, _ = _split(remove_fn(clean01, regions))
    real = paired_shift(model, flagged01, removed, target_class, normalize, task, batch_size)
    fake = paired_shift(model, clean01, control, target_class, normalize, task, batch_size)
    return summarize_test("removal", real, fake, "inpaint elsewhere", split, confidence, resamples, seed)


def _split(out: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    return (out[0], out[1]) if isinstance(out, tuple) else (out, None)
