"""ISIC dermoscopy datasets as distributed: ISIC 2020 (official and Kaggle), ISIC 2019 and HAM10000.

The layout is detected from the CSVs found (recursively) under ``root``:

========== ====================================================== ============================ ==================
layout     label file                                              images                       groups (splits)
========== ====================================================== ============================ ==================
isic2020   ``ISIC_2020_Training_GroundTruth(_v2).csv``             ``ISIC_2020_Training_JPEG/``  ``patient_id``
kaggle2020 ``train.csv`` (``image_name, patient_id, ..., target``) ``jpeg/train/``              ``patient_id``
isic2019   ``ISIC_2019_Training_GroundTruth.csv`` (+ ``_Metadata``) ``ISIC_2019_Training_Input/`` ``lesion_id``
ham10000   ``HAM10000_metadata(.csv)``                              ``HAM10000_images_part_1/2``  ``lesion_id``
========== ====================================================== ============================ ==================

Images are found by id anywhere under ``root`` (doubled folders, ``part_1``/``part1``/lower-case copies,
``_downsampled`` ids, ``.jpg`` already in the id). ISIC 2020's documented duplicates
(``ISIC_2020_Training_Duplicates.csv``, column ``image_name_2``) and the rows Chris Deotte's resized sets mark with
``tfrecord == -1`` are dropped, with a note. A blank ``lesion_id`` (2,084 older ISIC 2019 images) makes the image
its own group. No patient or lesion is ever in two splits.

Example:
    ``python train.py --config configs/melanoma_resnet50.yaml --data.init_args.root=/data/ISIC_2019``
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Optional

import numpy as np

from ._io import CsvTable, DataFormatError, check_inside, find_files, index_images, read_csv
from .base import SampleTable
from .files import FileDataModule

__all__ = ["ISIC_LAYOUTS", "ISICDataModule"]

ISIC_LAYOUTS: tuple[str, ...] = ("isic2020", "kaggle2020", "isic2019", "ham10000")
_ISIC2019_CLASSES = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC")
_HAM_CLASSES = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
_BINARY = ("other", "melanoma")
_FILES = {
    "isic2020": ("ISIC_2020_Training_GroundTruth_v2.csv", "ISIC_2020_Training_GroundTruth.csv"),
    "kaggle2020": ("train.csv",),
    "isic2019": ("ISIC_2019_Training_GroundTruth.csv",),
    "ham10000": ("HAM10000_metadata.csv", "HAM10000_metadata"),
}
_ONE = {"1", "1.0", "1.00"}
_ZERO = {"0", "0.0", "0.00"}


def _binary_value(value: str, table: CsvTable, i: int, column: str) -> int:
    if value in _ONE:
        return 1
    if value in _ZERO:
        return 0
    raise DataFormatError(f"{table.where(i)}: unknown {column} value {value!r} (expected 0 or 1)")


class ISICDataModule(FileDataModule):
    """ISIC 2020 / ISIC 2019 / HAM10000 from the folder as downloaded (layout detected; see the module docstring).

    Args:
        root: the dataset folder (e.g. ``siim-isic-melanoma-classification/``, ``ISIC_2019/``, ``HAM10000/``).
        labels: ``"melanoma"`` (default): binary melanoma (positive) vs the rest. ``"dataset"``: the dataset's own
            classes: ISIC 2019's 8 diagnoses (``MEL NV BCC AK BKL DF VASC SCC``; ``UNK`` has no training image),
            HAM10000's 7 ``dx`` values; ISIC 2020 only has benign/malignant, so it stays binary.
        layout: force one of :data:`ISIC_LAYOUTS` when ``root`` holds several (default: detect; ambiguous = error).
        on_bad_image, **kwargs: see :class:`~lit_xai.datamodules.files.FileDataModule` (``image_size``,
            ``batch_size``, ``num_workers``, ``val_fraction``, ``test_fraction``, ``seed``, ``augment`` ...).

    Example:
        >>> # dm = ISICDataModule("/data/ISIC_2019", labels="dataset", image_size=224)
        >>> # dm.class_names -> ('MEL', 'NV', 'BCC', 'AK', 'BKL', 'DF', 'VASC', 'SCC'); dm.pos_weight() for binary
    """

    orientation_invariant: ClassVar[bool] = True
    expected_contents: ClassVar[str] = (
        "ISIC_2020_Training_GroundTruth.csv, the Kaggle train.csv + jpeg/train, ISIC_2019_Training_GroundTruth.csv "
        "+ ISIC_2019_Training_Input/, or HAM10000_metadata.csv + HAM10000_images_part_1/2"
    )

    def __init__(
        self,
        root: str,
        labels: str = "melanoma",
        layout: Optional[str] = None,
        on_bad_image: str = "raise",
        **kwargs: Any,
    ) -> None:
        if labels not in ("melanoma", "dataset"):
            raise ValueError(f"labels must be 'melanoma' or 'dataset', got {labels!r}")
        if layout is not None and layout not in ISIC_LAYOUTS:
            raise ValueError(f"layout must be one of {ISIC_LAYOUTS} or None, got {layout!r}")
        from ._io import require_root

        base = require_root(root, self.expected_contents)
        self.labels = labels
        self.layout, self.label_file = self._detect(base, layout)
        if labels == "dataset" and self.layout == "isic2019":
            self.class_names, self.task = _ISIC2019_CLASSES, "multiclass"
        elif labels == "dataset" and self.layout == "ham10000":
            self.class_names, self.task = _HAM_CLASSES, "multiclass"
        else:
            self.class_names, self.task = _BINARY, "binary"
        super().__init__(root=root, on_bad_image=on_bad_image, **kwargs)

    # ------------------------------------------------------------------------------------------------- detection
    def _detect(self, root: Path, forced: Optional[str]) -> tuple[str, Path]:
        names = [n for files in _FILES.values() for n in files]
        candidates: dict[str, list[Path]] = {}
        for path in find_files(root, names):
            for layout, files in _FILES.items():
                if path.name.lower() not in {f.lower() for f in files}:
                    continue
                if layout == "kaggle2020" and not _header_has(path, ("image_name", "patient_id", "target")):
                    continue  # another dataset's train.csv (e.g. CheXpert)
                candidates.setdefault(layout, []).append(path)
        # the first file name listed wins (GroundTruth_v2 over v1: it adds lesion_id), then the shallowest path
        found = {
            layout: min(paths, key=lambda p: ([f.lower() for f in _FILES[layout]].index(p.name.lower()), len(p.parts)))
            for layout, paths in candidates.items()
        }
        if forced is not None:
            if forced not in found:
                raise DataFormatError(
                    f"layout={forced!r}, but no {' or '.join(_FILES[forced])} under {root}; found layouts: "
                    f"{sorted(found) or 'none'}"
                )
            return forced, found[forced]
        if not found:
            raise FileNotFoundError(
                f"no ISIC label file under {root}; set data.init_args.root to the folder that contains "
                f"{self.expected_contents}"
            )
        if len(found) > 1:
            raise DataFormatError(
                f"{root} holds several ISIC datasets ({', '.join(f'{k}: {v}' for k, v in found.items())}); set "
                f"data.init_args.layout to one of {sorted(found)} (ISIC 2019 already contains HAM10000)"
            )
        layout = next(iter(found))
        return layout, found[layout]

    # -------------------------------------------------------------------------------------------------- indexing
    def _image_id(self, table: CsvTable, i: int, column: str) -> str:
        """The image id in ``column`` of row ``i``; an id that would lead out of ``root`` (``../``) is an error."""
        value = table.rows[i][column]
        check_inside(self.root, self.root / f"{value}.jpg", f"{table.where(i)}, {column} {value!r}")
        return value

    def index_files(self) -> SampleTable:
        images = index_images(self.root)
        if self.layout in ("isic2020", "kaggle2020"):
            ids, targets, groups = self._read_2020()
        elif self.layout == "isic2019":
            ids, targets, groups = self._read_2019()
        else:
            ids, targets, groups = self._read_ham()
        paths = [str(self._find(images, i)) for i in ids]
        return SampleTable(targets=np.asarray(targets, dtype=np.int64), paths=paths, groups=np.asarray(groups))

    def _find(self, images: dict[str, Path], image_id: str) -> Path:
        key = image_id.lower()
        if key.endswith((".jpg", ".jpeg", ".png")):
            key = key.rsplit(".", 1)[0]
        for candidate in (key, key.removesuffix("_downsampled"), key + "_downsampled"):
            if candidate in images:
                return images[candidate]
        return self.root / f"{image_id}.jpg"  # does not exist: reported as missing, named by its id

    def _read_2020(self) -> tuple[list[str], list[int], list[str]]:
        table = read_csv(self.label_file, ("image_name", "patient_id", "target"))
        drop: set[str] = set()
        dup_files = find_files(self.root, ("ISIC_2020_Training_Duplicates.csv",))
        if dup_files:
            dups = read_csv(dup_files[0], ("image_name_1", "image_name_2"))
            drop = {v.lower() for v in dups.column("image_name_2") if v}
        ids, targets, groups = [], [], []
        n_dup = n_tf = 0
        has_tfrecord = "tfrecord" in table.columns
        for i, row in enumerate(table.rows):
            name = self._image_id(table, i, "image_name")
            if not name:
                raise DataFormatError(f"{table.where(i)}: blank image_name")
            if name.lower() in drop:
                n_dup += 1
                continue
            if has_tfrecord and row["tfrecord"] in ("-1", "-1.0"):
                n_tf += 1
                continue
            ids.append(name)
            targets.append(_binary_value(row["target"], table, i, "target"))
            groups.append(row["patient_id"])
        if n_dup:
            self.note(f"dropped {n_dup} documented duplicate images listed in {dup_files[0].name} (image_name_2)")
        if n_tf:
            self.note(f"dropped {n_tf} rows marked tfrecord == -1 (duplicates) in {table.path.name}")
        return ids, targets, groups

    def _read_2019(self) -> tuple[list[str], list[int], list[str]]:
        table = read_csv(self.label_file, ("image", *_ISIC2019_CLASSES))
        lesion: dict[str, str] = {}
        meta = find_files(self.root, ("ISIC_2019_Training_Metadata.csv",))
        if meta:
            m = read_csv(meta[0], ("image", "lesion_id"), aliases={"sex": ("gender",)})
            lesion = {r["image"].lower(): r["lesion_id"] for r in m.rows}
        else:
            self.note("no ISIC_2019_Training_Metadata.csv: without lesion ids every image is its own group")
        columns = [*_ISIC2019_CLASSES, *(["UNK"] if "UNK" in table.columns else [])]
        ids, targets, groups = [], [], []
        for i, row in enumerate(table.rows):
            values = [row[c] for c in columns]
            bad = [v for v in values if v not in _ONE | _ZERO]
            if bad:
                raise DataFormatError(f"{table.where(i)} (image {row['image']}): unknown label value {bad[0]!r}")
            hot = [c for c, v in zip(columns, values) if v in _ONE]
            if len(hot) != 1:
                raise DataFormatError(
                    f"{table.where(i)} (image {row['image']}): expected exactly one 1.0 among {columns}, got {hot}"
                )
            if hot[0] == "UNK":
                raise DataFormatError(
                    f"{table.where(i)} (image {row['image']}): label UNK has no class here (the training set has no "
                    "UNK image); remove the row"
                )
            label = _ISIC2019_CLASSES.index(hot[0])
            ids.append(self._image_id(table, i, "image"))
            targets.append(label if self.labels == "dataset" else int(hot[0] == "MEL"))
            groups.append(lesion.get(row["image"].lower(), ""))
        return ids, targets, groups

    def _read_ham(self) -> tuple[list[str], list[int], list[str]]:
        table = read_csv(self.label_file, ("lesion_id", "image_id", "dx"))
        ids, targets, groups = [], [], []
        for i, row in enumerate(table.rows):
            dx = row["dx"].lower()
            if dx not in _HAM_CLASSES:
                raise DataFormatError(
                    f"{table.where(i)} (image {row['image_id']}): unknown dx {row['dx']!r}; expected one of "
                    f"{list(_HAM_CLASSES)}"
                )
            image_id = self._image_id(table, i, "image_id").removesuffix(".jpg")
            ids.append(image_id)
            targets.append(_HAM_CLASSES.index(dx) if self.labels == "dataset" else int(dx == "mel"))
            groups.append(row["lesion_id"])
        return ids, targets, groups


def _header_has(path: Path, columns: tuple[str, ...]) -> bool:
    with open(path, encoding="utf-8-sig") as fh:
        header = {h.strip() for h in fh.readline().split(",")}
    return all(c in header for c in columns)
