"""Max-sensitivity of an explanation (Yeh et al. 2019, NeurIPS, arXiv:1901.09392), relative version.

    SENS_i = max_{k=1..samples} ||Phi(x_i + delta_ik) - Phi(x_i)||_F / ||Phi(x_i)||_F,  delta ~ U(-radius, radius)^d

as captum's ``sensitivity_max`` (a zero ``||Phi(x_i)||`` counts as 1) and Quantus' ``MaxSensitivity``. The explained
class stays the one of the clean image. Lower is better (a stable explanation).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ._evaluation import Explainer, check_batch, explain, generator

__all__ = ["max_sensitivity", "sensitivity_noise"]


def sensitivity_noise(shape: tuple[int, ...], samples: int, radius: float, seed: int = 0) -> torch.Tensor:
    """The perturbations ``(N, samples, C, H, W)`` :func:`max_sensitivity` uses for images of ``shape`` (CPU)."""
    n = shape[0]
    u = torch.rand((n, samples, *shape[1:]), generator=generator(seed))
    return (2 * u - 1) * radius


def max_sensitivity(
    explainer: Explainer,
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor | int,
    radius: float = 0.02,
    samples: int = 10,
    seed: int = 0,
    heatmaps: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Relative max-sensitivity per image ``(N,)`` under uniform L-inf noise of ``radius`` (model-input units).

    All ``N * samples`` noisy images go to the explainer in one call (the explainers batch internally).

    Args:
        explainer: ``(model, images, targets) -> (N, H, W)``, e.g. ``lit_xai.explainers.LRP()``.
        model: classifier; the explainers of the package never change it.
        images: ``(N, C, H, W)`` model input.
        targets: explained class per image (kept for the noisy copies).
        radius: half-width of the uniform noise (captum's default 0.02; Quantus uses 0.2).
        samples: noisy copies per image.
        seed: seeds the noise (:func:`sensitivity_noise`), so values are comparable across epochs.
        heatmaps: ``Phi(x)`` if already computed (saves one explainer call).

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2))
        >>> grad = lambda m, x, t: x.sum(1)  # a toy "explainer"
        >>> max_sensitivity(grad, net, torch.rand(2, 3, 8, 8), 0, samples=3).shape
        torch.Size([2])
    """
    if samples < 1 or radius < 0:
        raise ValueError(f"samples must be >= 1 and radius >= 0, got samples={samples}, radius={radius}")
    x, t = check_batch(model, images, targets)
    n = x.shape[0]
    base = explain(explainer, model, x, t) if heatmaps is None else heatmaps.detach().float().to(x.device)
    noise = sensitivity_noise(tuple(x.shape), samples, radius, seed).to(x.device)
    noisy = (x[:, None] + noise).flatten(0, 1)  # image i, sample s at row i * samples + s (as captum)
    maps = explain(explainer, model, noisy, t.repeat_interleave(samples))
    if maps.shape[1:] != base.shape[1:]:
        raise ValueError(f"heatmaps {tuple(base.shape)} do not match the explainer's maps {tuple(maps.shape)}")
    diff = (maps.reshape(n, samples, -1) - base.reshape(n, 1, -1)).norm(dim=2)
    norm = base.reshape(n, -1).norm(dim=1)
    norm = torch.where(norm == 0, torch.ones_like(norm), norm)
    return (diff / norm[:, None]).amax(1)
