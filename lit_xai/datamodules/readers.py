"""Image readers: the raw pixels (and optional artifact / region-of-interest masks) of one split, by position."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from ._io import decode_image, decode_mask

__all__ = ["ArrayImageReader", "FileImageReader", "ImageReader"]


class ImageReader(Protocol):
    """Loads the raw pixels of the samples of one split, by position within that split."""

    def image(self, position: int) -> np.ndarray:
        """uint8 ``(H, W, 3)`` RGB image."""
        ...

    def artifact_mask(self, position: int) -> np.ndarray | None:
        """bool ``(H, W)`` ground-truth artifact mask, or ``None`` if unknown for this dataset."""
        ...


class FileImageReader:
    """Reads image files (upright, 3-channel uint8, see :func:`lit_xai.datamodules._io.decode_image`).

    Args:
        paths: image files.
        roi_paths: optional region-of-interest mask files, one per image (resized to their image).
        size_hint: the training side length; JPEGs are decoded at reduced scale close to ``2 * size_hint``.

    Example:
        >>> FileImageReader(["a.png"]).paths
        ['a.png']
    """

    def __init__(
        self, paths: Sequence[str], roi_paths: Sequence[str] | None = None, size_hint: int | None = None
    ) -> None:
        self.paths = [str(p) for p in paths]
        self.roi_paths = None if roi_paths is None else [str(p) for p in roi_paths]
        if self.roi_paths is not None and len(self.roi_paths) != len(self.paths):
            raise ValueError(f"roi_paths has {len(self.roi_paths)} entries but paths has {len(self.paths)}")
        self.size_hint = size_hint
        self._last_shape: tuple[int, int] | None = None

    def image(self, position: int) -> np.ndarray:
        image = decode_image(self.paths[position], self.size_hint)
        self._last_shape = image.shape[:2]
        return image

    def artifact_mask(self, position: int) -> np.ndarray | None:
        return None

    def roi_mask(self, position: int) -> np.ndarray | None:
        """The region-of-interest mask of ``position``, at the size of its (decoded) image."""
        if self.roi_paths is None:
            return None
        shape = self._last_shape or decode_image(self.paths[position], self.size_hint).shape[:2]
        return decode_mask(self.roi_paths[position], shape)


class ArrayImageReader:
    """Serves images (and optional artifact masks) from in-memory arrays.

    Example:
        >>> r = ArrayImageReader(np.zeros((2, 4, 4, 3), np.uint8), np.zeros((2, 4, 4), bool))
        >>> r.image(1).shape, r.artifact_mask(1).shape
        ((4, 4, 3), (4, 4))
    """

    def __init__(self, images: np.ndarray, masks: np.ndarray | None = None) -> None:
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
        if masks is not None and masks.shape != images.shape[:3]:
            raise ValueError(f"masks must be (N, H, W) = {images.shape[:3]}, got {masks.shape}")
        self.images = images
        self.masks = None if masks is None else masks.astype(bool)

    def image(self, position: int) -> np.ndarray:
        return self.images[position]

    def artifact_mask(self, position: int) -> np.ndarray | None:
        return None if self.masks is None else self.masks[position]
