"""Image-folder datasets: any ``root/<class>/*.jpg`` tree, and the Kaggle "melanoma 10000 images" layout.

``ImageFolderDataModule`` reads ``root/<class>/**/*.{jpg,jpeg,png,bmp,tif}`` (random stratified split) or
``root/{train,val,test}/<class>/...`` (predefined split; a missing ``val``/``test`` folder is carved out of
``train``). A root holding nothing but a single folder is descended into, because archives often double the top
folder. Classes are the folder names in sorted order; two classes make a binary task (the second is positive).

``MelanomaFolderDataModule`` is the ``train|test/benign|malignant`` layout of Kaggle
``hasnainjaved/melanoma-skin-cancer-dataset-of-10000-images`` (also ``bhaveshmittal/melanoma-cancer-dataset``):
labels come only from the folders (every file is called ``melanoma_<n>.jpg``); there are no patient ids, so the
validation split cannot be grouped and may hold near-duplicates of training images.

Example:
    >>> import numpy as np, tempfile, pathlib
    >>> from PIL import Image
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> for i in range(12):
    ...     (root / ("cat", "dog", "owl")[i % 3]).mkdir(exist_ok=True)
    ...     Image.fromarray(np.full((9, 9, 3), 20 * i, np.uint8)).save(root / ("cat", "dog", "owl")[i % 3] / f"{i}.png")
    >>> dm = ImageFolderDataModule(str(root), image_size=8, val_fraction=0.25, test_fraction=0.25)
    >>> dm.class_names, dm.task, len(dm.dataset("train"))
    (('cat', 'dog', 'owl'), 'multiclass', 6)
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, ClassVar, Optional

import numpy as np

from ._io import IMAGE_EXTENSIONS, DataFormatError, natural_key
from .base import TASKS, SampleTable
from .files import FileDataModule

__all__ = ["ImageFolderDataModule", "MelanomaFolderDataModule"]

_SPLIT_NAMES: dict[str, str] = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}


def _subdirs(path: Path) -> list[Path]:
    return sorted((p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def _images_under(path: Path) -> list[Path]:
    out = []
    for d, dirs, files in os.walk(path, followlinks=True):
        dirs.sort()
        out += [Path(d) / f for f in files if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS]
    return sorted(out, key=lambda p: natural_key(str(p)))


def _has_images(path: Path) -> bool:
    return any(p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS for p in path.iterdir())


def _descend(root: Path) -> Path:
    """Follow a chain of lone folders (``dataset/dataset/...``) down to the one holding classes or splits."""
    while True:
        subs = _subdirs(root)
        if len(subs) == 1 and not _has_images(root) and subs[0].name.lower() not in _SPLIT_NAMES:
            root = subs[0]
        else:
            return root


class ImageFolderDataModule(FileDataModule):
    """Any ``root/<class>/`` or ``root/{train,val,test}/<class>/`` image tree.

    Args:
        root: the folder holding the class folders, or the split folders.
        class_names: expected class folder names in label order; default: the folders found, sorted. With it,
            a class folder not in the list is an error (matching is case-insensitive).
        task: ``"binary"`` / ``"multiclass"``; default binary for two classes (class 1 positive), else multiclass.
        on_bad_image, **kwargs: see :class:`~lit_xai.datamodules.files.FileDataModule`.

    Example:
        ``python train.py --config configs/demo.yaml --data=ImageFolderDataModule --data.root=/data/my_images``
    """

    expected_contents: ClassVar[str] = "one folder per class (or train/, val/, test/ folders with class folders)"

    def __init__(
        self,
        root: str,
        class_names: Optional[list[str]] = None,
        task: Optional[str] = None,
        on_bad_image: str = "raise",
        **kwargs: Any,
    ) -> None:
        self._requested_classes = None if class_names is None else [str(c) for c in class_names]
        from ._io import require_root

        base = _descend(require_root(root, self.expected_contents))
        self._layout_root = base
        self._split_dirs = self._find_split_dirs(base)
        found = self._find_classes()
        if self._requested_classes is not None:
            lower = {c.lower(): c for c in self._requested_classes}
            unknown = sorted(f for f in found if f.lower() not in lower)
            if unknown:
                raise DataFormatError(
                    f"{base} has class folders {unknown} that are not in class_names={self._requested_classes}; "
                    "remove them or add them to class_names"
                )
            names = tuple(self._requested_classes)
        else:
            names = tuple(found)
        if len(names) < 2:
            raise DataFormatError(
                f"{base} must contain at least two class folders with images (found {list(names)}); expected "
                f"{self.expected_contents}"
            )
        self.class_names = names
        chosen = task or ("binary" if len(names) == 2 else "multiclass")
        if chosen not in TASKS or chosen == "multilabel":
            raise ValueError(f"task must be 'binary' or 'multiclass' for an image folder, got {chosen!r}")
        if chosen == "binary" and len(names) != 2:
            raise ValueError(f"task='binary' needs exactly two classes, found {list(names)}")
        self.task = chosen
        super().__init__(root=root, on_bad_image=on_bad_image, **kwargs)

    def _find_split_dirs(self, base: Path) -> dict[str, Path]:
        splits: dict[str, Path] = {}
        for sub in _subdirs(base):
            name = _SPLIT_NAMES.get(sub.name.lower())
            if name is not None and name not in splits and _subdirs(sub):
                splits[name] = sub
        if splits and "train" not in splits:
            raise DataFormatError(f"{base} has {sorted(splits)} folders but no train/ folder")
        return splits

    def _class_dirs(self) -> list[tuple[str | None, Path]]:
        """(split or None, class folder) pairs."""
        if self._split_dirs:
            return [(split, d) for split, s in self._split_dirs.items() for d in _subdirs(s)]
        return [(None, d) for d in _subdirs(self._layout_root)]

    def _find_classes(self) -> list[str]:
        seen: dict[str, str] = {}
        for _, d in self._class_dirs():
            seen.setdefault(d.name.lower(), d.name)
        return sorted(seen.values(), key=str.lower)

    def index_files(self) -> SampleTable:
        label_of = {c.lower(): i for i, c in enumerate(self.class_names)}
        paths: list[str] = []
        targets: list[int] = []
        splits: list[str] = []
        empty: list[str] = []
        for split, d in self._class_dirs():
            files = _images_under(d)
            if not files:
                empty.append(str(d))
            paths += [str(f) for f in files]
            targets += [label_of[d.name.lower()]] * len(files)
            splits += [split or "train"] * len(files)
        if empty:
            self.note(f"class folders without images: {empty}")
        if not self._split_dirs:
            warnings.warn(
                f"{type(self).__name__}: {self._layout_root} has no patient/lesion ids, so the split is stratified "
                "per image; images of one patient may land in different splits",
                stacklevel=2,
            )
        return SampleTable(
            targets=np.asarray(targets, dtype=np.int64),
            paths=paths,
            splits=np.asarray(splits) if self._split_dirs else None,
        )


class MelanomaFolderDataModule(ImageFolderDataModule):
    """Kaggle "Melanoma Skin Cancer Dataset of 10000 Images": ``{train,test}/{benign,malignant}`` folders.

    Binary (``malignant`` positive). ``test/`` is the test split; validation is carved out of ``train/``
    (``val_fraction``), stratified only, as the dataset has no patient or lesion ids.

    Args:
        root: the download folder (``melanoma_cancer_dataset/`` or its parent).
        on_bad_image, **kwargs: see :class:`~lit_xai.datamodules.files.FileDataModule`.
    """

    orientation_invariant: ClassVar[bool] = True
    expected_contents: ClassVar[str] = "train/ and test/ folders, each with benign/ and malignant/"

    def __init__(self, root: str, on_bad_image: str = "raise", **kwargs: Any) -> None:
        super().__init__(root, class_names=["benign", "malignant"], task="binary", on_bad_image=on_bad_image, **kwargs)
        if not self._split_dirs:
            raise DataFormatError(f"{self._layout_root} has no train/ folder; expected {self.expected_contents}")
