"""Does a model *rely* on an artifact? Relevance inside the artifact mask, and counterfactual insertion/removal.

Pure functions on a model and tensors (no Lightning):

* :func:`relevance_in_mask` — how concentrated a heatmap's positive relevance is on the artifact pixels, relative
  to the artifact's share of the image (1 = no preference);
* :func:`counterfactual_shift` — insert the artifact into clean images (of classes other than ``target_class``) and
  measure the paired shift of P(``target_class``);
* :func:`removal_shift` — remove (inpaint) the artifact from images that carry it and measure the drop.

The model is put in ``eval()`` for the measurements and its per-module ``training`` flags are restored in
``finally``; predictions run under ``torch.no_grad()``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from scipy import stats
from torch import nn

from ..artifacts.inserters import insert_ring, remove_ring
from ..contracts import probabilities

__all__ = [
    "relevance_in_mask",
    "predict_proba",
    "predict_logits",
    "log_odds",
    "paired_shift",
    "counterfactual_shift",
    "removal_shift",
]

#: an inserter: ``(images01, generator) -> (images01 with the artifact, masks)``
InsertFn = Callable[..., Any]


def relevance_in_mask(heatmaps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Concentration of positive relevance on the mask: share of positive relevance inside / share of the area.

    ``score_i = (sum(R+ * M) / sum(R+)) / (sum(M) / (H * W))`` with ``R+ = clamp(R, min=0)``.

    * 1 means no preference (relevance spread like area), > 1 relevance concentrated on the artifact (e.g. 4 =
      four times the mass a uniform map would put there), < 1 the model looks elsewhere. The maximum is
      ``H * W / sum(M)``.
    * **Sign choice:** only positive relevance counts, because it is the evidence *for* the explained class (the
      shortcut question is "does the ring speak for melanoma?"); negative relevance is evidence against and would
      cancel it. This matches relevance mass accuracy on clamped maps (Arras et al. 2022). Use ``heatmaps.abs()``
      to measure attention of either sign (as Reveal-to-Revise's artifact relevance does).
    * NaN where it is undefined: an empty mask (no artifact to score) or a map without positive relevance.
      Aggregate with ``torch.nanmean``. A full mask gives exactly 1.

    Args:
        heatmaps: ``(N, H, W)`` signed relevance (``(N, C, H, W)`` is summed over channels first).
        masks: ``(N, H, W)`` bool artifact masks (e.g. from :func:`lit_xai.artifacts.detect_ring`).

    Returns:
        ``(N,)`` float scores.

    Example:
        >>> import torch
        >>> heat = torch.zeros(1, 4, 4); heat[0, 0, 0] = 1.0
        >>> mask = torch.zeros(1, 4, 4, dtype=torch.bool); mask[0, :2, :2] = True
        >>> relevance_in_mask(heat, mask)  # all relevance on a quarter of the image
        tensor([4.])
    """
    if heatmaps.ndim == 4:
        heatmaps = heatmaps.sum(1)
    if heatmaps.ndim != 3 or masks.shape != heatmaps.shape:
        raise ValueError(
            f"heatmaps (N, H, W) and masks (N, H, W) must match, got {tuple(heatmaps.shape)} and {tuple(masks.shape)}; "
            "resize the heatmaps to the image size first"
        )
    pos = heatmaps.detach().float().clamp_min(0.0).flatten(1)
    m = masks.to(pos.device).bool().flatten(1)
    total = pos.sum(1)
    inside = (pos * m).sum(1)
    area = m.float().mean(1)
    score = (inside / total) / area
    return torch.where((area > 0) & (total > 0), score, torch.full_like(score, math.nan))


@contextlib.contextmanager
def _evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode; every module's ``training`` flag restored afterwards, even on error."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        yield model
    finally:
        for module, mode in modes:
            module.training = mode


def _probabilities(logits: torch.Tensor, task: str) -> torch.Tensor:
    if logits.ndim != 2:
        raise ValueError(f"the model must return logits (N, K), got shape {tuple(logits.shape)}")
    if task in ("binary", "multiclass") and logits.shape[1] < 2:
        raise ValueError(
            "binary/multiclass models must return >= 2 logits (binary uses two logits + softmax); wrap a single-logit "
            "model with lit_xai.contracts.TwoLogitBinary"
        )
    return probabilities(logits, task)


def predict_logits(
    model: nn.Module,
    images01: torch.Tensor,
    normalize: Callable[[torch.Tensor], torch.Tensor] | None = None,
    batch_size: int = 64,
) -> torch.Tensor:
    """The model's float32 logits ``(N, K)`` of images in [0, 1] (eval mode, ``torch.no_grad()``, flags restored)."""
    param = next(model.parameters(), None)
    device = param.device if param is not None else images01.device
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    chunks = []
    with _evaluating(model), torch.no_grad():
        for i in range(0, images01.shape[0], batch_size):
            x = images01[i : i + batch_size].to(device=device, dtype=dtype)
            if normalize is not None:
                x = normalize(x)
            logits = model(x).float()
            if logits.ndim != 2:
                raise ValueError(f"the model must return logits (N, K), got shape {tuple(logits.shape)}")
            chunks.append(logits.cpu())
    return torch.cat(chunks) if chunks else torch.zeros(0, 0)


def predict_proba(
    model: nn.Module,
    images01: torch.Tensor,
    normalize: Callable[[torch.Tensor], torch.Tensor] | None = None,
    task: str = "multiclass",
    batch_size: int = 64,
) -> torch.Tensor:
    """Class probabilities ``(N, K)`` of images in [0, 1]: softmax (binary/multiclass) or sigmoid (multilabel).

    Runs in eval mode under ``torch.no_grad()`` and restores the model's ``training`` flags.

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 2))
        >>> predict_proba(net, torch.rand(5, 3, 4, 4)).sum(1).allclose(torch.ones(5))
        True
    """
    logits = predict_logits(model, images01, normalize, batch_size)
    if len(logits) == 0:
        return logits
    return _probabilities(logits, task)


def log_odds(logits: torch.Tensor, target_class: int, task: str = "multiclass") -> torch.Tensor:
    """Log-odds of ``target_class`` per row, ``log(p / (1 - p))``, from the logits (float64, finite where p is 0 or 1).

    Softmax (binary / multiclass): ``z_t - logsumexp(z_others)``; sigmoid (multilabel): ``z_t``. A probability that
    float32 rounds to 1.0 still has a finite log-odds, so an effect that P cannot show any more (a saturated
    prediction) shows here.

    Example:
        >>> import torch
        >>> log_odds(torch.tensor([[0.0, 30.0], [0.0, 0.0]]), 1).tolist()
        [30.0, 0.0]
    """
    z = logits.double()
    if task == "multilabel":
        return z[:, target_class]
    others = torch.cat([z[:, :target_class], z[:, target_class + 1 :]], 1)
    return z[:, target_class] - torch.logsumexp(others, 1)


def _decisions(probs: torch.Tensor, target_class: int, task: str) -> torch.Tensor:
    if task == "multilabel":
        return probs[:, target_class] > 0.5
    return probs.argmax(1) == target_class


def paired_shift(
    model: nn.Module,
    before01: torch.Tensor,
    after01: torch.Tensor,
    target_class: int,
    normalize: Callable[[torch.Tensor], torch.Tensor] | None = None,
    task: str = "multiclass",
    batch_size: int = 64,
) -> dict[str, Any]:
    """Paired change of P(``target_class``) from ``before01`` to ``after01`` (same images, one edit).

    Returns:
        dict with ``n``, ``p_before``/``p_after`` (mean probabilities), ``mean_shift``, ``median_shift``,
        ``std_shift``, ``t_statistic`` and ``p_value`` (paired t-test), ``wilcoxon_p`` (signed-rank test; NaN when
        all shifts are 0 or n < 2), ``flip_rate`` (share whose decision for ``target_class`` changed),
        ``flips_to_target``, ``flips_from_target`` (shares), ``shifts`` (per-image tensor), and on the log-odds of
        ``target_class`` (:func:`log_odds`): ``mean_logit_shift``, the per-image ``logit_shifts`` and the log-odds
        before the edit ``logit_before`` (float64 tensors).
    """
    if before01.shape != after01.shape:
        raise ValueError(f"before and after must have the same shape, got {before01.shape} and {after01.shape}")
    zb = predict_logits(model, before01, normalize, batch_size)
    za = predict_logits(model, after01, normalize, batch_size)
    pb, pa = _probabilities(zb, task), _probabilities(za, task)
    if not 0 <= target_class < pb.shape[1]:
        raise ValueError(f"target_class {target_class} out of range for {pb.shape[1]} model outputs")
    shifts = pa[:, target_class] - pb[:, target_class]
    before_odds = log_odds(zb, target_class, task)
    logit_shifts = log_odds(za, target_class, task) - before_odds
    db, da = _decisions(pb, target_class, task), _decisions(pa, target_class, task)
    n = len(shifts)
    s = shifts.double().numpy()
    t_stat = p_value = wilcoxon_p = math.nan
    if n >= 2 and s.std() > 0:
        t_stat, p_value = (float(v) for v in stats.ttest_rel(pa[:, target_class].numpy(), pb[:, target_class].numpy()))
    if n >= 2 and np.any(s != 0):
        wilcoxon_p = float(stats.wilcoxon(s).pvalue)
    return {
        "n": n,
        "p_before": float(pb[:, target_class].mean()) if n else math.nan,
        "p_after": float(pa[:, target_class].mean()) if n else math.nan,
        "mean_shift": float(s.mean()) if n else math.nan,
        "median_shift": float(np.median(s)) if n else math.nan,
        "std_shift": float(s.std(ddof=1)) if n > 1 else math.nan,
        "t_statistic": t_stat,
        "p_value": p_value,
        "wilcoxon_p": wilcoxon_p,
        "flip_rate": float((db != da).float().mean()) if n else math.nan,
        "flips_to_target": float((~db & da).float().mean()) if n else math.nan,
        "flips_from_target": float((db & ~da).float().mean()) if n else math.nan,
        "mean_logit_shift": float(logit_shifts.mean()) if n else math.nan,
        "shifts": shifts,
        "logit_shifts": logit_shifts,
        "logit_before": before_odds,
    }


def counterfactual_shift(
    model: nn.Module,
    images01: torch.Tensor,
    target_class: int,
    insert_fn: InsertFn = insert_ring,
    normalize: Callable[[torch.Tensor], torch.Tensor] | None = None,
    task: str = "multiclass",
    generator: torch.Generator | None = None,
    seed: int = 0,
    batch_size: int = 64,
) -> dict[str, Any]:
    """Insert the artifact into clean images and measure the paired shift of P(``target_class``).

    Pass clean images of the *other* class(es): a reliant model raises P(``target_class``) when only the artifact
    was added (Winkler et al. 2019; Nauta et al. 2022). ``mean_shift`` ~ 0 and few flips mean no reliance.

    Args:
        model: maps normalized images to logits ``(N, K)`` (binary: two logits).
        images01: ``(N, C, H, W)`` clean images in [0, 1].
        target_class: the class the artifact is suspected to predict.
        insert_fn: ``(images01, generator) -> (images01, masks)``, e.g. :func:`insert_ring`, :func:`insert_marker`.
        normalize: images01 -> model input (e.g. ``datamodule.normalize``); ``None`` feeds [0, 1] images.
        task: ``"binary"``/``"multiclass"`` (softmax) or ``"multilabel"`` (sigmoid).
        generator, seed: randomness of the insertion (``generator`` wins; else a fresh one seeded with ``seed``).

    Returns:
        :func:`paired_shift`'s dict plus ``masks`` (the inserted artifact masks).

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 2))
        >>> out = counterfactual_shift(net, torch.rand(8, 3, 16, 16), target_class=1)
        >>> sorted(k for k in out if k.startswith("flip"))
        ['flip_rate', 'flips_from_target', 'flips_to_target']
    """
    if images01.ndim != 4:
        raise ValueError(f"images01 must be (N, C, H, W), got {tuple(images01.shape)}")
    gen = generator if generator is not None else torch.Generator().manual_seed(seed)
    inserted = insert_fn(images01, gen)
    after, masks = inserted if isinstance(inserted, tuple) else (inserted, None)
    out = paired_shift(model, images01, after, target_class, normalize, task, batch_size)
    out["masks"] = masks
    return out


def removal_shift(
    model: nn.Module,
    images01: torch.Tensor,
    target_class: int,
    masks: torch.Tensor | None = None,
    remove_fn: Callable[..., Any] = remove_ring,
    normalize: Callable[[torch.Tensor], torch.Tensor] | None = None,
    task: str = "multiclass",
    batch_size: int = 64,
) -> dict[str, Any]:
    """Remove (inpaint) the artifact from images that carry it and measure the paired shift of P(``target_class``).

    A reliant model *loses* confidence: ``mean_shift`` clearly negative and ``flips_from_target`` > 0.

    Args:
        images01: ``(N, C, H, W)`` images with the artifact, in [0, 1].
        masks: ``(N, H, W)`` artifact masks; ``None`` lets ``remove_fn`` estimate them (:func:`remove_ring`
            uses :func:`lit_xai.artifacts.detect_ring`).
        remove_fn: ``(images01, masks) -> (images01, masks)``.
        target_class, normalize, task, batch_size: as in :func:`counterfactual_shift`.

    Returns:
        :func:`paired_shift`'s dict plus ``masks`` (the removed regions).
    """
    if images01.ndim != 4:
        raise ValueError(f"images01 must be (N, C, H, W), got {tuple(images01.shape)}")
    removed = remove_fn(images01, masks)
    after, used = removed if isinstance(removed, tuple) else (removed, masks)
    out = paired_shift(model, images01, after, target_class, normalize, task, batch_size)
    out["masks"] = used
    return out
