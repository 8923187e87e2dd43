"""COVID chest X-ray datasets as distributed, with lung masks as the region of interest (``roi_mask``).

* :class:`CovidQUExDataModule` — COVID-QU-Ex (Kaggle ``anasmohammedtahir/covidqu``; Tahir et al. 2021): classes
  ``COVID-19``, ``Non-COVID``, ``Normal``; predefined ``Train/Val/Test``; ``lung masks/`` beside ``images/``; the
  doubled top folders (``Lung Segmentation Data/Lung Segmentation Data/``) are found recursively.
* :class:`CovidRadiographyDataModule` — COVID-19 Radiography Database v4/v5 (Kaggle
  ``tawsifurrahman/covid19-radiography-database``): ``COVID``, ``Lung_Opacity``, ``Normal``, ``Viral Pneumonia``,
  each with ``images/`` and ``masks/`` (256 x 256 masks of 299 x 299 images, resized to their image). There are no
  patient ids, so the split is stratified only. Each class comes from its own sources: a built-in shortcut.

X-rays (grayscale PNG, 8 or 16 bit, a few RGB) always come out as 3-channel uint8. Items carry ``roi_mask`` (bool
``(H, W)``, True inside the lungs) resized and augmented in lockstep with the image, so
:func:`lit_xai.artifacts.relevance_outside_roi` can measure relevance outside the lungs.

Example:
    ``python train.py --config configs/covid_resnet50.yaml --data.init_args.root=/data/COVID-QU-Ex``
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ._io import IMAGE_EXTENSIONS, DataFormatError, find_dirs, natural_key, require_root
from .base import SampleTable
from .files import FileDataModule

__all__ = ["CovidQUExDataModule", "CovidRadiographyDataModule"]

_QUEX_SUBSETS = {"lung": "Lung Segmentation Data", "infection": "Infection Segmentation Data"}


def _child(parent: Path, name: str) -> Path | None:
    """The sub-folder of ``parent`` called ``name``, case-insensitively (None if absent)."""
    if not parent.is_dir():
        return None
    for p in sorted(parent.iterdir()):
        if p.is_dir() and p.name.lower() == name.lower():
            return p
    return None


def _image_files(folder: Path) -> list[Path]:
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    return sorted(files, key=lambda p: natural_key(p.name))


class CovidQUExDataModule(FileDataModule):
    """COVID-QU-Ex: ``COVID-19`` / ``Non-COVID`` / ``Normal`` chest X-rays with lung masks (predefined splits).

    Args:
        root: the unzipped dataset (``COVID-QU-Ex dataset/`` or any folder above ``Lung Segmentation Data``).
        subset: ``"lung"`` (default; the whole 33,920-image set) or ``"infection"`` (5,826 images).
        roi: load the lung masks as ``roi_mask``.
        on_bad_image, **kwargs: see :class:`~lit_xai.datamodules.files.FileDataModule`.
    """

    class_names: ClassVar[tuple[str, ...]] = ("COVID-19", "Non-COVID", "Normal")
    task: ClassVar[str] = "multiclass"
    expected_contents: ClassVar[str] = (
        "'Lung Segmentation Data/' (with Train/, Val/, Test/ and the class folders COVID-19/, Non-COVID/, Normal/)"
    )

    def __init__(
        self, root: str, subset: str = "lung", roi: bool = True, on_bad_image: str = "raise", **kwargs: Any
    ) -> None:
        if subset not in _QUEX_SUBSETS:
            raise ValueError(f"subset must be one of {sorted(_QUEX_SUBSETS)}, got {subset!r}")
        self.subset = subset
        self.roi = roi
        self.data_dir = self._find(require_root(root, self.expected_contents))
        super().__init__(root=root, on_bad_image=on_bad_image, **kwargs)

    def _find(self, root: Path) -> Path:
        def has_train(d: Path) -> bool:
            return _child(d, "Train") is not None

        # doubled folders: take the deepest folder of that name that holds Train/
        named = [d for d in find_dirs(root, (_QUEX_SUBSETS[self.subset],)) if has_train(d)]
        if named:
            return max(named, key=lambda d: len(d.parts))
        if has_train(root):  # root points inside the subset folder already
            return root
        raise FileNotFoundError(
            f"no '{_QUEX_SUBSETS[self.subset]}' folder with Train/ under {root}; set data.init_args.root to the "
            f"folder that contains {self.expected_contents}"
        )

    def index_files(self) -> SampleTable:
        paths: list[str] = []
        rois: list[str] = []
        targets: list[int] = []
        splits: list[str] = []
        for folder_name, split in (("Train", "train"), ("Val", "val"), ("Test", "test")):
            split_dir = _child(self.data_dir, folder_name)
            if split_dir is None:
                self.note(f"no {folder_name}/ folder in {self.data_dir}; that split is carved out of Train")
                continue
            for label, name in enumerate(self.class_names):
                class_dir = _child(split_dir, name)
                images = None if class_dir is None else _child(class_dir, "images")
                if images is None:
                    raise DataFormatError(
                        f"{split_dir} has no {name}/images/ folder; expected {self.expected_contents}"
                    )
                masks = _child(class_dir, "lung masks") or class_dir / "lung masks"
                for f in _image_files(images):
                    paths.append(str(f))
                    rois.append(str(masks / f.name))
                    targets.append(label)
                    splits.append(split)
        return SampleTable(
            targets=np.asarray(targets, dtype=np.int64),
            paths=paths,
            splits=np.asarray(splits),
            roi_paths=rois if self.roi else None,
        )


class CovidRadiographyDataModule(FileDataModule):
    """COVID-19 Radiography Database (v4/v5): four classes, ``images/`` + ``masks/`` per class, stratified split.

    Args:
        root: the unzipped dataset (``COVID-19_Radiography_Dataset/`` or its parent).
        roi: load ``masks/`` as ``roi_mask`` (set ``False`` for copies without masks).
        on_bad_image, **kwargs: see :class:`~lit_xai.datamodules.files.FileDataModule`.
    """

    class_names: ClassVar[tuple[str, ...]] = ("COVID", "Lung_Opacity", "Normal", "Viral Pneumonia")
    task: ClassVar[str] = "multiclass"
    expected_contents: ClassVar[str] = "the class folders COVID/, Lung_Opacity/, Normal/, 'Viral Pneumonia/'"

    def __init__(self, root: str, roi: bool = True, on_bad_image: str = "raise", **kwargs: Any) -> None:
        self.roi = roi
        base = require_root(root, self.expected_contents)
        candidates = [d.parent for d in find_dirs(base, ("COVID",)) if _child(d.parent, "Normal") is not None]
        if not candidates:
            raise FileNotFoundError(
                f"no COVID/ and Normal/ folders under {base}; set data.init_args.root to the folder that contains "
                f"{self.expected_contents}"
            )
        self.data_dir = min(candidates, key=lambda d: len(d.parts))
        super().__init__(root=root, on_bad_image=on_bad_image, **kwargs)

    def index_files(self) -> SampleTable:
        paths: list[str] = []
        rois: list[str] = []
        targets: list[int] = []
        for label, name in enumerate(self.class_names):
            class_dir = _child(self.data_dir, name)
            if class_dir is None:
                raise DataFormatError(f"{self.data_dir} has no {name}/ folder; expected {self.expected_contents}")
            images = _child(class_dir, "images") or class_dir
            masks = _child(class_dir, "masks")
            if self.roi and masks is None:
                raise DataFormatError(
                    f"{class_dir} has no masks/ folder; pass roi=false (data.init_args.roi) for copies without masks"
                )
            for f in _image_files(images):
                paths.append(str(f))
                rois.append(str((masks or class_dir) / f.name))
                targets.append(label)
        warnings.warn(
            f"{type(self).__name__}: the dataset has no patient ids, so the split is stratified per image; note that "
            "each class comes from different sources (a shortcut the model can learn)",
            stacklevel=2,
        )
        return SampleTable(
            targets=np.asarray(targets, dtype=np.int64), paths=paths, roi_paths=rois if self.roi else None
        )
