"""Seeded X-ray-like images for detector tests: smooth body, dark lung ellipses, bright spine, ribs, noise."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def xray_images(n: int, size: int = 128, seed: int = 0, black_bars: bool = False) -> torch.Tensor:
    """``(n, 3, size, size)`` gray images in [0, 1] that look like frontal chest X-rays at low resolution.

    Each image gets its own exposure, body shape and lung size; the spine/mediastinum is a bright vertical band and
    the ribs faint bright arcs, all blurred (anatomy has soft edges). With ``black_bars`` some images get a black
    bar on one side and a 1-px bright border, the awkward cases of real scans.
    """
    g = torch.Generator().manual_seed(seed)

    def u(lo: float, hi: float) -> float:
        return lo + (hi - lo) * torch.rand((), generator=g).item()

    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    out = torch.empty(n, 3, size, size)
    for i in range(n):
        body = u(0.45, 0.7) + u(-0.15, 0.15) * yy + u(-0.1, 0.1) * xx
        cy, ry, rx = u(0.45, 0.55), u(0.25, 0.33), u(0.12, 0.17)
        lungs = torch.zeros_like(yy)
        for cx in (0.5 - u(0.17, 0.22), 0.5 + u(0.17, 0.22)):
            lungs = torch.maximum(lungs, (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1).float())
        img = body - u(0.2, 0.35) * lungs
        img = img + u(0.1, 0.25) * (torch.abs(xx - 0.5) < u(0.04, 0.07)).float()  # spine / mediastinum
        ribs = (torch.sin((yy + 0.3 * (xx - 0.5) ** 2) * u(25, 35)) > 0.7).float() * lungs
        img = img + u(0.03, 0.08) * ribs
        k = max(3, size // 20) | 1
        img = F.avg_pool2d(F.pad(img[None, None], (k // 2,) * 4, mode="replicate"), k, 1)[0, 0]
        img = img + 0.02 * torch.randn(size, size, generator=g)
        if black_bars and i % 2 == 0:
            bar = max(2, int(u(0.05, 0.12) * size))
            img[:, :bar] = 0.0
            img[0, :] = 1.0  # 1-px border
        out[i] = img.clamp(0, 1)[None].expand(3, -1, -1)
    return out
