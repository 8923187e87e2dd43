"""Region perturbation / pixel flipping and AOPC (Samek et al. 2017, IEEE TNNLS 28(11); Bach et al. 2015).

The image is tiled into non-overlapping ``patch x patch`` regions (the last row/column may be partial), each scored
by the *sum* of its heatmap values (as Quantus' ``RegionPerturbation``). Regions are then replaced cumulatively, in
``steps`` equal increments, most relevant first (``"morf"``), least relevant first (``"lerf"``) or in a seeded random
order (``"random"``, the baseline), and the model's score for the explained class is recorded after every step:

    curve[i, k] = f(x_i^(k)),  k = 0..steps  (k = 0: the unperturbed image)
    AOPC_i = 1/(steps+1) * sum_{k=0..steps} (f(x_i^(0)) - f(x_i^(k)))

A faithful heatmap makes the score drop fast under MoRF: a larger MoRF AOPC is better, and it should beat the random
order. Note Quantus returns ``f(x^(0)) - f(x^(k))`` for ``k = 1..L`` only (its mean is this AOPC times (L+1)/L).
"""

from __future__ import annotations

import math
from typing import Literal, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from ._evaluation import Score, check_batch, generator, target_scores

__all__ = ["Order", "Replacement", "pixel_flipping", "patch_order", "replacement_values"]

Order = Literal["morf", "lerf", "random"]
#: a constant (in model-input units; 0 is the dataset mean for normalised inputs), ``"mean"`` (per-image channel
#: means), ``"blur"`` (a Gaussian-blurred copy), ``"uniform"`` (per-pixel noise in the image's range, Samek et al.) or
#: a tensor broadcastable to the images
Replacement = Union[float, str, torch.Tensor]


def patch_order(
    heatmaps: Optional[torch.Tensor], n: int, size: tuple[int, int], patch: int, order: Order, seed: int = 0
) -> torch.Tensor:
    """Patch indices ``(n, P)`` in perturbation order; ``P = ceil(H/patch) * ceil(W/patch)``, row-major patch ids.

    Ties keep row-major order (stable sort), so the order is deterministic.
    """
    h, w = size
    hp, wp = math.ceil(h / patch), math.ceil(w / patch)
    if order == "random":
        g = generator(seed)
        return torch.stack([torch.randperm(hp * wp, generator=g) for _ in range(n)])
    if order not in ("morf", "lerf"):
        raise ValueError(f"order must be 'morf', 'lerf' or 'random', got {order!r}")
    if heatmaps is None:
        raise ValueError(f"order={order!r} needs heatmaps (only order='random' works without)")
    heat = heatmaps.detach().double().cpu()
    if heat.ndim == 4:  # channel-resolved relevance: a patch's relevance is summed over channels too
        heat = heat.sum(1)
    if heat.shape != (n, h, w):
        raise ValueError(f"heatmaps must be (N, H, W) = {(n, h, w)} like the images, got {tuple(heat.shape)}")
    padded = F.pad(heat, (0, wp * patch - w, 0, hp * patch - h))  # zero relevance outside the image
    sums = padded.reshape(n, hp, patch, wp, patch).sum(dim=(2, 4)).reshape(n, hp * wp)
    return sums.argsort(dim=1, descending=order == "morf", stable=True)


def replacement_values(images: torch.Tensor, replacement: Replacement, patch: int, seed: int = 0) -> torch.Tensor:
    """The values that replace perturbed pixels, same shape as ``images`` ``(N, C, H, W)``."""
    if isinstance(replacement, torch.Tensor):
        return replacement.to(images).expand_as(images)
    if isinstance(replacement, (int, float)) and not isinstance(replacement, bool):
        return torch.full_like(images, float(replacement))
    if replacement == "mean":
        return images.mean(dim=(2, 3), keepdim=True).expand_as(images)
    if replacement == "blur":
        from torchvision.transforms.functional import gaussian_blur

        k = 2 * patch + 1  # a blur as wide as the patch removes the patch's detail but keeps its colour
        return gaussian_blur(images, [k, k], [patch / 2.0, patch / 2.0])
    if replacement == "uniform":
        lo = images.amin(dim=(1, 2, 3), keepdim=True)
        hi = images.amax(dim=(1, 2, 3), keepdim=True)
        noise = torch.rand(images.shape, generator=generator(seed)).to(images)
        return lo + noise * (hi - lo)
    raise ValueError(f"replacement must be a number, a tensor, 'mean', 'blur' or 'uniform', got {replacement!r}")


def pixel_flipping(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor | int,
    heatmaps: Optional[torch.Tensor] = None,
    patch: int = 8,
    steps: int = 20,
    order: Order = "morf",
    replacement: Replacement = 0.0,
    fraction: float = 1.0,
    score: Score = "logit",
    seed: int = 0,
    batch_size: int = 256,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Region-perturbation curve and AOPC per image.

    Args:
        model: classifier mapping ``(N, C, H, W)`` to logits; evaluated on an eval-mode copy (never changed).
        images: ``(N, C, H, W)`` model input.
        targets: explained class per image (an int applies to all).
        heatmaps: ``(N, H, W)`` (or channel-resolved ``(N, C, H, W)``) relevance; not needed for ``order="random"``.
        patch: side of the square regions, in pixels.
        steps: number of perturbation steps; step ``k`` has replaced ``round(k * fraction * P / steps)`` of the ``P``
            regions (``steps = P`` and ``fraction = 1`` flips one region per step, as Quantus).
        order: ``"morf"`` (most relevant first), ``"lerf"`` (least relevant first) or ``"random"`` (seeded).
        replacement: value of removed pixels, see :data:`Replacement` (default 0: the dataset mean for normalised
            input, deterministic so scores are comparable across epochs).
        fraction: share of the regions replaced at the last step.
        score: ``"logit"`` (default, no softmax saturation) or ``"probability"``.
        seed: seeds the random order and the ``"uniform"`` replacement.
        batch_size: perturbed images per forward pass.

    Returns:
        ``(curve, aopc)``: ``curve`` ``(N, steps + 1)`` scores after 0..steps steps, ``aopc`` ``(N,)``.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 2))
        >>> x = torch.rand(2, 3, 16, 16)
        >>> curve, aopc = pixel_flipping(net, x, 0, torch.rand(2, 16, 16), patch=4, steps=8)
        >>> tuple(curve.shape), tuple(aopc.shape)
        ((2, 9), (2,))
    """
    if patch < 1 or steps < 1:
        raise ValueError(f"patch and steps must be >= 1, got patch={patch}, steps={steps}")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    x, t = check_batch(model, images, targets)
    n, c, h, w = x.shape
    hp, wp = math.ceil(h / patch), math.ceil(w / patch)
    total = round(fraction * hp * wp)
    if steps > total:
        raise ValueError(
            f"steps={steps} exceeds the {total} regions to flip ({hp}x{wp} patches of {patch} px, fraction "
            f"{fraction}); use fewer steps or a smaller patch"
        )
    ordered = patch_order(heatmaps, n, (h, w), patch, order, seed).to(x.device)
    # rank[i, p] = position of patch p in image i's order; step k replaces every patch with rank < count[k]
    rank = torch.empty_like(ordered).scatter_(1, ordered, torch.arange(hp * wp, device=x.device).expand(n, -1))
    counts = [round(k * total / steps) for k in range(steps + 1)]
    fill = replacement_values(x, replacement, patch, seed)

    def perturbed(k: int) -> torch.Tensor:
        m = (rank < counts[k]).reshape(n, 1, hp, wp).to(x.dtype)
        m = m.repeat_interleave(patch, 2).repeat_interleave(patch, 3)[:, :, :h, :w]
        return x * (1 - m) + fill * m

    # all (steps + 1) x N images through the model in chunks of batch_size (one big batch is fastest on CPU)
    per_chunk = max(1, batch_size // n)
    scores = []
    for k0 in range(0, steps + 1, per_chunk):
        ks = range(k0, min(steps + 1, k0 + per_chunk))
        batch = torch.cat([perturbed(k) for k in ks])
        scores.append(target_scores(model, batch, t.repeat(len(ks)), score, batch_size).reshape(len(ks), n))
    curve = torch.cat(scores).T.contiguous()  # (N, steps + 1)
    aopc = (curve[:, :1] - curve).mean(1)
    return curve, aopc
