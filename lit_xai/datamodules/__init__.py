"""DataModules: the base ``ImageDataModule`` (splits, loaders, transforms) and one dataset per file."""

from .base import (
    SPLITS,
    TASKS,
    ArrayImageReader,
    FileImageReader,
    ImageDataModule,
    ImageDataset,
    ImageReader,
    SampleTable,
    split_indices,
)
from .synthetic import ShortcutImageGenerator, SyntheticShortcutDataModule, SyntheticShortcutDataset
from .transforms import IMAGENET_MEAN, IMAGENET_STD, ImageTransform, build_augmentation, denormalize, normalize

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SPLITS",
    "TASKS",
    "ArrayImageReader",
    "FileImageReader",
    "ImageDataModule",
    "ImageDataset",
    "ImageReader",
    "ImageTransform",
    "SampleTable",
    "ShortcutImageGenerator",
    "SyntheticShortcutDataModule",
    "SyntheticShortcutDataset",
    "build_augmentation",
    "denormalize",
    "normalize",
    "split_indices",
]
