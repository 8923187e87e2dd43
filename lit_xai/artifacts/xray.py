"""Burnt-in text and markers on X-rays: laterality letters (``L``/``R``), rulers, bright label rectangles.

Chest X-ray models are known to read these instead of the lungs (DeGrave et al. 2021, Zech et al. 2018): the
marker style differs between hospitals, and hospitals differ in their share of COVID / pneumonia / normal cases.

* :func:`detect_text_marker` (registered as ``"text_marker"`` beside ``"ring"``, so ``audit_dataset`` and
  ``lit-xai audit --detectors text_marker`` report it per class);
* :func:`insert_text_marker`, a seeded inserter with ground-truth masks, for counterfactual reliance tests.

**How the detector decides.** A burnt-in marker is (1) much brighter than the local median over ~20 % of the
image side (the median ignores anything thinner than that: strokes, rules, labels), (2) near the top of the
image's brightness range, and (3) *sharp-edged*: the pixels just outside it are much darker
than it, whereas bright anatomy (spine, mediastinum, bones) fades out over many pixels. Each connected candidate
component of plausible size gets an edge-contrast score; the image's score is its best component's.

Example:
    >>> import torch
    >>> clean = torch.linspace(0.3, 0.7, 128)[None, None, :, None].expand(2, 3, 128, 128).clone()
    >>> marked, masks = insert_text_marker(clean, torch.Generator().manual_seed(0))
    >>> scores, found = detect_text_marker(torch.cat([clean, marked]))
    >>> (scores >= TEXT_MARKER_THRESHOLD).tolist()
    [False, False, True, True]
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from .detectors import _check_images

__all__ = ["LETTERS", "TEXT_MARKER_THRESHOLD", "detect_text_marker", "insert_text_marker"]

#: default decision threshold of :func:`detect_text_marker` (calibrated on generated X-rays, see the tests)
TEXT_MARKER_THRESHOLD = 0.5

#: 5 x 7 bitmaps of the laterality letters
LETTERS: dict[str, tuple[str, ...]] = {
    "L": ("10000", "10000", "10000", "10000", "10000", "10000", "11111"),
    "R": ("11110", "10001", "10001", "11110", "10100", "10010", "10001"),
}

# top-hat structuring element (fraction of the shorter side): anatomy wider than this is "background"
_TOPHAT = 0.2
# candidate pixel: top-hat residual and brightness relative to the image's brightness range
_MIN_TOPHAT = 0.12
_MIN_RELATIVE_BRIGHTNESS = 0.6
# ignore a thin frame at the image border: 1-px scanner borders and black-bar edges are not burnt-in text
_BORDER = 0.015
# component size bounds (fraction of the image area)
_MIN_AREA = 0.0006
_MAX_AREA = 0.08
# edge contrast (component mean minus the mean of a 2-px ring around it) mapped to [0, 1]
_CONTRAST_ZERO = 0.08
_CONTRAST_FULL = 0.32
# contrast is reduced by this many robust noise sigmas (MAD of the image minus its 3x3 median)
_NOISE_PENALTY = 2.0


def _gray(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 3:
        return 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    return x.mean(1)


def _background(gray: torch.Tensor) -> torch.Tensor:
    """Local median brightness at the scale of :data:`_TOPHAT` (``(N, H, W)`` -> same shape).

    A median, unlike a grey opening, does not sink next to a black bar or the dark air around the body, so the
    bright body edge along a black bar is not mistaken for a marker. It runs on a ~64 px copy (cheap at any size).
    """
    n, h, w = gray.shape
    f = max(1, min(h, w) // 64)
    small = F.avg_pool2d(gray[:, None], f, f, ceil_mode=True)[:, 0] if f > 1 else gray
    k = max(3, int(round(_TOPHAT * min(small.shape[1:]))) | 1)
    med = np.stack([ndimage.median_filter(s, size=k, mode="nearest") for s in small.numpy()])
    back = torch.from_numpy(med)[:, None]
    if f > 1:
        back = F.interpolate(back, size=(h, w), mode="bilinear", align_corners=False)
    return back[:, 0]


def detect_text_marker(
    images01: torch.Tensor, threshold: float = TEXT_MARKER_THRESHOLD
) -> tuple[torch.Tensor, torch.Tensor]:
    """Burnt-in letters, rulers and bright label rectangles on (chest) X-rays.

    Args:
        images01: ``(N, C, H, W)`` in [0, 1] (1 or 3 channels; X-rays are gray). Meant for >= 96 px (on generated
            X-rays: ~1 % false positives at 96 px, 0 % at 224 px; at 64 px ~10 %, as letters become a few pixels).
        threshold: score from which an image is flagged (its mask is then the flagged components).

    Returns:
        ``(scores (N,) in [0, 1], masks (N, H, W) bool)``; masks are empty for unflagged images.
    """
    x = _check_images(images01)
    n, _, h, w = x.shape
    scores = torch.zeros(n)
    masks = torch.zeros(n, h, w, dtype=torch.bool)
    if n == 0 or min(h, w) < 16:
        return scores, masks
    gray = _gray(x).cpu()
    background = _background(gray)
    tophat = gray - background
    lo = torch.quantile(gray.flatten(1), 0.05, dim=1)
    hi = torch.quantile(gray.flatten(1), 0.999, dim=1)
    relative = (gray - lo[:, None, None]) / (hi - lo).clamp(min=0.05)[:, None, None]
    candidates = (tophat > _MIN_TOPHAT) & (relative > _MIN_RELATIVE_BRIGHTNESS)
    b = max(2, int(round(_BORDER * min(h, w))))
    candidates[:, :b] = candidates[:, -b:] = False
    candidates[:, :, :b] = candidates[:, :, -b:] = False
    area = h * w
    ring_struct = np.ones((5, 5), bool)
    g_np = gray.numpy()
    b_np = background.numpy()
    noise = [1.4826 * float(np.median(np.abs(g - ndimage.median_filter(g, size=3, mode="nearest")))) for g in g_np]
    for i in range(n):
        labels, count = ndimage.label(candidates[i].numpy(), structure=np.ones((3, 3), bool))
        if count == 0:
            continue
        sizes = np.bincount(labels.ravel(), minlength=count + 1)
        best = 0.0
        keep = np.zeros(count + 1, bool)
        for c in range(1, count + 1):
            if not _MIN_AREA * area <= sizes[c] <= _MAX_AREA * area:
                continue
            sl = ndimage.find_objects((labels == c).astype(np.int32))[0]
            y0, y1 = max(0, sl[0].start - 3), min(h, sl[0].stop + 3)
            x0, x1 = max(0, sl[1].start - 3), min(w, sl[1].stop + 3)
            comp = labels[y0:y1, x0:x1] == c
            ring = ndimage.binary_dilation(comp, ring_struct) & ~comp & (labels[y0:y1, x0:x1] == 0)
            if not ring.any():
                continue
            patch = g_np[i, y0:y1, x0:x1]
            # the brightest half of the component against the ring: strokes of a letter are bright at their core
            inside = float(np.sort(patch[comp])[len(patch[comp]) // 2 :].mean())
            # the reference is the brighter of the ring and the local background: a bright patch enclosed by dark
            # hairs or ribs is not brighter than its neighbourhood, only than its dark outline
            reference = max(float(np.median(patch[ring])), float(np.median(b_np[i, y0:y1, x0:x1][comp])))
            # and sharp edges only count above the image's own pixel noise (noise is all "sharp edges")
            contrast = inside - reference - _NOISE_PENALTY * noise[i]
            score = min(1.0, max(0.0, (contrast - _CONTRAST_ZERO) / (_CONTRAST_FULL - _CONTRAST_ZERO)))
            best = max(best, score)
            keep[c] = score >= threshold
        scores[i] = best
        if best >= threshold:
            masks[i] = torch.from_numpy(keep[labels])
    return scores, masks


# --------------------------------------------------------------------------------------------------- inserter
def _uniform(generator: torch.Generator | None, low: float, high: float) -> float:
    return low + (high - low) * torch.rand((), generator=generator).item()


def _letter_shape(letter: str, height: int) -> torch.Tensor:
    bitmap = torch.tensor([[c == "1" for c in row] for row in LETTERS[letter]], dtype=torch.float32)
    width = max(3, round(height * 5 / 7))
    return F.interpolate(bitmap[None, None], size=(height, width), mode="nearest")[0, 0] > 0.5


def insert_text_marker(
    images01: torch.Tensor,
    generator: torch.Generator | None = None,
    kinds: tuple[str, ...] = ("letter", "ruler", "rectangle"),
    brightness_range: tuple[float, float] = (0.9, 1.0),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stamp a burnt-in marker into each image: an ``L``/``R`` letter, a ruler, or a bright label rectangle.

    Each image gets a seeded kind, size, brightness and position near a corner/border, like the markers of real
    radiographs (the position stays ~3-15 % inside the border).

    Args:
        images01: ``(N, C, H, W)`` in [0, 1] (1 or 3 channels; all channels get the same gray value).
        generator: seeds kind, size, place and brightness.
        kinds: the marker kinds to draw from.
        brightness_range: marker gray value.

    Returns:
        ``(marked images, masks)``, masks ``(N, H, W)`` bool, True where the marker was stamped.

    Example:
        >>> import torch
        >>> out, masks = insert_text_marker(torch.full((3, 3, 64, 64), 0.4), torch.Generator().manual_seed(1))
        >>> bool(masks.flatten(1).any(1).all()), bool((out[masks[:, None].expand_as(out)] >= 0.9).all())
        (True, True)
    """
    if images01.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got {tuple(images01.shape)}")
    unknown = set(kinds) - {"letter", "ruler", "rectangle"}
    if not kinds or unknown:
        raise ValueError(f"kinds must be a non-empty subset of ('letter', 'ruler', 'rectangle'), got {kinds}")
    n, _, h, w = images01.shape
    out = images01.clone()
    masks = torch.zeros(n, h, w, dtype=torch.bool)
    side = min(h, w)
    for i in range(n):
        kind = kinds[int(torch.randint(len(kinds), (), generator=generator))]
        shape = torch.zeros(h, w, dtype=torch.bool)
        if kind == "letter":
            letter = "LR"[int(torch.randint(2, (), generator=generator))]
            glyph = _letter_shape(letter, max(7, round(_uniform(generator, 0.09, 0.15) * side)))
            gh, gw = glyph.shape
        elif kind == "ruler":
            length = max(8, round(_uniform(generator, 0.25, 0.45) * side))
            thick = max(1, round(0.012 * side))
            glyph = torch.zeros(3 * thick + 2, length, dtype=torch.bool)
            glyph[-thick:] = True  # the rule
            tick = max(3, round(0.04 * side))
            for t in range(0, length, tick):
                glyph[:-thick, t : t + thick] = True  # the ticks
            if torch.rand((), generator=generator) < 0.5:
                glyph = glyph.T
            gh, gw = glyph.shape
        else:
            gh = max(4, round(_uniform(generator, 0.06, 0.1) * side))
            gw = max(6, round(_uniform(generator, 0.12, 0.2) * side))
            glyph = torch.ones(gh, gw, dtype=torch.bool)
        margin_y = round(_uniform(generator, 0.03, 0.15) * h)
        margin_x = round(_uniform(generator, 0.03, 0.15) * w)
        top = torch.rand((), generator=generator) < 0.5
        left = torch.rand((), generator=generator) < 0.5
        y0 = min(max(0, margin_y if top else h - margin_y - gh), max(0, h - gh))
        x0 = min(max(0, margin_x if left else w - margin_x - gw), max(0, w - gw))
        gh, gw = min(gh, h - y0), min(gw, w - x0)
        shape[y0 : y0 + gh, x0 : x0 + gw] = glyph[:gh, :gw]
        value = _uniform(generator, *brightness_range)
        out[i][:, shape.to(images01.device)] = value
        masks[i] = shape
    return out, masks
