"""Image transforms: albumentations augmentation, then normalization and conversion to a CHW float tensor.

The augmentation runs on uint8 ``(H, W, 3)`` arrays together with an optional artifact mask, so every geometric
change (flip, shift, scale, rotation, resize) moves the mask with the image. Normalization and tensor conversion are
done here rather than with ``ToTensorV2`` so the exact arithmetic is shared with :func:`normalize` /
:func:`denormalize`, which callbacks use to show images.

Example:
    >>> import numpy as np
    >>> t = ImageTransform(image_size=32, train=False)
    >>> image, mask = t(np.zeros((48, 40, 3), np.uint8), np.ones((48, 40), bool))
    >>> tuple(image.shape), image.dtype, tuple(mask.shape), mask.dtype
    ((3, 32, 32), torch.float32, (32, 32), torch.bool)
"""

from __future__ import annotations

from collections.abc import Sequence

import albumentations as A
import cv2
import numpy as np
import torch

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageTransform",
    "build_augmentation",
    "denormalize",
    "normalize",
    "to_tensor",
]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def build_augmentation(
    image_size: int,
    train: bool,
    augment: bool = True,
    strength: float = 1.0,
    vertical_flip: bool = False,
    seed: int | None = None,
) -> A.Compose:
    """Albumentations pipeline on uint8 images (no normalization): resize, then (train only) augmentation.

    Args:
        image_size: output side length; images are resized to ``image_size x image_size``.
        train: whether this is the training pipeline; evaluation pipelines only resize.
        augment: switch augmentation off even for training (e.g. to overfit a tiny set).
        strength: scales every augmentation range and probability-free magnitude; 0 disables augmentation,
            1 is the default (rotations up to 15 degrees, 6% shifts, 10% scale, 15% brightness/contrast).
        vertical_flip: also flip vertically and rotate freely by 90 degree steps. Right for orientation-free
            images (dermoscopy), wrong for chest X-rays.
        seed: seed of the pipeline's own random state (albumentations ignores the global seeds).

    Example:
        >>> build_augmentation(64, train=False).transforms[0].__class__.__name__
        'Resize'
    """
    if image_size < 1:
        raise ValueError(f"image_size must be a positive int, got {image_size}")
    if strength < 0:
        raise ValueError(f"augment strength must be >= 0, got {strength}")
    ops: list[A.BasicTransform] = [A.Resize(image_size, image_size, interpolation=cv2.INTER_AREA)]
    if train and augment and strength > 0:
        s = float(strength)
        ops.append(A.HorizontalFlip(p=0.5))
        if vertical_flip:
            ops += [A.VerticalFlip(p=0.5), A.RandomRotate90(p=0.5)]
        ops += [
            # Reflect instead of a constant fill: black fill corners would look exactly like the vignette artifact
            # the package is meant to detect, and would plant it in every class.
            A.Affine(
                scale=(1.0 - 0.1 * s, 1.0 + 0.1 * s),
                translate_percent=(-0.06 * s, 0.06 * s),
                rotate=(-15.0 * s, 15.0 * s),
                border_mode=cv2.BORDER_REFLECT_101,
                p=0.7,
            ),
            A.RandomBrightnessContrast(brightness_limit=0.15 * s, contrast_limit=0.15 * s, p=0.7),
            A.GaussianBlur(blur_limit=(3, 3), sigma_limit=(0.1, 0.3 + 0.5 * s), p=0.2),
        ]
    return A.Compose(ops, seed=seed)


def to_tensor(image: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 ``(H, W, 3)`` (or float in [0, 1]) array -> normalized float32 ``(3, H, W)`` tensor.

    Example:
        >>> to_tensor(np.full((2, 2, 3), 255, np.uint8), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)).unique().tolist()
        [1.0]
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB array, got shape {image.shape}")
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()
    if image.dtype == np.uint8:
        x = x / 255.0
    return normalize(x, mean, std)


def _stats(like: torch.Tensor, values: Sequence[float]) -> torch.Tensor:
    shape = (-1, 1, 1) if like.ndim == 3 else (1, -1, 1, 1)
    return torch.as_tensor(values, dtype=like.dtype, device=like.device).reshape(shape)


def normalize(images01: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(x - mean) / std`` per channel for ``(3, H, W)`` or ``(N, 3, H, W)`` images in [0, 1].

    Example:
        >>> normalize(torch.ones(3, 1, 1), (0.5,) * 3, (0.25,) * 3).flatten().tolist()
        [2.0, 2.0, 2.0]
    """
    _check_images(images01)
    return (images01 - _stats(images01, mean)) / _stats(images01, std)


def denormalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Inverse of :func:`normalize`, clamped to [0, 1] (augmentation can push values slightly outside).

    Example:
        >>> x = torch.rand(2, 3, 4, 4)
        >>> torch.allclose(denormalize(normalize(x, IMAGENET_MEAN, IMAGENET_STD), IMAGENET_MEAN, IMAGENET_STD), x)
        True
    """
    _check_images(images)
    return (images * _stats(images, std) + _stats(images, mean)).clamp(0.0, 1.0)


def _check_images(images: torch.Tensor) -> None:
    if images.ndim not in (3, 4) or images.shape[-3] != 3:
        raise ValueError(f"expected images of shape (3, H, W) or (N, 3, H, W), got {tuple(images.shape)}")


class ImageTransform:
    """uint8 image (+ optional bool artifact mask) -> normalized ``(3, S, S)`` tensor (+ bool ``(S, S)`` mask).

    Args:
        image_size: output side length ``S``.
        train: training pipeline (augmentation) or evaluation pipeline (resize only).
        augment, strength, vertical_flip: see :func:`build_augmentation`.
        mean, std: per-channel normalization statistics (ImageNet by default).
        seed: seed of the augmentation random state; data loader workers re-seed via :meth:`reseed`.

    Example:
        >>> import numpy as np
        >>> image, mask = ImageTransform(16, train=True, seed=0)(np.zeros((16, 16, 3), np.uint8))
        >>> tuple(image.shape), mask is None
        ((3, 16, 16), True)
    """

    def __init__(
        self,
        image_size: int,
        train: bool = False,
        augment: bool = True,
        strength: float = 1.0,
        vertical_flip: bool = False,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        seed: int | None = None,
    ) -> None:
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f"mean and std need 3 values (RGB), got mean={list(mean)}, std={list(std)}")
        if any(s <= 0 for s in std):
            raise ValueError(f"std values must be > 0, got {list(std)}")
        self.image_size = image_size
        self.train = train
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.pipeline = build_augmentation(image_size, train, augment, strength, vertical_flip, seed)

    def reseed(self, seed: int) -> None:
        """Re-seed the augmentation (called in each data loader worker, which gets a copy of this object)."""
        self.pipeline.set_random_seed(int(seed) % 2**32)

    def __call__(self, image: np.ndarray, mask: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        image_t, masks = self.apply(image, mask)
        return image_t, masks[0]

    def apply(self, image: np.ndarray, *masks: np.ndarray | None) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
        """Transform ``image`` and any number of bool ``(H, W)`` masks in lockstep (same flips, affine, resize).

        Used for the artifact mask and the region-of-interest (lung) mask of an item. ``None`` masks stay ``None``.

        Example:
            >>> import numpy as np
            >>> t = ImageTransform(8, train=True, seed=0)
            >>> m = np.zeros((16, 16), bool); m[:, :8] = True
            >>> img, (a, b) = t.apply(np.zeros((16, 16, 3), np.uint8), m, None)
            >>> tuple(a.shape), b is None
            ((8, 8), True)
        """
        if image.dtype != np.uint8:
            raise TypeError(f"ImageTransform expects uint8 images, got {image.dtype}")
        present = [i for i, m in enumerate(masks) if m is not None]
        if not present:
            out = self.pipeline(image=image)
            return to_tensor(out["image"], self.mean, self.std), [None] * len(masks)
        for i in present:
            if masks[i].shape != image.shape[:2]:
                raise ValueError(f"mask shape {masks[i].shape} does not match image shape {image.shape[:2]}")
        out = self.pipeline(image=image, masks=[masks[i].astype(np.uint8) for i in present])
        result: list[torch.Tensor | None] = [None] * len(masks)
        for i, m in zip(present, out["masks"]):
            result[i] = torch.from_numpy(np.asarray(m) > 0)
        return to_tensor(out["image"], self.mean, self.std), result
