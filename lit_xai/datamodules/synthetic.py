"""Synthetic dermoscopy-like images with a planted shortcut: a dark microscope ring in some melanomas.

Every image is a skin-toned background (varying tone, shading, texture, sometimes hairs) with one lesion:

* **benign**: round or elliptic, smooth border, nearly uniform brown (at most a faint darker brown patch);
* **melanoma**: irregular border (radial harmonics on the contour) and variegated colour (black, blue-grey, red,
  dark brown patches). A per-image severity makes some melanomas subtle, so the lesion cue is clear but variable.

On top of that, a dark vignette ring (:func:`lit_xai.artifacts.insert_ring`, the same code the counterfactual tests
use) is inserted into a configurable fraction of each class: by default 30% of melanomas and no benign lesion, the
"dark corner -> melanoma" shortcut of ISIC. Each sample carries its ground-truth ``artifact`` flag and
``artifact_mask``, and :meth:`SyntheticShortcutDataset.render` renders any sample again with the ring forced on or
off (same lesion, same background), for counterfactual reliance tests.

Generation is deterministic per sample: everything about sample ``i`` of a split comes from
``SeedSequence([seed, split, i])`` (labels and ring flags from a seeded low-discrepancy sequence, so class balance
and ring prevalence are near-exact even for small sets). It does not depend on the order, the batch or the worker.

Example:
    >>> dm = SyntheticShortcutDataModule(num_train=16, num_val=8, num_test=8, image_size=32, batch_size=4)
    >>> item = dm.dataset("train")[0]
    >>> tuple(item["image"].shape), item["target"].dtype, item["artifact_mask"].dtype
    ((3, 32, 32), torch.int64, torch.bool)
    >>> image01, mask = dm.dataset("val").render(0, ring=True)
    >>> tuple(image01.shape), bool(mask.any()), bool(mask[16, 16])
    ((3, 32, 32), True, False)
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch

from ..artifacts.inserters import insert_ring
from .base import SPLITS, ArrayImageReader, ImageDataModule, ImageDataset, SampleTable
from .transforms import IMAGENET_MEAN, IMAGENET_STD, ImageTransform

__all__ = ["ShortcutImageGenerator", "SyntheticShortcutDataModule", "SyntheticShortcutDataset"]

# Plastic number: the (u, v) R2 sequence frac(shift + i * (1/g, 1/g^2)) is equidistributed in the unit square, so
# label (u) and ring flag (v) proportions are near-exact for any number of samples, also within each class.
_PLASTIC = 1.324717957244746
_R2 = np.array([1.0 / _PLASTIC, 1.0 / _PLASTIC**2])

_SKIN_LIGHT = np.array([0.95, 0.82, 0.72])
_SKIN_DARK = np.array([0.72, 0.52, 0.40])
_BROWN_LIGHT = np.array([0.66, 0.46, 0.32])
_BROWN_DARK = np.array([0.42, 0.26, 0.16])
_HAIR = np.array([0.18, 0.12, 0.09])
# Atypical melanoma colours: black, blue-grey (regression / blue-white veil), red, dark brown.
_ATYPICAL = np.array([[0.10, 0.08, 0.08], [0.42, 0.47, 0.57], [0.72, 0.28, 0.26], [0.26, 0.15, 0.09]])

_MAX_PATCHES = 5
_MAX_HAIRS = 4
_HARMONICS = np.arange(2, 9)
_SHADE_RES = 5
_TEXTURE_RES = 12


class ShortcutImageGenerator:
    """Pure, seeded renderer of the synthetic shortcut images (no Lightning, no files).

    Args:
        image_size: side length of the square images.
        seed: base seed; sample ``i`` of ``split`` is generated from ``SeedSequence([seed, split, i])``.
        melanoma_fraction: fraction of melanomas (class 1).
        ring_fraction_benign, ring_fraction_melanoma: fraction of each class that carries the dark ring.
        difficulty: in [0, 1]; how subtle the mildest melanomas can be (0 = every melanoma is blatant).

    Example:
        >>> gen = ShortcutImageGenerator(image_size=32, seed=0)
        >>> labels, rings = gen.plan("train", np.arange(8))
        >>> images, masks = gen.render("train", np.arange(8))
        >>> images.shape, images.dtype, masks.shape, bool((masks.any(axis=(1, 2)) == rings).all())
        ((8, 32, 32, 3), dtype('uint8'), (8, 32, 32), True)
    """

    def __init__(
        self,
        image_size: int = 64,
        seed: int = 0,
        melanoma_fraction: float = 0.5,
        ring_fraction_benign: float = 0.0,
        ring_fraction_melanoma: float = 0.3,
        difficulty: float = 0.3,
    ) -> None:
        if image_size < 16:
            raise ValueError(f"image_size must be >= 16 to draw a lesion, got {image_size}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0 (it seeds numpy SeedSequences), got {seed}")
        for name, value in (
            ("melanoma_fraction", melanoma_fraction),
            ("ring_fraction_benign", ring_fraction_benign),
            ("ring_fraction_melanoma", ring_fraction_melanoma),
            ("difficulty", difficulty),
        ):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        self.image_size = int(image_size)
        self.seed = int(seed)
        self.melanoma_fraction = float(melanoma_fraction)
        self.ring_fraction = (float(ring_fraction_benign), float(ring_fraction_melanoma))
        self.difficulty = float(difficulty)
        # Pixel centres in [-1, 1]; all geometry is relative, so images look alike at any size.
        coords = (np.arange(self.image_size, dtype=np.float32) + 0.5) / self.image_size * 2.0 - 1.0
        self._yy, self._xx = np.meshgrid(coords, coords, indexing="ij")
        self._up_shade = _bilinear_matrix(self.image_size, _SHADE_RES)
        self._up_texture = _bilinear_matrix(self.image_size, _TEXTURE_RES)

    # ------------------------------------------------------------------------------------------------- sampling
    def _split_code(self, split: str) -> int:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        return SPLITS.index(split)

    def plan(self, split: str, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Labels (int64, 1 = melanoma) and ring flags (bool) of samples ``indices`` of ``split``; no rendering."""
        indices = np.asarray(indices, dtype=np.int64)
        shift = np.random.default_rng([self.seed, self._split_code(split), 2**31 - 1]).random(2)
        uv = np.mod(shift[None, :] + (indices[:, None] + 1) * _R2[None, :], 1.0)
        labels = (uv[:, 0] < self.melanoma_fraction).astype(np.int64)
        rings = uv[:, 1] < np.asarray(self.ring_fraction)[labels]
        return labels, rings

    def _params(self, split_code: int, index: int, label: int) -> dict[str, Any]:
        """All random choices of one sample, from its own seed sequence (order- and batch-independent)."""
        seq = np.random.SeedSequence([self.seed, split_code, int(index)])
        lesion_seq, ring_seq = seq.spawn(2)
        rng = np.random.default_rng(lesion_seq)
        s = self.image_size
        p: dict[str, Any] = {"ring_seed": int(ring_seq.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))}
        # Background: skin tone, low-frequency shading, skin texture, sensor noise.
        tone = rng.random()
        p["skin"] = (1 - tone) * _SKIN_LIGHT + tone * _SKIN_DARK + rng.normal(0, 0.02, 3)
        p["shade"] = rng.normal(0, 0.05, (_SHADE_RES, _SHADE_RES))
        p["texture"] = rng.normal(0, 1.0, (_TEXTURE_RES, _TEXTURE_RES))
        p["noise"] = 0.018 * rng.standard_normal((s, s, 3), dtype=np.float32)
        # Lesion geometry: position, size, ellipse, border softness.
        p["center"] = rng.uniform(-0.12, 0.12, 2)
        # Diameter is one of the ABCD cues: melanomas tend to be larger (overlapping ranges).
        p["radius"] = rng.uniform(0.34, 0.58) if label == 1 else rng.uniform(0.26, 0.5)
        p["aspect"] = rng.uniform(0.7, 1.0)
        p["angle"] = rng.uniform(0, math.pi)
        p["edge"] = rng.uniform(0.015, 0.045)
        amps = rng.uniform(0.3, 1.0, len(_HARMONICS)) / np.sqrt(_HARMONICS)
        amps /= np.sqrt((amps**2).sum() / 2.0)  # unit RMS of the radial modulation
        p["harmonics"] = amps
        p["phases"] = rng.uniform(0, 2 * math.pi, len(_HARMONICS))
        brown = rng.random()
        p["brown"] = (1 - brown) * _BROWN_LIGHT + brown * _BROWN_DARK + rng.normal(0, 0.02, 3)
        p["center_dark"] = rng.uniform(0.0, 0.2)
        # Patches: (dy, dx) in lesion-radius units, radius, colour, opacity; unused patches have opacity 0.
        patches = np.zeros((_MAX_PATCHES, 7))
        patches[:, 0:2] = rng.uniform(-0.6, 0.6, (_MAX_PATCHES, 2))
        patches[:, 2] = rng.uniform(0.2, 0.45, _MAX_PATCHES)
        if label == 1:
            # Severity in [1 - difficulty, 1]: mild melanomas have a rounder border and fewer, fainter patches.
            severity = 1.0 - self.difficulty * rng.random()
            p["irregularity"] = 0.05 + 0.13 * severity * rng.uniform(0.6, 1.0)
            count = 1 + int(round(severity * rng.uniform(1.0, _MAX_PATCHES - 1)))
            colours = _ATYPICAL[rng.integers(0, len(_ATYPICAL), _MAX_PATCHES)]
            colours[0] = _ATYPICAL[rng.integers(0, 3)]  # at least one clearly atypical (non-brown) colour
            patches[:, 3:6] = colours + rng.normal(0, 0.03, (_MAX_PATCHES, 3))
            patches[:count, 6] = rng.uniform(0.45, 0.75, count) * (0.6 + 0.4 * severity)
        else:
            p["irregularity"] = rng.uniform(0.0, 0.045)
            colours = np.repeat(p["brown"][None] * 0.75, _MAX_PATCHES, axis=0)
            patches[:, 3:6] = colours
            if rng.random() < 0.35:  # a faint darker-brown centre also occurs in naevi
                patches[0, 6] = rng.uniform(0.15, 0.4)
        p["patches"] = patches
        # Hairs: straight-ish dark lines through the image, class independent.
        hairs = np.zeros((_MAX_HAIRS, 6))  # angle, offset, curvature, width, opacity, (unused)
        if rng.random() < 0.4:
            count = int(rng.integers(1, _MAX_HAIRS + 1))
            hairs[:count, 0] = rng.uniform(0, math.pi, count)
            hairs[:count, 1] = rng.uniform(-0.8, 0.8, count)
            hairs[:count, 2] = rng.uniform(-0.25, 0.25, count)
            hairs[:count, 3] = rng.uniform(0.6, 1.1, count) * 2.0 / s  # about a pixel wide
            hairs[:count, 4] = rng.uniform(0.5, 0.85, count)
        p["hairs"] = hairs
        return p

    # ------------------------------------------------------------------------------------------------ rendering
    def render(
        self,
        split: str,
        indices: np.ndarray | list[int],
        ring: bool | np.ndarray | None = None,
        chunk: int = 256,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Render samples ``indices`` of ``split``.

        Args:
            ring: ``None`` keeps each sample's own ring flag; a bool (or a bool array) forces the ring on or off.
                A forced ring is the ring that sample would carry (its parameters come from the sample's seed).
            chunk: samples rendered per vectorised step (bounds memory).

        Returns:
            ``(images, masks)``: uint8 ``(N, H, W, 3)`` and bool ``(N, H, W)`` (True where the ring darkens).
        """
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(indices) and indices.min() < 0:
            raise ValueError("sample indices must be >= 0")
        labels, rings = self.plan(split, indices)
        if ring is not None:
            rings = np.broadcast_to(np.asarray(ring, dtype=bool), rings.shape).copy()
        code = self._split_code(split)
        s = self.image_size
        images = np.empty((len(indices), s, s, 3), dtype=np.uint8)
        masks = np.zeros((len(indices), s, s), dtype=bool)
        for start in range(0, len(indices), chunk):
            sl = slice(start, start + chunk)
            params = [self._params(code, i, y) for i, y in zip(indices[sl], labels[sl])]
            canvas = self._compose(params)
            for j in np.flatnonzero(rings[sl]):
                generator = torch.Generator().manual_seed(params[j]["ring_seed"])
                ringed, mask = insert_ring(torch.from_numpy(canvas[j]).permute(2, 0, 1)[None], generator=generator)
                canvas[j] = ringed[0].permute(1, 2, 0).numpy()
                masks[start + j] = mask[0].numpy()
            images[sl] = np.rint(np.clip(canvas, 0.0, 1.0) * 255.0).astype(np.uint8)
        return images, masks

    def _compose(self, params: list[dict[str, Any]]) -> np.ndarray:
        """Vectorised drawing of a chunk of samples; float32 (B, H, W, 3) in about [0, 1]."""

        def stack(key: str) -> np.ndarray:
            return np.stack([p[key] for p in params]).astype(np.float32)

        yy, xx = self._yy[None], self._xx[None]
        # Background.
        shade = self._up_shade @ stack("shade") @ self._up_shade.T
        texture = self._up_texture @ stack("texture") @ self._up_texture.T
        image = stack("skin")[:, None, None, :] * (1.0 + shade + 0.02 * texture)[..., None]
        # Lesion mask: an ellipse whose radius is modulated by a few harmonics of the polar angle.
        center = stack("center")
        dy, dx = yy - center[:, 0, None, None], xx - center[:, 1, None, None]
        angle = stack("angle")[:, None, None]
        u = dx * np.cos(angle) + dy * np.sin(angle)
        v = (-dx * np.sin(angle) + dy * np.cos(angle)) / stack("aspect")[:, None, None]
        dist = np.sqrt(u**2 + v**2)
        # sin(k theta + phase) = Im(z^k e^{i phase}) with z = e^{i theta}: powers of z are cheaper than k sin() calls.
        z = (u + 1j * v) / np.maximum(dist, 1e-6)
        coeff = stack("harmonics") * np.exp(1j * stack("phases"))
        power = z ** int(_HARMONICS[0])
        modulation = np.zeros_like(dist)
        for k in range(len(_HARMONICS)):
            modulation += (coeff[:, k, None, None] * power).imag
            power = power * z
        radius = stack("radius")[:, None, None]
        border = radius * np.clip(1.0 + stack("irregularity")[:, None, None] * modulation, 0.35, None)
        alpha = _sigmoid((border - dist) / stack("edge")[:, None, None])
        # Lesion colour: brown, darker towards the centre, textured, with coloured patches blended in.
        rel = np.clip(dist / radius, 0.0, 1.0)
        colour = stack("brown")[:, None, None, :] * (1.0 - stack("center_dark")[:, None, None] * (1.0 - rel))[..., None]
        colour = colour * (1.0 + 0.04 * texture)[..., None]
        patches = stack("patches")
        for k in range(_MAX_PATCHES):
            on = np.flatnonzero(patches[:, k, 6] > 0)  # only the samples that use this patch
            if len(on) == 0:
                continue
            r = radius[on, 0, 0]
            py, px = center[on, 0] + patches[on, k, 0] * r, center[on, 1] + patches[on, k, 1] * r
            pr = patches[on, k, 2] * r
            d2 = (yy - py[:, None, None]) ** 2 + (xx - px[:, None, None]) ** 2
            weight = (patches[on, k, 6, None, None] * np.exp(-d2 / (2.0 * pr[:, None, None] ** 2)))[..., None]
            colour[on] = colour[on] * (1.0 - weight) + patches[on, k, None, None, 3:6] * weight
        image = image * (1.0 - alpha[..., None]) + colour * alpha[..., None]
        # Hairs over everything: distance to a gently curved line.
        hairs = stack("hairs")
        for k in range(_MAX_HAIRS):
            on = np.flatnonzero(hairs[:, k, 4] > 0)
            if len(on) == 0:
                continue
            a = hairs[on, k, 0, None, None]
            along = xx * np.cos(a) + yy * np.sin(a)
            across = (
                -xx * np.sin(a) + yy * np.cos(a) - hairs[on, k, 1, None, None] - hairs[on, k, 2, None, None] * along**2
            )
            weight = hairs[on, k, 4, None, None] * np.clip(1.0 - np.abs(across) / hairs[on, k, 3, None, None], 0.0, 1.0)
            image[on] = image[on] * (1.0 - weight[..., None]) + _HAIR.astype(np.float32) * weight[..., None]
        image = image + stack("noise")
        return np.clip(image, 0.0, 1.0).astype(np.float32)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _bilinear_matrix(size: int, res: int) -> np.ndarray:
    """``(size, res)`` weights that upsample a ``res``-point grid to ``size`` pixels by linear interpolation."""
    pos = (np.arange(size) + 0.5) / size * (res - 1)
    low = np.clip(np.floor(pos).astype(int), 0, res - 2)
    frac = pos - low
    weights = np.zeros((size, res), dtype=np.float32)
    weights[np.arange(size), low] = 1.0 - frac
    weights[np.arange(size), low + 1] = frac
    return weights


class SyntheticShortcutDataset(ImageDataset):
    """A split of the synthetic data, pre-rendered as uint8, plus counterfactual re-rendering.

    Example:
        >>> dm = SyntheticShortcutDataModule(num_train=8, num_val=8, num_test=8, image_size=32)
        >>> ds = dm.dataset("test")
        >>> with_ring, mask = ds.render(0, ring=True)
        >>> without, _ = ds.render(0, ring=False)
        >>> bool((with_ring != without).any(dim=0)[~mask].sum() < (with_ring != without).any(dim=0)[mask].sum())
        True
    """

    def __init__(
        self,
        generator: ShortcutImageGenerator,
        split: str,
        sample_ids: np.ndarray,
        transform: ImageTransform,
    ) -> None:
        labels, rings = generator.plan(split, sample_ids)
        images, masks = generator.render(split, sample_ids)
        super().__init__(ArrayImageReader(images, masks), labels, transform, artifacts=rings)
        self.generator = generator
        self.split = split
        self.sample_ids = np.asarray(sample_ids, dtype=np.int64)

    @property
    def images(self) -> np.ndarray:
        """All pre-rendered images of this split, uint8 ``(N, H, W, 3)`` (before augmentation)."""
        return self.reader.images

    @property
    def masks(self) -> np.ndarray:
        """All ground-truth ring masks of this split, bool ``(N, H, W)``."""
        return self.reader.masks

    def render(self, index: int, ring: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample ``index`` with its own ring (``None``) or the ring forced on/off; same lesion and background.

        Returns:
            ``(image01, mask)``: float ``(3, H, W)`` in [0, 1] (unnormalized, un-augmented; equal to the stored
            image when ``ring`` is ``None``) and bool ``(H, W)`` ring mask.
        """
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a split of {len(self)} samples")
        images, masks = self.generator.render(self.split, self.sample_ids[[index]], ring=ring)
        return torch.from_numpy(images[0]).permute(2, 0, 1).float() / 255.0, torch.from_numpy(masks[0])


class SyntheticShortcutDataModule(ImageDataModule):
    """The embedded default dataset: synthetic benign/melanoma lesions with a planted dark-ring shortcut.

    No files are needed. Each split is rendered once (vectorised, about a second for 2,000 images at 64 px) and
    kept as uint8; augmentation runs on the fly.

    Args:
        num_train, num_val, num_test: samples per split (independent sample streams, so splits are disjoint).
        image_size: side length of the generated images.
        melanoma_fraction: class balance (fraction of melanomas).
        ring_fraction_benign, ring_fraction_melanoma: fraction of each class carrying the dark ring (the shortcut).
        difficulty: in [0, 1]; how subtle the mildest melanomas can be.
        batch_size, num_workers, seed, augment, augment_strength, mean, std, pin_memory: see
            :class:`~lit_xai.datamodules.base.ImageDataModule`.

    Example:
        >>> dm = SyntheticShortcutDataModule(num_train=32, num_val=8, num_test=8, image_size=32, batch_size=8)
        >>> batch = next(iter(dm.train_dataloader()))
        >>> tuple(batch["image"].shape), tuple(batch["artifact_mask"].shape), dm.num_classes
        ((8, 3, 32, 32), (8, 32, 32), 2)
    """

    class_names: ClassVar[tuple[str, ...]] = ("benign", "melanoma")
    task: ClassVar[str] = "binary"
    orientation_invariant: ClassVar[bool] = True

    def __init__(
        self,
        num_train: int = 2000,
        num_val: int = 500,
        num_test: int = 500,
        image_size: int = 64,
        melanoma_fraction: float = 0.5,
        ring_fraction_benign: float = 0.0,
        ring_fraction_melanoma: float = 0.3,
        difficulty: float = 0.3,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        augment: bool = True,
        augment_strength: float = 1.0,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
        pin_memory: bool = False,
    ) -> None:
        super().__init__(
            batch_size=batch_size,
            num_workers=num_workers,
            image_size=image_size,
            val_fraction=0.0,
            test_fraction=0.0,
            seed=seed,
            augment=augment,
            augment_strength=augment_strength,
            mean=mean,
            std=std,
            pin_memory=pin_memory,
        )
        for name, value in (("num_train", num_train), ("num_val", num_val), ("num_test", num_test)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if num_train == 0:
            raise ValueError("num_train must be > 0")
        self.num_samples = {"train": int(num_train), "val": int(num_val), "test": int(num_test)}
        self.generator = ShortcutImageGenerator(
            image_size=image_size,
            seed=seed,
            melanoma_fraction=melanoma_fraction,
            ring_fraction_benign=ring_fraction_benign,
            ring_fraction_melanoma=ring_fraction_melanoma,
            difficulty=difficulty,
        )

    def index_samples(self) -> SampleTable:
        # Cheap: labels and ring flags come from the seeded sequence, no pixels are drawn.
        targets, rings, splits = [], [], []
        for split in SPLITS:
            labels, flags = self.generator.plan(split, np.arange(self.num_samples[split]))
            targets.append(labels)
            rings.append(flags)
            splits += [split] * len(labels)
        return SampleTable(targets=np.concatenate(targets), splits=np.asarray(splits), artifacts=np.concatenate(rings))

    def build_dataset(self, split: str, rows: np.ndarray) -> SyntheticShortcutDataset:
        # Rows of split s are s's sample ids in order, so the position in the dataset is the generator index.
        sample_ids = np.arange(len(rows))
        return SyntheticShortcutDataset(self.generator, split, sample_ids, self.transform(train=split == "train"))
