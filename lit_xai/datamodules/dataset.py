"""One split as a dataset of dict items (``docs/CONTRACTS.md``), and the loader workers' augmentation seeds."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from .readers import ImageReader
from .transforms import ImageTransform

__all__ = ["ImageDataset"]


class ImageDataset(Dataset):
    """One split: items are dicts following ``docs/CONTRACTS.md``; ``index`` is the position in this dataset.

    Args:
        reader: loads raw pixels by position.
        targets: ``(N,)`` int or ``(N, K)`` float targets of this split.
        transform: augmentation + normalization.
        artifacts: optional ``(N,)`` bool artifact flags. If absent but the reader has masks, the flag is
            ``mask.any()``.
    """

    def __init__(
        self,
        reader: ImageReader,
        targets: np.ndarray,
        transform: ImageTransform,
        artifacts: np.ndarray | None = None,
    ) -> None:
        self.reader = reader
        self.targets = np.asarray(targets)
        self.transform = transform
        self.artifacts = None if artifacts is None else np.asarray(artifacts, dtype=bool)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a split of {len(self)} samples")
        index = int(index) % len(self)
        mask = self.reader.artifact_mask(index)
        raw = self.reader.image(index)
        roi_reader = getattr(self.reader, "roi_mask", None)
        roi = roi_reader(index) if roi_reader is not None else None
        if roi is not None and roi.shape != raw.shape[:2]:
            raise ValueError(f"roi mask of item {index} has shape {roi.shape}, its image {raw.shape[:2]}")
        image, (mask_t, roi_t) = self.transform.apply(raw, mask, roi)
        target = self.targets[index]
        item: dict[str, Any] = {
            "image": image,
            "target": torch.as_tensor(target, dtype=torch.float32 if self.targets.ndim == 2 else torch.long),
            "index": index,
        }
        if self.artifacts is not None:
            item["artifact"] = bool(self.artifacts[index])
        elif mask is not None:
            item["artifact"] = bool(mask.any())
        if mask_t is not None:
            item["artifact_mask"] = mask_t
        if roi_t is not None:
            item["roi_mask"] = roi_t
        return item


def _seed_worker(worker_id: int) -> None:
    # Each worker holds a copy of the transform with the same albumentations state; without re-seeding every worker
    # would apply the same augmentation sequence. torch.initial_seed() differs per worker and derives from the
    # loader's generator, so runs stay reproducible.
    info = get_worker_info()
    dataset = info.dataset if info is not None else None
    transform = getattr(dataset, "transform", None)
    if isinstance(transform, ImageTransform):
        transform.reseed(torch.initial_seed())
