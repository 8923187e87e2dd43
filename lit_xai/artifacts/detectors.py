"""Image-space artifact detectors: ``images01 (N, C, H, W) -> (scores (N,), masks (N, H, W) bool)``.

Every detector is a plain function on images in [0, 1] (denormalize first), pure torch (+ ``scipy.ndimage`` for
connected components), with a default decision threshold next to it; :mod:`lit_xai.artifacts.registry` registers each
with its inserter and remover (registration flows one way: this module does not import the registry):

* :func:`detect_ring` — dark microscope ring / vignette (dermoscopy "dark corner artifact", DCA);
* :func:`detect_dark_corners` — the four corner patches dark relative to the image's own interior;
* :func:`detect_marker` — a small saturated off-skin-colour patch (ink marking, colour calibration patch).

Scores are in [0, 1]; an image is flagged when ``score >= threshold``. Masks are the estimated artifact pixels of
flagged images and empty for the others, so they can be fed straight into
:func:`lit_xai.shortcuts.relevance_in_mask`.

Brightness is always judged *relative to the image itself* (an upper quantile of its interior), so a dark lesion or an
image that is simply dark overall does not look like a vignette.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from .._moved import forward

__all__ = [
    "RING_THRESHOLD",
    "DARK_CORNERS_THRESHOLD",
    "MARKER_THRESHOLD",
    "Detector",
    "detect_ring",
    "detect_dark_corners",
    "detect_marker",
    "relative_darkness",
]

#: a detector maps images ``(N, C, H, W)`` in [0, 1] to ``(scores (N,), masks (N, H, W) bool)``
Detector = Callable[..., tuple[torch.Tensor, torch.Tensor]]


#: default decision thresholds on the scores (calibrated on seeded synthetic skin images, see the tests)
RING_THRESHOLD = 0.4
DARK_CORNERS_THRESHOLD = 0.5
MARKER_THRESHOLD = 0.5

# interior reference: this quantile of the block brightness inside radius _REF_RADIUS (in units of half the
# shorter side). An upper quantile is skin even when a dark lesion covers most of the centre.
_REF_QUANTILE = 0.8
_REF_RADIUS = 0.6
# floor of the reference brightness: below it, contrast is measured in absolute terms, so sensor noise on a
# nearly black image cannot produce large *relative* darkness
_REF_FLOOR = 0.15
# a pixel is "dark" (part of a vignette) when it lost this share of the interior brightness
_DARK_PIXEL = 0.4
# ring fit: candidate field-of-view radii, the width of the band just inside the radius used as local reference,
# and the number of angular sectors for the circular-coverage test
_RING_MIN_RADIUS = 0.55
_RING_BAND = 0.2
_RING_SECTORS = 16
_RING_MIN_SECTORS = 4
_CORNER_FRACTION = 0.1
# marker: pixel chroma that makes a pixel a candidate, component area bounds (fraction of the image), penalty on
# the component's colour spread, and the component chroma that earns a full score
_MARKER_PIXEL_CHROMA = 0.1
_MARKER_MIN_AREA = 0.002
_MARKER_MAX_AREA = 0.25
_MARKER_STD_PENALTY = 2.0
_MARKER_FULL = 0.4


def _check_images(images01: torch.Tensor) -> torch.Tensor:
    if not isinstance(images01, torch.Tensor) or images01.ndim != 4:
        shape = tuple(images01.shape) if isinstance(images01, torch.Tensor) else type(images01).__name__
        raise ValueError(f"detectors expect a batch of images (N, C, H, W) in [0, 1], got {shape}")
    x = images01.detach().float()
    if x.numel() and (x.min() < -0.02 or x.max() > 1.02):
        raise ValueError(
            f"detectors expect images in [0, 1], got values in [{x.min():.2f}, {x.max():.2f}]; "
            "undo the normalization first (e.g. datamodule.denormalize(images))"
        )
    return x.clamp(0.0, 1.0)


def _luminance(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 3:
        return 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    return x.mean(1)


def _polar(h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates ``(y, x, r)`` in units of half the shorter side, origin at the image centre."""
    half = min(h, w) / 2.0
    ys = (torch.arange(h, dtype=torch.float32, device=device) - (h - 1) / 2.0) / half
    xs = (torch.arange(w, dtype=torch.float32, device=device) - (w - 1) / 2.0) / half
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return yy, xx, torch.sqrt(yy**2 + xx**2)


def _pool_factor(h: int, w: int, cells: int = 32) -> int:
    # block means over ~cells x cells blocks: averages out pixel noise, keeps the geometry of a ring
    return max(1, round(min(h, w) / cells))


def _block_mean(t: torch.Tensor, f: int) -> torch.Tensor:
    """Means over non-overlapping ``f x f`` blocks of a ``(H, W)`` or ``(N, H, W)`` tensor (same ndim back)."""
    if f == 1:
        return t
    pooled = F.avg_pool2d(t.reshape(-1, 1, *t.shape[-2:]), f, f)
    return pooled.reshape(*t.shape[:-2], *pooled.shape[-2:])


def _interior_reference(gray: torch.Tensor) -> torch.Tensor:
    """Per-image reference brightness ``(N,)``: upper quantile of block means inside the central disc."""
    _, h, w = gray.shape
    f = _pool_factor(h, w)
    blocks = _block_mean(gray, f)
    _, _, r = _polar(h, w, gray.device)
    r_blocks = _block_mean(r, f)
    inner = r_blocks < _REF_RADIUS
    if not inner.any():
        inner = torch.ones_like(inner)
    return torch.quantile(blocks[:, inner], _REF_QUANTILE, dim=1)


def relative_darkness(images01: torch.Tensor) -> torch.Tensor:
    """How much darker each pixel is than the image's own interior, ``(N, H, W)`` in [0, 1].

    ``d = clamp((b - gray) / max(b, 0.15), 0, 1)`` with ``b`` an upper quantile of the interior brightness, so a black
    vignette scores ~1, skin ~0, and a uniformly dark image ~0 everywhere.

    Example:
        >>> import torch
        >>> relative_darkness(torch.full((1, 3, 8, 8), 0.1)).abs().max().item()
        0.0
    """
    x = _check_images(images01)
    gray = _luminance(x)
    ref = _interior_reference(gray)
    scale = ref.clamp_min(_REF_FLOOR)
    return ((ref[:, None, None] - gray) / scale[:, None, None]).clamp(0.0, 1.0)


def _empty_result(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    n, _, h, w = x.shape
    return torch.zeros(n), torch.zeros(n, h, w, dtype=torch.bool)


def detect_ring(images01: torch.Tensor, threshold: float = RING_THRESHOLD) -> tuple[torch.Tensor, torch.Tensor]:
    """Detect a dark microscope ring / vignette around a circular field of view (FOV).

    On block means (~32x32 blocks) of the relative darkness map (:func:`relative_darkness`), fit the FOV radius
    ``R`` that maximises ``coverage(R) * clamp(D_out(R) - D_band(R), 0, 1)``:

    * ``D_out`` is the mean darkness outside ``R`` and ``D_band`` the mean darkness in the band just inside ``R``
      (relative contrast: an image that is dark or noisy everywhere scores ~0);
    * ``coverage`` is the share of angular sectors (16 around the centre) whose part outside ``R`` is dark on
      average (circular symmetry: a dark lesion or hair touching one border covers few sectors).

    Radii start at 0.55 (in units of half the shorter side), so a dark lesion in the centre cannot be the
    "outside". With ``R > 1`` only the corners lie outside, so corner-only vignettes are found too. On the test
    images, rings of radius 0.6-1.2 that remove >= 60 % of the brightness are all found; gray rings removing <= 50 %
    are not (they are rare in dermoscopy, where the ring is the black inside of the dermatoscope).

    Args:
        images01: ``(N, C, H, W)`` images in [0, 1].
        threshold: score at which an image is flagged; masks are empty below it.

    Returns:
        ``(scores, masks)``: scores ``(N,)`` in [0, 1]; masks ``(N, H, W)`` bool, the dark pixels (lost >= 40 % of
        the interior brightness) beyond ``R - 0.1`` of flagged images.

    Example:
        >>> import torch
        >>> from lit_xai.artifacts import insert_ring
        >>> skin = torch.tensor([0.85, 0.62, 0.5])[None, :, None, None].expand(2, 3, 64, 64).clone()
        >>> ringed, _ = insert_ring(skin, torch.Generator().manual_seed(0))
        >>> scores, masks = detect_ring(torch.cat([skin, ringed]))
        >>> (scores >= RING_THRESHOLD).tolist()
        [False, False, True, True]
    """
    x = _check_images(images01)
    n, _, h, w = x.shape
    if n == 0:
        return _empty_result(x)
    dark = relative_darkness(x)
    f = _pool_factor(h, w)
    yy, xx, r = _polar(h, w, x.device)
    d_flat, r_flat = _block_mean(dark, f).flatten(1), _block_mean(r, f).flatten()
    theta = torch.atan2(_block_mean(yy, f), _block_mean(xx, f))
    # rotate sectors by half a sector so that the four diagonals (where corners are) fall inside sectors
    sector = (((theta.flatten() + math.pi) / (2 * math.pi) * _RING_SECTORS + 0.5).floor().long()) % _RING_SECTORS

    radii = torch.arange(_RING_MIN_RADIUS, float(r_flat.max()) - 0.04, 0.025, device=x.device)
    if len(radii) == 0:
        return _empty_result(x)
    outside = (r_flat[None, :] > radii[:, None]).float()  # (R, P)
    band = ((r_flat[None, :] > radii[:, None] - _RING_BAND) & (r_flat[None, :] <= radii[:, None])).float()
    d_out = d_flat @ outside.T / outside.sum(1).clamp_min(1)  # (N, R)
    d_band = d_flat @ band.T / band.sum(1).clamp_min(1)
    sec_onehot = F.one_hot(sector, _RING_SECTORS).float()  # (P, S)
    sec_out = outside[:, :, None] * sec_onehot[None]  # (R, P, S)
    sec_count = sec_out.sum(1)  # (R, S)
    sec_mean = torch.einsum("np,rps->nrs", d_flat, sec_out) / sec_count.clamp_min(1)
    has = sec_count > 0
    n_sectors = has.sum(1)  # (R,)
    coverage = ((sec_mean > 0.5) & has).sum(2).float() / n_sectors.clamp_min(1)
    per_radius = coverage * (d_out - d_band).clamp(0.0, 1.0)
    per_radius[:, n_sectors < _RING_MIN_SECTORS] = 0.0
    scores, best = per_radius.max(1)

    fov_radius = radii[best]  # (N,)
    masks = (dark > _DARK_PIXEL) & (r[None] > (fov_radius - 0.1)[:, None, None])
    masks &= (scores >= threshold)[:, None, None]
    return scores.cpu(), masks.cpu()


def _corner_slices(h: int, w: int) -> list[tuple[slice, slice]]:
    ph, pw = max(1, round(h * _CORNER_FRACTION)), max(1, round(w * _CORNER_FRACTION))
    return [
        (slice(0, ph), slice(0, pw)),
        (slice(0, ph), slice(w - pw, w)),
        (slice(h - ph, h), slice(0, pw)),
        (slice(h - ph, h), slice(w - pw, w)),
    ]


def _connected_to(seed: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Pixels of ``candidates`` in a connected component (8-neighbourhood) that touches ``seed``."""
    labels, count = ndimage.label(candidates, structure=np.ones((3, 3), dtype=bool))
    if count == 0:
        return np.zeros_like(candidates)
    keep = np.unique(labels[seed & candidates])
    keep = keep[keep > 0]
    return np.isin(labels, keep)


def detect_dark_corners(
    images01: torch.Tensor, threshold: float = DARK_CORNERS_THRESHOLD
) -> tuple[torch.Tensor, torch.Tensor]:
    """Detect dark corners (DCA), with or without a full ring: all four corner patches dark relative to the centre.

    Score = the *least* dark of the four corner patches (10 % of each side), measured as mean
    :func:`relative_darkness`. Taking the minimum makes a dark lesion, a hair or a shadow in one corner harmless.

    Args:
        images01: ``(N, C, H, W)`` images in [0, 1].
        threshold: score at which an image is flagged; masks are empty below it.

    Returns:
        ``(scores, masks)``: scores ``(N,)`` in [0, 1]; masks ``(N, H, W)`` bool, the dark pixels connected to a
        corner patch (the whole vignette when the corners belong to a ring).

    Example:
        >>> import torch
        >>> img = torch.full((1, 3, 40, 40), 0.8)
        >>> img[..., :6, :6] = img[..., :6, -6:] = img[..., -6:, :6] = img[..., -6:, -6:] = 0.05
        >>> scores, masks = detect_dark_corners(img)
        >>> round(scores.item(), 2), int(masks.sum())
        (0.94, 144)
    """
    x = _check_images(images01)
    n, _, h, w = x.shape
    if n == 0:
        return _empty_result(x)
    dark = relative_darkness(x)
    corners = _corner_slices(h, w)
    per_corner = torch.stack([dark[:, ys, xs].mean((1, 2)) for ys, xs in corners], 1)
    scores = per_corner.min(1).values
    masks = torch.zeros(n, h, w, dtype=torch.bool)
    seed = np.zeros((h, w), dtype=bool)
    for ys, xs in corners:
        seed[ys, xs] = True
    dark_np = (dark > _DARK_PIXEL).cpu().numpy()
    for i in torch.nonzero(scores >= threshold).flatten().tolist():
        masks[i] = torch.from_numpy(_connected_to(seed, dark_np[i]))
    return scores.cpu(), masks


def _off_skin_chroma(x: torch.Tensor) -> torch.Tensor:
    """``relu(max(G - R, B - R, B - G))`` ``(N, H, W)``: how far a colour is from the R >= G >= B order of skin."""
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    return torch.stack([g - r, b - r, b - g], 0).amax(0).clamp_min(0.0)


def _component_stats(labels: np.ndarray, count: int, img: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-component ``(area, mean colour (K, C), colour std (K,))`` of labels ``1..count`` (index 0 = label 1)."""
    flat = labels.ravel()
    area = np.bincount(flat, minlength=count + 1)[1:].astype(np.float64)
    pixels = img.reshape(img.shape[0], -1)
    safe = np.maximum(area, 1)
    mean = np.stack([np.bincount(flat, weights=ch, minlength=count + 1)[1:] / safe for ch in pixels], 1)
    sq = np.stack([np.bincount(flat, weights=ch**2, minlength=count + 1)[1:] / safe for ch in pixels], 1)
    std = np.sqrt(np.clip(sq - mean**2, 0.0, None).mean(1))
    return area, mean, std


def detect_marker(images01: torch.Tensor, threshold: float = MARKER_THRESHOLD) -> tuple[torch.Tensor, torch.Tensor]:
    """Detect a uniform patch of saturated *off-skin* colour: ink markings, colour calibration patches.

    Skin, melanin, blood and most lesions keep the channel order R >= G >= B; gentian-violet ink, blue/green
    markers and calibration patches break it. Pixels with off-skin chroma ``max(G - R, B - R, B - G) > 0.1`` are
    grouped into 4-connected components; a component of at least 0.2 % and at most 25 % of the image scores
    ``chroma(mean colour) - 2 * colour std``. Penalising the spread keeps colour noise (whose off-skin pixels also
    form components, but of random colours) at ~0, while a marker of one ink scores its full chroma. The image score
    is the best component's, divided by 0.4 and clamped to [0, 1]. Grayscale images (C != 3) score 0.

    Args:
        images01: ``(N, 3, H, W)`` images in [0, 1].
        threshold: score at which an image is flagged; masks are empty below it.

    Returns:
        ``(scores, masks)``: scores ``(N,)``; masks ``(N, H, W)`` bool, the pixels of the components scoring at least
        the threshold.

    Example:
        >>> import torch
        >>> img = torch.tensor([0.85, 0.62, 0.5])[None, :, None, None].expand(1, 3, 64, 64).clone()
        >>> img[0, :, 4:12, 20:28] = torch.tensor([0.45, 0.15, 0.6])[:, None, None]  # violet ink
        >>> scores, masks = detect_marker(img)
        >>> scores.item() >= MARKER_THRESHOLD, int(masks.sum())
        (True, 64)
    """
    x = _check_images(images01)
    n, c, h, w = x.shape
    if n == 0 or c != 3:
        return _empty_result(x)
    chroma = _off_skin_chroma(x).cpu().numpy()
    pixels = x.cpu().numpy()
    min_area, max_area = max(4.0, _MARKER_MIN_AREA * h * w), _MARKER_MAX_AREA * h * w
    scores = torch.zeros(n)
    masks = torch.zeros(n, h, w, dtype=torch.bool)
    for i in range(n):
        labels, count = ndimage.label(chroma[i] > _MARKER_PIXEL_CHROMA)
        if count == 0:
            continue
        area, mean, std = _component_stats(labels, count, pixels[i])
        r, g, b = mean[:, 0], mean[:, 1], mean[:, 2]
        comp = np.maximum.reduce([g - r, b - r, b - g]) - _MARKER_STD_PENALTY * std
        comp = np.where((area >= min_area) & (area <= max_area), comp, -np.inf)
        comp_scores = np.clip(comp / _MARKER_FULL, 0.0, 1.0)
        scores[i] = float(comp_scores.max())
        if scores[i] >= threshold:
            keep = np.flatnonzero(comp_scores >= threshold) + 1
            masks[i] = torch.from_numpy(np.isin(labels, keep))
    return scores, masks


# register_detector moved to the registry (issue 34): the registry imports this module, not the other way round
__getattr__ = forward(__name__, {"register_detector": "lit_xai.artifacts.registry"})
