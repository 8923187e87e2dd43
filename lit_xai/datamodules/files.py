"""``FileDataModule``: the base of the DataModules that read a dataset folder as distributed (ISIC, CheXpert, ...).

It adds to :class:`~lit_xai.datamodules.ImageDataModule` what every on-disk dataset needs:

* ``root`` is checked at construction; a missing folder is an error that says which setting to change;
* a listed file outside ``root`` (a ``..`` or an absolute path in a CSV) is an error; the dataset modules check
  each CSV row themselves and name it;
* every listed image is checked before training. With ``on_bad_image="raise"`` (default) a missing file is an
  error when the files are indexed, and :meth:`FileDataModule.setup` checks each image of the splits the stage needs
  (header and end of file, :func:`~lit_xai.datamodules._io.check_image`, thousands per second) and raises naming
  every bad one, before the first training step. With ``on_bad_image="skip"`` every image is decoded once when
  indexed; bad ones are dropped, **counted**, warned about once with the first names, and listed in
  :attr:`FileDataModule.skipped` (the artifact audit reports it too);
* an empty split is an error that names the split and the counts, never an empty loader.

A subclass implements :meth:`FileDataModule.index_files` (read CSVs / folders, return a :class:`SampleTable` with
``paths``) and sets ``class_names``/``task`` (as class or instance attributes, before calling ``super().__init__``).

Example:
    >>> import numpy as np, tempfile, pathlib
    >>> from PIL import Image
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> for i in range(8):
    ...     Image.fromarray(np.full((12, 10, 3), 30 * i, np.uint8)).save(root / f"{i % 2}_{i}.png")
    >>> class Parity(FileDataModule):
    ...     class_names, task = ("even", "odd"), "binary"
    ...     def index_files(self):
    ...         paths = sorted(str(p) for p in self.root.glob("*.png"))
    ...         return SampleTable(targets=np.array([int(p.split("/")[-1][0]) for p in paths]), paths=paths)
    >>> dm = Parity(str(root), image_size=8, val_fraction=0.25, test_fraction=0.25)
    >>> dm.dataset("train")[0]["image"].shape
    torch.Size([3, 8, 8])
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ._io import check_image, decode_image, decode_mask, is_inside, require_root
from .base import ImageDataModule, ImageDataset, SampleTable

__all__ = ["BAD_IMAGE_POLICIES", "FileDataModule", "check_workers"]

BAD_IMAGE_POLICIES: tuple[str, ...] = ("raise", "skip")
_SHOW = 5  # file names quoted in an error or warning


def check_workers() -> int:
    """Threads for checking or decoding files (PIL releases the GIL while reading and decoding)."""
    return max(1, min(8, os.cpu_count() or 1))


class FileDataModule(ImageDataModule):
    """Base of the DataModules reading a dataset folder (see the module docstring).

    Args:
        root: the dataset folder as distributed (unzipped).
        on_bad_image: ``"raise"`` (default): a listed image that is missing is an error naming it, and
            :meth:`setup` checks every image of the stage's splits (header and end of file) and raises naming the
            unreadable ones before training starts; damage inside a JPEG's data that this quick check cannot see
            raises, naming the file, when loaded. ``"skip"``: every image is decoded once when indexed; missing or
            unreadable ones are dropped, counted, warned about and listed in :attr:`skipped`.
        **kwargs: the common options of :class:`~lit_xai.datamodules.ImageDataModule` (``image_size``,
            ``batch_size``, ``num_workers``, ``val_fraction``, ``test_fraction``, ``seed``, ``augment``, ...).

    Attributes:
        skipped: ``(file, reason)`` of every sample dropped under ``on_bad_image="skip"``.
        notes: what indexing did besides reading (e.g. "dropped 425 documented duplicates"), also logged.
    """

    #: what ``root`` must contain, for the "folder missing" error ("train.csv and valid.csv", ...)
    expected_contents: ClassVar[str] = "the dataset's files"

    def __init__(self, root: str, on_bad_image: str = "raise", **kwargs: Any) -> None:
        if on_bad_image not in BAD_IMAGE_POLICIES:
            raise ValueError(f"on_bad_image must be one of {BAD_IMAGE_POLICIES}, got {on_bad_image!r}")
        self.root = require_root(root, self.expected_contents)
        self.on_bad_image = on_bad_image
        self._skipped: list[tuple[str, str]] = []
        self._checked: set[str] = set()
        self.notes: list[str] = []
        super().__init__(**kwargs)

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """``(file, reason)`` of every sample dropped under ``on_bad_image="skip"`` (indexes the files if needed)."""
        _ = self.table
        return list(self._skipped)

    # ----------------------------------------------------------------------------------------- for subclasses
    def index_files(self) -> SampleTable:
        """Read the dataset's CSVs / folders into a :class:`SampleTable` with ``paths`` (no image decoding)."""
        raise NotImplementedError(f"{type(self).__name__} must implement index_files() -> SampleTable")

    def note(self, message: str) -> None:
        """Record (and warn about) something indexing did to the data, so nothing changes silently."""
        self.notes.append(message)
        warnings.warn(f"{type(self).__name__}: {message}", stacklevel=3)

    # ---------------------------------------------------------------------------------------------- internals
    def index_samples(self) -> SampleTable:
        table = self.index_files()
        if table.paths is None:
            raise TypeError(f"{type(self).__name__}.index_files() must return a SampleTable with paths")
        if len(table) == 0:
            raise ValueError(f"{type(self).__name__}: found no samples under {self.root}")
        return self._vet(table)

    def _vet(self, table: SampleTable) -> SampleTable:
        """Check every listed file; raise or drop (counted, warned, listed) the bad ones."""
        paths = [str(p) for p in table.paths]
        rois = None if table.roi_paths is None else [str(p) for p in table.roi_paths]
        for kind, listed in (("image", paths), ("mask", rois or [])):
            outside = [(i, p) for i, p in enumerate(listed) if not is_inside(self.root, p)]
            if outside:
                i, p = outside[0]
                raise ValueError(
                    f"{type(self).__name__}: {len(outside)} listed {kind} files lie outside the dataset folder "
                    f"{str(self.root)!r}, e.g. sample {i}: {p!r}; {type(self).__name__}.index_files() must only list "
                    "files under data.init_args.root"
                )
        bad: dict[int, str] = {}
        for i, p in enumerate(paths):
            if not os.path.isfile(p):
                bad[i] = "listed but missing"
            elif rois is not None and not os.path.isfile(rois[i]):
                bad[i] = f"its mask {rois[i]!r} is missing"
        if bad and self.on_bad_image == "raise":
            names = [f"{paths[i]} ({why})" for i, why in list(bad.items())[:_SHOW]]
            raise FileNotFoundError(
                f"{type(self).__name__}: {len(bad)} of {len(paths)} listed images are missing, e.g. "
                f"{'; '.join(names)}. Restore them, or pass on_bad_image='skip' (data.init_args.on_bad_image) to "
                "train without them (they are counted and reported)"
            )
        if self.on_bad_image == "skip":
            bad.update(self._decode_check(paths, rois, exclude=set(bad)))
        if not bad:
            return table
        self._skipped = [(paths[i], bad[i]) for i in sorted(bad)]
        keep = np.setdiff1d(np.arange(len(paths)), np.fromiter(bad, dtype=np.int64))
        if len(keep) == 0:
            raise ValueError(f"{type(self).__name__}: all {len(paths)} listed images are missing or unreadable")
        first = "; ".join(f"{p} ({why})" for p, why in self._skipped[:_SHOW])
        self.note(f"skipped {len(bad)} of {len(paths)} images (on_bad_image='skip'), first: {first}")
        return _subset(table, keep)

    def _decode_check(self, paths: list[str], rois: list[str] | None, exclude: set[int]) -> dict[int, str]:
        def check(i: int) -> str | None:
            try:
                shape = decode_image(paths[i], self.image_size).shape[:2]
                if rois is not None:
                    decode_mask(rois[i], shape)
            except Exception as err:  # any decode failure makes the sample bad; the reason is kept
                return str(err).replace(f"{paths[i]!r}", "").strip() or type(err).__name__
            return None

        todo = [i for i in range(len(paths)) if i not in exclude]
        # decoding releases the GIL, so threads use the cores without pickling anything
        with ThreadPoolExecutor(max_workers=check_workers()) as pool:
            reasons = list(pool.map(check, todo))
        return {i: why for i, why in zip(todo, reasons) if why is not None}

    def build_dataset(self, split: str, rows: np.ndarray) -> ImageDataset:
        if len(rows) == 0:
            counts = {s: len(self.split_rows(s)) for s in ("train", "val", "test")}
            raise ValueError(
                f"{type(self).__name__}: the {split!r} split is empty (samples per split: {counts}, "
                f"{len(self.table)} in all under {self.root}). Check the folder / CSV for that split, or change "
                "val_fraction / test_fraction"
            )
        return super().build_dataset(split, rows)

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        if self.on_bad_image == "raise":
            needed = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
            self.check_images(needed.get(stage or "", ("train", "val", "test")))
        if self._skipped and stage in (None, "fit"):
            # repeated at setup so the count is in the training log, not only at indexing time
            names = ", ".join(Path(p).name for p, _ in self._skipped[:_SHOW])
            warnings.warn(
                f"{type(self).__name__}: {len(self._skipped)} images were skipped (on_bad_image='skip'): {names}"
                + (" ..." if len(self._skipped) > _SHOW else ""),
                stacklevel=2,
            )

    def check_images(self, splits: tuple[str, ...] = ("train", "val", "test")) -> None:
        """Check every image (and mask) of ``splits`` quickly, raising one error that names every unreadable file.

        Called by :meth:`setup` under ``on_bad_image="raise"``, so a truncated file stops the run before the first
        training step instead of hours into it. Each split is checked once per datamodule.
        """
        todo = [s for s in splits if s not in self._checked and len(self.split_rows(s))]
        if not todo:
            return
        table = self.table
        files = [table.paths[i] for s in todo for i in self.split_rows(s)]
        if table.roi_paths is not None:
            files += [table.roi_paths[i] for s in todo for i in self.split_rows(s)]
        with ThreadPoolExecutor(max_workers=check_workers()) as pool:
            reasons = list(pool.map(check_image, files))
        bad = [(str(f), why) for f, why in zip(files, reasons) if why is not None]
        if bad:
            names = "; ".join(f"{f} ({why})" for f, why in bad[:_SHOW]) + (" ..." if len(bad) > _SHOW else "")
            raise OSError(
                f"{type(self).__name__}: {len(bad)} of {len(files)} images of the {'/'.join(todo)} split(s) cannot be "
                f"read: {names}. Replace them (re-download / re-unzip), or pass on_bad_image='skip' "
                "(data.init_args.on_bad_image) to train without them (they are counted and reported)"
            )
        self._checked.update(todo)


def _subset(table: SampleTable, keep: np.ndarray) -> SampleTable:
    def take(value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, np.ndarray):
            return value[keep]
        return [value[i] for i in keep]

    return replace(
        table,
        targets=np.asarray(table.targets)[keep],
        paths=take(table.paths),
        groups=take(table.groups),
        splits=take(table.splits),
        artifacts=take(table.artifacts),
        roi_paths=take(table.roi_paths),
    )
