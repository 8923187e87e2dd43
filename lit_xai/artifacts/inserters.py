"""Seeded artifact inserters returning the image *and* the ground-truth artifact mask.

Used by the synthetic dataset (the planted shortcut) and by counterfactual reliance tests (insert the artifact into
clean images of another class and measure the shift in predicted probability).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["insert_dark_corners", "ring_mask", "insert_ring", "insert_marker", "remove_ring", "MARKER_COLORS"]

#: off-skin marker colours (RGB in [0, 1]): gentian violet, blue ink, green marker, cyan calibration patch
MARKER_COLORS: tuple[tuple[float, float, float], ...] = (
    (0.45, 0.15, 0.60),
    (0.15, 0.25, 0.75),
    (0.15, 0.60, 0.25),
    (0.10, 0.65, 0.75),
)


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


def insert_marker(
    images: torch.Tensor,
    generator: torch.Generator | None = None,
    size_range: tuple[float, float] = (0.08, 0.14),
    border_range: tuple[float, float] = (0.03, 0.2),
    alpha_range: tuple[float, float] = (0.85, 1.0),
    colors: tuple[tuple[float, float, float], ...] = MARKER_COLORS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stamp a small saturated colour marker (ink dot/square, colour patch) near a random border.

    Each image gets a seeded shape (square or disc), size, colour (jittered :data:`MARKER_COLORS`), opacity and
    position: its near edge lies ``border_range`` (fraction of the side) away from one of the four borders.

    Args:
        images: ``(N, 3, H, W)`` in [0, 1].
        size_range: marker side / diameter as a fraction of the shorter image side.

    Returns:
        ``(marked images, masks)``, masks ``(N, H, W)`` bool, True where the marker was stamped.

    Example:
        >>> import torch
        >>> out, masks = insert_marker(torch.full((2, 3, 64, 64), 0.8), torch.Generator().manual_seed(0))
        >>> out.shape, bool(masks.flatten(1).any(1).all())
        (torch.Size([2, 3, 64, 64]), True)
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be RGB (N, 3, H, W), got {tuple(images.shape)}")
    n, _, h, w = images.shape
    out = images.clone()
    masks = torch.zeros(n, h, w, dtype=torch.bool)
    ys = torch.arange(h, dtype=torch.float32)[:, None]
    xs = torch.arange(w, dtype=torch.float32)[None, :]
    for i in range(n):
        side = max(2.0, _uniform(generator, *size_range) * min(h, w))
        gap = _uniform(generator, *border_range)
        along = _uniform(generator, 0.1, 0.9)
        border = int(torch.randint(4, (), generator=generator))
        # top-left corner of the marker's bounding box
        if border in (0, 1):  # top / bottom
            y0 = gap * h if border == 0 else h - gap * h - side
            x0 = along * (w - side)
        else:  # left / right
            x0 = gap * w if border == 2 else w - gap * w - side
            y0 = along * (h - side)
        if _uniform(generator, 0.0, 1.0) < 0.5:
            shape = (ys >= y0) & (ys < y0 + side) & (xs >= x0) & (xs < x0 + side)
        else:
            cy, cx = y0 + side / 2 - 0.5, x0 + side / 2 - 0.5
            shape = (ys - cy) ** 2 + (xs - cx) ** 2 <= (side / 2) ** 2
        color = torch.tensor(colors[int(torch.randint(len(colors), (), generator=generator))])
        color = (color + 0.05 * (2 * torch.rand(3, generator=generator) - 1)).clamp(0.0, 1.0)
        alpha = _uniform(generator, *alpha_range)
        blend = alpha * shape.to(images.dtype).to(images.device)
        out[i] = out[i] * (1 - blend) + blend * color.to(images.device, images.dtype)[:, None, None]
        masks[i] = shape
    return out, masks


def remove_ring(
    images: torch.Tensor,
    masks: torch.Tensor | None = None,
    dilate: int | None = None,
    iterations: int = 50,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inpaint a dark ring / dark corners: fill the masked area from the field of view's border colour.

    The masked pixels start at the per-channel median of a thin band of unmasked pixels along the mask's inner
    edge (the skin next to the ring), then ``iterations`` steps of harmonic diffusion (repeated 3x3 averaging, known
    pixels held fixed) blend the fill smoothly into the shading of the field of view. The mask is dilated first by
    ``dilate`` pixels (default ~2 % of the shorter side) so the soft, half-dark transition of the ring goes too.

    Args:
        images: ``(N, C, H, W)`` in [0, 1].
        masks: ``(N, H, W)`` bool ring masks; ``None`` estimates them with :func:`lit_xai.artifacts.detect_ring`
            (images without a detected ring are returned unchanged).

    Returns:
        ``(inpainted images, masks used)``.

    Example:
        >>> import torch
        >>> skin = torch.full((1, 3, 64, 64), 0.8)
        >>> ringed, masks = insert_ring(skin, torch.Generator().manual_seed(0))
        >>> restored, _ = remove_ring(ringed, masks)
        >>> bool((restored - skin).abs().max() < 0.02)
        True
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got {tuple(images.shape)}")
    n, _, h, w = images.shape
    if masks is None:
        from .detectors import detect_ring

        masks = detect_ring(images)[1]
    if masks.shape != (n, h, w):
        raise ValueError(f"masks must be (N, H, W) = {(n, h, w)}, got {tuple(masks.shape)}")
    masks = masks.to(images.device).bool()
    grow = max(1, round(0.02 * min(h, w))) if dilate is None else dilate
    if grow > 0:
        k = 2 * grow + 1
        masks = F.max_pool2d(masks[:, None].float(), k, 1, grow)[:, 0] > 0
    out = images.clone()
    # only images with something to fill (and some field of view left to take the colour from)
    todo = [i for i in range(n) if masks[i].any() and not masks[i].all()]
    if not todo:
        return out, masks
    holes = masks[todo][:, None]  # (M, 1, H, W)
    img = out[todo]
    edge = (F.max_pool2d(holes.float(), 5, 1, 2) > 0) & ~holes
    for j in range(len(todo)):
        fill = img[j][:, edge[j, 0]].median(dim=1).values
        img[j] = torch.where(holes[j], fill[:, None, None], img[j])
    # diffusion changes hole pixels only and reads one pixel around them: running it on the holes' bounding box
    # (plus that pixel) gives the same fill, and a small tag costs a small box instead of the whole image
    ys, xs = holes.any(0)[0].nonzero(as_tuple=True)
    y0, y1 = max(int(ys.min()) - 1, 0), min(int(ys.max()) + 2, h)
    x0, x1 = max(int(xs.min()) - 1, 0), min(int(xs.max()) + 2, w)
    box, box_holes = img[..., y0:y1, x0:x1], holes[..., y0:y1, x0:x1]
    for _ in range(iterations):
        # replicate padding: the image border is not a source of darkness (at a box edge inside the image the
        # padded pixels are never read: no hole lies on it)
        padded = F.pad(box, (1, 1, 1, 1), mode="replicate")
        rows = padded[..., :-2] + padded[..., 1:-1] + padded[..., 2:]  # the 3x3 mean as two 3-sums: faster
        smooth = (rows[..., :-2, :] + rows[..., 1:-1, :] + rows[..., 2:, :]) / 9.0  # than avg_pool2d on one thread
        box = torch.where(box_holes, smooth, box)
    img[..., y0:y1, x0:x1] = box
    out[todo] = img
    return out, masks


def _uniform(generator: torch.Generator | None, low: float, high: float) -> float:
    return low + (high - low) * torch.rand((), generator=generator).item()


def insert_dark_corners(
    images: torch.Tensor,
    generator: torch.Generator | None = None,
    radius_range: tuple[float, float] = (1.1, 1.3),
    darkness_range: tuple[float, float] = (0.85, 1.0),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Darken the four corners (a dermatoscope's field of view wider than the image, "dark corner artifact").

    A vignette whose radius exceeds the half side: it reaches the corners but not the middle of the edges, which
    is what :func:`lit_xai.artifacts.detect_dark_corners` looks for (a ring reaches the edges too).

    Returns:
        ``(images with dark corners, masks)``, masks ``(N, H, W)`` bool.

    Example:
        >>> import torch
        >>> out, masks = insert_dark_corners(torch.full((1, 3, 32, 32), 0.8), torch.Generator().manual_seed(0))
        >>> bool(masks[0, 0, 0]), bool(masks[0, 16, 0]), bool(masks[0, 16, 16])
        (True, False, False)
    """
    return insert_ring(images, generator, radius_range=radius_range, darkness_range=darkness_range, max_offset=0.0)
