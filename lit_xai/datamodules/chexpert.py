"""CheXpert (``CheXpert-v1.0-small`` or full) as distributed: multi-label chest X-rays with uncertainty labels.

``train.csv`` and ``valid.csv`` are found under ``root`` (recursively). Their ``Path`` column starts with
``CheXpert-v1.0-small/`` in the official zip, but the Kaggle mirror unzips without that folder: the prefix is
resolved against the CSV's folder either way. ``train.csv`` is split into train/val by **patient**
(``patientNNNNN`` from the path), ``valid.csv`` (234 images, expert labels) is the test split.

Labels are ``1.0`` positive, ``0.0`` negative, ``-1.0`` uncertain and blank (not mentioned, read as negative).
The uncertainty policy maps ``-1.0`` (Irvin et al. 2019): ``"zeros"`` -> 0, ``"ones"`` -> 1, ``"ignore"`` ->
NaN, which :class:`lit_xai.models.ImageClassifier` masks out of the loss and of the metrics.

Example:
    ``python train.py --config configs/chexpert_densenet121.yaml --data.init_args.root=/data/CheXpert-v1.0-small``
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ._io import CsvTable, DataFormatError, check_inside, find_files, read_csv, require_root
from .base import SampleTable
from .files import FileDataModule

__all__ = ["CHEXPERT_COMPETITION", "CHEXPERT_OBSERVATIONS", "CheXpertDataModule"]

#: the 14 observations, in the CSV's column order
CHEXPERT_OBSERVATIONS: tuple[str, ...] = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
#: the 5 competition tasks
CHEXPERT_COMPETITION: tuple[str, ...] = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
_POLICIES = {"zeros": 0.0, "ones": 1.0, "ignore": float("nan")}
_VALUES = {"1.0": 1.0, "1": 1.0, "0.0": 0.0, "0": 0.0, "": 0.0}
_UNCERTAIN = {"-1.0", "-1"}
_PATIENT = re.compile(r"^patient\d+$", re.IGNORECASE)


class CheXpertDataModule(FileDataModule):
    """CheXpert multi-label classification (see the module docstring).

    Args:
        root: the dataset folder (``CheXpert-v1.0-small/`` or the folder above it).
        uncertainty: policy for ``-1.0`` labels: ``"zeros"``, ``"ones"`` or ``"ignore"`` (masked out of the loss).
        observations: ``"competition"`` (the 5 competition tasks) or ``"all"`` (the 14 observations).
        frontal_only: keep frontal views only (drops laterals, with a note of how many).
        on_bad_image, **kwargs: see :class:`~lit_xai.datamodules.files.FileDataModule`; ``test_fraction`` is
            unused (``valid.csv`` is the test split).
    """

    task: ClassVar[str] = "multilabel"
    expected_contents: ClassVar[str] = "train.csv and valid.csv (and the train/ and valid/ image folders)"

    def __init__(
        self,
        root: str,
        uncertainty: str = "zeros",
        observations: str = "competition",
        frontal_only: bool = True,
        on_bad_image: str = "raise",
        **kwargs: Any,
    ) -> None:
        if uncertainty not in _POLICIES:
            raise ValueError(f"uncertainty must be one of {sorted(_POLICIES)}, got {uncertainty!r}")
        if observations not in ("competition", "all"):
            raise ValueError(f"observations must be 'competition' or 'all', got {observations!r}")
        self.uncertainty = uncertainty
        self.observations = observations
        self.frontal_only = frontal_only
        self.class_names = CHEXPERT_COMPETITION if observations == "competition" else CHEXPERT_OBSERVATIONS
        base = require_root(root, self.expected_contents)
        self.train_csv = self._find_csv(base, "train.csv")
        self.valid_csv = self._find_csv(base, "valid.csv")
        super().__init__(root=root, on_bad_image=on_bad_image, **kwargs)

    def _find_csv(self, base: Path, name: str) -> Path:
        found = [p for p in find_files(base, (name,)) if _first_line(p).startswith("Path,")]
        if not found:
            raise FileNotFoundError(
                f"no CheXpert {name} (with a Path column) under {base}; set data.init_args.root to the folder that "
                f"contains {self.expected_contents}"
            )
        return min(found, key=lambda p: len(p.parts))

    def index_files(self) -> SampleTable:
        parts = [self._read(self.train_csv, "train"), self._read(self.valid_csv, "test")]
        targets = np.concatenate([p[0] for p in parts])
        return SampleTable(
            targets=targets,
            paths=[x for p in parts for x in p[1]],
            groups=np.asarray([x for p in parts for x in p[2]]),
            splits=np.asarray([x for p in parts for x in p[3]]),
        )

    def _read(self, csv_path: Path, split: str) -> tuple[np.ndarray, list[str], list[str], list[str]]:
        required = ["Path", *self.class_names] + (["Frontal/Lateral"] if self.frontal_only else [])
        table = read_csv(csv_path, required)
        resolve = self._resolver(table)
        uncertain = _POLICIES[self.uncertainty]
        rows = []
        n_lateral = 0
        for i, row in enumerate(table.rows):
            if self.frontal_only and row["Frontal/Lateral"].lower() != "frontal":
                n_lateral += 1
                continue
            labels = []
            for name in self.class_names:
                value = row[name]
                if value in _UNCERTAIN:
                    labels.append(uncertain)
                elif value in _VALUES:
                    labels.append(_VALUES[value])
                else:
                    raise DataFormatError(
                        f"{table.where(i)} ({row['Path']}): unknown {name!r} label {value!r}; expected 1.0, 0.0, "
                        "-1.0 or blank"
                    )
            path = resolve(row["Path"])
            check_inside(self.root, path, f"{table.where(i)}, Path {row['Path']!r}")
            rows.append((labels, path, _patient(row["Path"]), split))
        if n_lateral:
            self.note(f"frontal_only: dropped {n_lateral} lateral views of {csv_path.name}")
        targets = np.asarray([r[0] for r in rows], dtype=np.float32).reshape(len(rows), len(self.class_names))
        return targets, [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows]

    def _resolver(self, table: CsvTable):  # noqa: ANN202 (a small closure)
        """Map a ``Path`` value to a file: try the layouts on the first row, then use the one that exists."""
        here = table.path.parent

        def options(value: str) -> list[Path]:
            parts = Path(value).parts
            stripped = Path(*parts[1:]) if parts and parts[0].lower().startswith("chexpert-v1.0") else Path(value)
            return [here / stripped, here.parent / value, here / value]

        chosen = 0
        for row in table.rows[:20]:
            hits = [k for k, p in enumerate(options(row["Path"])) if p.is_file()]
            if hits:
                chosen = hits[0]
                break
        return lambda value: str(options(value)[chosen])


def _patient(value: str) -> str:
    for part in Path(value).parts:
        if _PATIENT.match(part):
            return part
    return ""  # unknown: the image is its own group


def _first_line(path: Path) -> str:
    with open(path, encoding="utf-8-sig") as fh:
        return fh.readline()
