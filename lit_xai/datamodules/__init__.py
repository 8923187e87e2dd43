"""DataModules: the base ``ImageDataModule`` (splits, loaders, transforms) and one dataset per file.

Real datasets read the folder as distributed: :class:`ISICDataModule` (ISIC 2020 / 2019, HAM10000),
:class:`MelanomaFolderDataModule`, :class:`CovidQUExDataModule`, :class:`CovidRadiographyDataModule`,
:class:`CheXpertDataModule` and :class:`ImageFolderDataModule` (any ``root/<class>/`` tree).
"""

from ._io import DataFormatError
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
from .chexpert import CHEXPERT_COMPETITION, CHEXPERT_OBSERVATIONS, CheXpertDataModule
from .covid import CovidQUExDataModule, CovidRadiographyDataModule
from .files import BAD_IMAGE_POLICIES, FileDataModule
from .folder import ImageFolderDataModule, MelanomaFolderDataModule
from .isic import ISIC_LAYOUTS, ISICDataModule
from .synthetic import ShortcutImageGenerator, SyntheticShortcutDataModule, SyntheticShortcutDataset
from .transforms import IMAGENET_MEAN, IMAGENET_STD, ImageTransform, build_augmentation, denormalize, normalize

__all__ = [
    "BAD_IMAGE_POLICIES",
    "CHEXPERT_COMPETITION",
    "CHEXPERT_OBSERVATIONS",
    "CheXpertDataModule",
    "CovidQUExDataModule",
    "CovidRadiographyDataModule",
    "DataFormatError",
    "FileDataModule",
    "ISICDataModule",
    "ISIC_LAYOUTS",
    "ImageFolderDataModule",
    "MelanomaFolderDataModule",
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
