"""Explanation infidelity (Yeh et al. 2019, NeurIPS, arXiv:1901.09392) with Gaussian "noisy baseline" perturbations.

    INFD_i = E_I[(beta * I^T Phi_i - (f(x_i) - f(x_i - I)))^2],  I ~ N(0, noise_std^2)

``f`` is the score of the explained class (logit by default). With ``normalize=True`` (default) ``beta`` is the
least-squares scale ``E[I^T Phi * df] / E[(I^T Phi)^2]`` per image (the authors' code, captum's
``normalize=True``), so the score does not depend on the heatmap's scale -- needed to compare LRP (logit units)
with Grad-CAM (arbitrary units). Lower is better.

The noise ``I`` is drawn per pixel and **shared by the colour channels**: then ``I^T Phi`` is the same for the
channel-summed map ``(N, H, W)`` the explainers return and for the channel-resolved relevance ``(N, C, H, W)``
(``sum_c sum_hw I_hw Phi_chw = sum_hw I_hw sum_c Phi_chw``), so no information is lost by summing channels.
"""

from __future__ import annotations

import torch
from torch import nn

from ._evaluation import Score, check_batch, generator, target_scores

__all__ = ["infidelity", "infidelity_noise"]


def infidelity_noise(shape: tuple[int, ...], samples: int, noise_std: float, seed: int = 0) -> torch.Tensor:
    """The perturbations ``I`` ``(N, samples, 1, H, W)`` (shared by channels) used by :func:`infidelity` (CPU)."""
    n, _, h, w = shape
    return torch.randn((n, samples, 1, h, w), generator=generator(seed)) * noise_std


def infidelity(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor | int,
    heatmaps: torch.Tensor,
    samples: int = 10,
    noise_std: float = 0.1,
    normalize: bool = True,
    score: Score = "logit",
    seed: int = 0,
    batch_size: int = 256,
) -> torch.Tensor:
    """Infidelity per image ``(N,)``.

    Args:
        model: classifier; evaluated on an eval-mode copy (never changed).
        images: ``(N, C, H, W)`` model input.
        targets: explained class per image.
        heatmaps: ``(N, H, W)`` map or ``(N, C, H, W)`` relevance of the explained class.
        samples: Monte-Carlo perturbations per image.
        noise_std: standard deviation of ``I`` in model-input units.
        normalize: rescale the heatmap by the optimal ``beta`` (scale invariant).
        score: ``"logit"`` or ``"probability"``.
        seed: seeds the noise (:func:`infidelity_noise`).
        batch_size: perturbed images per forward pass.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2))
        >>> x = torch.rand(2, 3, 8, 8)
        >>> exact = net[1].weight[0].detach().reshape(3, 8, 8).expand(2, 3, 8, 8)  # gradient of a linear model
        >>> bool(infidelity(net, x, 0, exact).max() < 1e-8)
        True
    """
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    x, t = check_batch(model, images, targets)
    n = x.shape[0]
    heat = heatmaps.detach().float().to(x.device)
    if heat.ndim == 4:
        heat = heat.sum(1)
    if heat.shape != (n, *x.shape[2:]):
        raise ValueError(f"heatmaps must be (N, H, W) = {(n, *x.shape[2:])}, got {tuple(heatmaps.shape)}")
    noise = infidelity_noise(tuple(x.shape), samples, noise_std, seed).to(x.device)
    perturbed = (x[:, None] - noise).flatten(0, 1)  # x - I, image i sample s at row i * samples + s
    f0 = target_scores(model, x, t, score, batch_size)
    fp = target_scores(model, perturbed, t.repeat_interleave(samples), score, batch_size).reshape(n, samples)
    delta = f0[:, None] - fp  # (N, S)
    dot = (noise[:, :, 0] * heat[:, None]).flatten(2).sum(2)  # I^T Phi, (N, S)
    if normalize:
        beta = (dot * delta).mean(1) / (dot * dot).mean(1)
        beta = torch.where(torch.isfinite(beta), beta, torch.zeros_like(beta))  # all-zero map: beta undefined
        dot = beta[:, None] * dot
    return ((dot - delta) ** 2).mean(1)
