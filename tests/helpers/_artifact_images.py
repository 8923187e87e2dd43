"""Seeded skin-like test images (no datamodule needed) for the artifact tests.

Skin-toned background with smooth shading and sensor noise, a brown irregular "lesion" blob near the centre and
optional hairs. Every colour keeps R >= G >= B like real skin, blood and melanin.
"""

from __future__ import annotations

import math

import torch

__all__ = ["skin_images"]


def skin_images(
    n: int,
    size: int = 64,
    seed: int = 0,
    lesion: bool = True,
    lesion_radius: tuple[float, float] = (0.15, 0.45),
    lesion_darkness: tuple[float, float] = (0.35, 0.75),
    brightness: tuple[float, float] = (0.75, 0.95),
    hairs: int = 0,
) -> torch.Tensor:
    """``(n, 3, size, size)`` images in [0, 1].

    Args:
        lesion_radius: blob radius range, as a fraction of half the side.
        lesion_darkness: how much the blob darkens the skin (1 = black).
        brightness: range of the red channel of the skin (the brightest channel).
        hairs: number of dark thin curved lines per image.
    """
    g = torch.Generator().manual_seed(seed)

    def u(low: float, high: float, *shape: int) -> torch.Tensor:
        return (
            low + (high - low) * torch.rand(*shape, generator=g)
            if shape
            else low + (high - low) * torch.rand((), generator=g).item()
        )

    ax = torch.linspace(-1.0, 1.0, size)
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    out = torch.empty(n, 3, size, size)
    for i in range(n):
        red = u(*brightness)
        skin = torch.tensor([red, red * u(0.72, 0.85), red * u(0.58, 0.72)])
        # smooth illumination gradient (real photos are never flat)
        shade = 1.0 + u(-0.08, 0.08) * xx + u(-0.08, 0.08) * yy
        img = skin[:, None, None] * shade[None]
        if lesion:
            cy, cx = u(-0.15, 0.15), u(-0.15, 0.15)
            rad = u(*lesion_radius)
            theta = torch.atan2(yy - cy, xx - cx)
            # irregular border: radius modulated by a few angular harmonics
            wobble = 1.0 + 0.15 * torch.sin(3 * theta + u(0, 6.28)) + 0.08 * torch.sin(5 * theta + u(0, 6.28))
            dist = torch.sqrt((yy - cy) ** 2 + (xx - cx) ** 2) / (rad * wobble)
            blob = torch.sigmoid((1.0 - dist) * 12.0)
            dark = u(*lesion_darkness)
            brown = torch.tensor([1.0 - dark * 0.75, 1.0 - dark * 0.9, 1.0 - dark])  # keeps R >= G >= B
            img = img * (1.0 - blob[None] + blob[None] * brown[:, None, None])
        for _ in range(hairs):
            # a gently curved line y = b0 + slope * x + bend * x^2 (or the same with x and y swapped)
            b0, slope, bend = u(-1.0, 1.0), math.tan(u(-1.2, 1.2)), u(-0.3, 0.3)
            along, across = (xx, yy) if u(0, 1) < 0.5 else (yy, xx)
            d = (across - (b0 + slope * along + bend * along**2)).abs()
            line = (d < 1.5 / size).float()
            img = img * (1.0 - 0.7 * line[None])
        img = img + 0.02 * torch.randn(3, size, size, generator=g)
        out[i] = img.clamp(0.0, 1.0)
    return out
