"""Seeded artifact inserters returning the image *and* the ground-truth artifact mask.

Used by the synthetic dataset (the planted shortcut) and by counterfactual reliance tests (insert the artifact into
clean images of another class and measure the shift in predicted probability).
"""

from __future__ import annotations

import math

import torch

__all__ = ["ring_mask", "insert_ring"]


def ring_mask(
    height: int,
    width: int,
    radius: float = 0.95,
    center: tuple[float, float] = (0.0, 0.0),
    edge: float = 0.04,
) -> torch.Tensor:
    """Soft microscope-vignette mask ``(H, W)`` in [0, 1]: 1 outside the field-of-view disc, 0 inside.

    Args:
        radius: disc radius as a fraction of half the shorter side (1.0 touches the borders; the corners stay dark).
        center: disc centre offset as a fraction of half the side lengths, (dy, dx).
        edge: width of the soft transition, as a fraction of half the shorter side.
    """
    half = min(height, width) / 2.0
    ys = torch.arange(height, dtype=torch.float32) - (height - 1) / 2.0 - center[0] * height / 2.0
    xs = torch.arange(width, dtype=torch.float32) - (width - 1) / 2.0 - center[1] * width / 2.0
    dist = torch.sqrt(ys[:, None] ** 2 + xs[None, :] ** 2) / half
    return ((dist - radius) / max(edge, 1e-6)).clamp(0.0, 1.0)


def insert_ring(
    images: torch.Tensor,
    generator: torch.Generator | None = None,
    radius_range: tuple[float, float] = (0.8, 1.02),
    darkness_range: tuple[float, float] = (0.85, 1.0),
    max_offset: float = 0.05,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Insert a dark microscope ring (vignette) into ``images`` ``(N, C, H, W)`` in [0, 1].

    Each image gets its own seeded radius, darkness and small centre offset, as dermatoscope rings vary.

    Returns:
        ``(ringed images, masks)`` where masks are ``(N, H, W)`` bool, True where the ring darkens the image
        (soft mask > 0.5).
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got {tuple(images.shape)}")
    n, _, h, w = images.shape
    out = images.clone()
    masks = torch.zeros(n, h, w, dtype=torch.bool)
    for i in range(n):
        r = _uniform(generator, *radius_range)
        dark = _uniform(generator, *darkness_range)
        angle = _uniform(generator, 0.0, 2 * math.pi)
        off = _uniform(generator, 0.0, max_offset)
        soft = ring_mask(h, w, radius=r, center=(off * math.sin(angle), off * math.cos(angle)))
        soft = soft.to(images.device, images.dtype)
        out[i] = out[i] * (1.0 - dark * soft)
        masks[i] = (soft > 0.5).cpu()
    return out, masks


def _uniform(generator: torch.Generator | None, low: float, high: float) -> float:
    return low + (high - low) * torch.rand((), generator=generator).item()
