"""Base DataModule for image classification: splits, loaders, transforms and the per-item dict contract.

A dataset subclass declares ``class_names`` and ``task`` and implements :meth:`ImageDataModule.index_samples`
(a cheap table of targets, file paths and optional group ids / predefined splits / artifact flags). The base owns
everything else: stratified, group-aware splits, albumentations transforms, loaders, normalization and probe
selection. Items follow ``docs/CONTRACTS.md``::

    {"image": float (3, H, W) normalized, "target": long scalar | float (K,), "index": int,
     "artifact": bool (if known), "artifact_mask": bool (H, W) (if known),
     "roi_mask": bool (H, W) (region of interest, e.g. the lungs, for datasets with segmentation masks)}

Example:
    >>> import numpy as np
    >>> class Toy(ImageDataModule):
    ...     class_names = ("cat", "dog")
    ...     task = "binary"
    ...     def index_samples(self):
    ...         return SampleTable(targets=np.arange(20) % 2)
    ...     def make_reader(self, split, rows):
    ...         return ArrayImageReader(np.zeros((len(rows), 8, 8, 3), np.uint8))
    >>> dm = Toy(batch_size=4, image_size=8, val_fraction=0.2, test_fraction=0.2)
    >>> dm.num_classes, len(dm.dataset("train")), sorted(dm.dataset("val")[0])
    (2, 12, ['image', 'index', 'target'])
"""

from __future__ import annotations

import inspect
from typing import ClassVar

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, default_collate

from ..contracts import TASKS
from .dataset import ImageDataset, _seed_worker
from .readers import ArrayImageReader, FileImageReader, ImageReader
from .splits import SPLITS, SampleTable, _check_fractions, split_indices
from .transforms import IMAGENET_MEAN, IMAGENET_STD, ImageTransform, denormalize, normalize

__all__ = [
    "SPLITS",
    "TASKS",
    "ArrayImageReader",
    "FileImageReader",
    "ImageDataModule",
    "ImageDataset",
    "ImageReader",
    "SampleTable",
    "split_indices",
]


class ImageDataModule(L.LightningDataModule):
    """Base class of the image classification DataModules.

    Subclasses set ``class_names`` and ``task`` and implement :meth:`index_samples`; override
    :meth:`make_reader` for anything other than image files, and :meth:`build_dataset` for a custom dataset class.

    Args:
        batch_size: samples per batch.
        num_workers: data loader worker processes (0 = load in the main process).
        image_size: images are resized to ``image_size x image_size``.
        val_fraction, test_fraction: split fractions (ignored for splits the dataset predefines).
        seed: seed of the split, of the training shuffle and of the augmentation.
        augment: augment training images.
        augment_strength: scale of the augmentation ranges (0 = none, 1 = default).
        mean, std: normalization statistics (ImageNet by default).
        pin_memory: pin loader memory (useful on GPU).

    Example:
        >>> import numpy as np
        >>> class Toy(ImageDataModule):
        ...     class_names = ("a", "b", "c")
        ...     task = "multiclass"
        ...     def index_samples(self):
        ...         return SampleTable(targets=np.arange(30) % 3, groups=np.arange(30) // 2)
        ...     def make_reader(self, split, rows):
        ...         return ArrayImageReader(np.full((len(rows), 12, 12, 3), 128, np.uint8))
        >>> dm = Toy(batch_size=5, image_size=8)
        >>> batch = next(iter(dm.train_dataloader()))
        >>> tuple(batch["image"].shape), batch["target"].dtype, dm.num_classes
        ((5, 3, 8, 8), torch.int64, 3)
    """

    class_names: ClassVar[tuple[str, ...]] = ()
    task: ClassVar[str] = "multiclass"
    #: Orientation carries no meaning (dermoscopy): enables vertical flips and 90-degree rotations.
    orientation_invariant: ClassVar[bool] = False

    def __init__(
        self,
        batch_size: int = 32,
        num_workers: int = 0,
        image_size: int = 224,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        seed: int = 0,
        augment: bool = True,
        augment_strength: float = 1.0,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
        pin_memory: bool = False,
    ) -> None:
        super().__init__()
        self._validate_class_declaration()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        if image_size < 8:
            raise ValueError(f"image_size must be >= 8 pixels, got {image_size}")
        _check_fractions(val_fraction, test_fraction)
        if augment_strength < 0:
            raise ValueError(f"augment_strength must be >= 0, got {augment_strength}")
        if len(mean) != 3 or len(std) != 3 or any(s <= 0 for s in std):
            raise ValueError(f"mean and std need 3 values each and std > 0, got mean={mean}, std={std}")
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.image_size = image_size
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.seed = seed
        self.augment = augment
        self.augment_strength = augment_strength
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.pin_memory = pin_memory
        self._save_init_arguments()
        self._table: SampleTable | None = None
        self._rows: dict[str, np.ndarray] | None = None
        self._datasets: dict[str, ImageDataset] = {}
        self._generators: dict[str, torch.Generator] = {}

    # ----------------------------------------------------------------------------------- declared by subclasses
    def index_samples(self) -> SampleTable:
        """Return the table of all samples (targets, paths, groups, ...). Must not load images."""
        raise NotImplementedError(f"{type(self).__name__} must implement index_samples() -> SampleTable")

    def make_reader(self, split: str, rows: np.ndarray) -> ImageReader:
        """Reader for the samples ``rows`` (indices into the sample table) of ``split``; default: image files."""
        table = self.table
        if table.paths is None:
            raise NotImplementedError(
                f"{type(self).__name__}.index_samples() returned no paths; override make_reader() to load images"
            )
        roi = None if table.roi_paths is None else [table.roi_paths[i] for i in rows]
        return FileImageReader([table.paths[i] for i in rows], roi, size_hint=self.image_size)

    def build_dataset(self, split: str, rows: np.ndarray) -> ImageDataset:
        """The dataset of ``split``; override to return an :class:`ImageDataset` subclass."""
        table = self.table
        return ImageDataset(
            reader=self.make_reader(split, rows),
            targets=table.targets[rows],
            transform=self.transform(train=split == "train"),
            artifacts=None if table.artifacts is None else np.asarray(table.artifacts)[rows],
        )

    # ------------------------------------------------------------------------------------------------- contract
    @property
    def num_classes(self) -> int:
        """Number of model outputs: 2 for binary (two logits, class 1 positive), else ``len(class_names)``."""
        return 2 if self.task == "binary" else len(self.class_names)

    def normalize(self, images01: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1], ``(3, H, W)`` or ``(N, 3, H, W)`` -> model input."""
        return normalize(images01, self.mean, self.std)

    def denormalize(self, images: torch.Tensor) -> torch.Tensor:
        """Model input -> images in [0, 1] (for display)."""
        return denormalize(images, self.mean, self.std)

    def transform(self, train: bool) -> ImageTransform:
        """The training (augmenting) or evaluation (resize only) transform of this datamodule."""
        return ImageTransform(
            self.image_size,
            train=train,
            augment=self.augment,
            strength=self.augment_strength,
            vertical_flip=self.orientation_invariant,
            mean=self.mean,
            std=self.std,
            seed=self.seed,
        )

    def class_weights(self, split: str = "train") -> list[float]:
        """Balanced per-class loss weights ``n / (K * n_c)`` from ``split`` (for ``ImageClassifier(class_weights=)``).

        Binary tasks get two weights (negative, positive); multilabel tasks get the weight of each label's
        positives relative to the mean label, which is rarely what you want (use :meth:`pos_weight`). Only targets
        are read, no image.

        Example:
            >>> import numpy as np
            >>> class Toy(ImageDataModule):
            ...     class_names, task = ("a", "b"), "binary"
            ...     def index_samples(self):
            ...         return SampleTable(targets=np.array([0, 0, 0, 1] * 10))
            >>> Toy(val_fraction=0, test_fraction=0).class_weights()
            [0.6666666666666666, 2.0]
        """
        targets = self.targets(split)
        k = len(self.class_names)
        if targets.ndim == 2:
            counts = (np.nan_to_num(targets.astype(np.float64), nan=0.0) > 0.5).sum(0).astype(np.float64)
        else:
            counts = np.bincount(targets.astype(np.int64), minlength=k).astype(np.float64)
        self._check_counts(counts, split)
        return [float(c) for c in counts.sum() / (k * counts)]

    def pos_weight(self, split: str = "train") -> float | list[float]:
        """``negatives / positives`` from ``split``: one float for binary, one per label for multilabel.

        Unknown multilabel targets (NaN, e.g. CheXpert's U-Ignore) count neither way. Use as
        ``ImageClassifier(pos_weight=dm.pos_weight())``.

        Example:
            >>> import numpy as np
            >>> class Toy(ImageDataModule):
            ...     class_names, task = ("a", "b"), "binary"
            ...     def index_samples(self):
            ...         return SampleTable(targets=np.array([0, 0, 0, 1] * 10))
            >>> Toy(val_fraction=0, test_fraction=0).pos_weight()
            3.0
        """
        targets = self.targets(split)
        if self.task == "binary":
            pos = np.array([float((targets == 1).sum())])
            neg = np.array([float((targets == 0).sum())])
        elif self.task == "multilabel":
            t = targets.astype(np.float64)
            pos, neg = (t > 0.5).sum(0).astype(np.float64), (t <= 0.5).sum(0).astype(np.float64)
        else:
            raise ValueError("pos_weight applies to binary and multilabel tasks; use class_weights() for multiclass")
        self._check_counts(pos, split)
        weights = [float(w) for w in neg / pos]
        return weights[0] if self.task == "binary" else weights

    def _check_counts(self, counts: np.ndarray, split: str) -> None:
        empty = [self.class_names[i] if i < len(self.class_names) else str(i) for i in np.flatnonzero(counts == 0)]
        if empty:
            raise ValueError(
                f"{type(self).__name__}: the {split} split has no positive samples of {empty}; loss weights would "
                "be infinite (drop the class or set the weights yourself)"
            )

    # --------------------------------------------------------------------------------------------------- splits
    @property
    def table(self) -> SampleTable:
        """The sample table (indexed on first use)."""
        if self._table is None:
            table = self.index_samples()
            self._check_table(table)
            self._table = table
        return self._table

    def split_rows(self, split: str) -> np.ndarray:
        """Indices into :attr:`table` of the samples of ``split``."""
        self._check_split(split)
        if self._rows is None:
            self._rows = self._compute_splits(self.table)
        return self._rows[split]

    def targets(self, split: str) -> np.ndarray:
        """Targets of ``split`` without loading any image (e.g. for stratified probe selection)."""
        return np.asarray(self.table.targets)[self.split_rows(split)]

    def dataset(self, split: str) -> ImageDataset:
        """The dataset of ``split`` ("train", "val" or "test"), built on first use."""
        self._check_split(split)
        if split not in self._datasets:
            self._datasets[split] = self.build_dataset(split, self.split_rows(split))
        return self._datasets[split]

    def probe_indices(self, split: str = "val", per_class: int = 2, seed: int | None = None) -> list[int]:
        """A fixed, class-stratified choice of ``per_class`` sample positions per class in ``split``.

        For multilabel tasks a class's probes are drawn among samples positive for it (without repeats).

        Example:
            >>> import numpy as np
            >>> class Toy(ImageDataModule):
            ...     class_names, task = ("a", "b"), "binary"
            ...     def index_samples(self):
            ...         return SampleTable(targets=np.arange(40) % 2)
            >>> len(Toy().probe_indices("val", per_class=2))
            4
        """
        if per_class < 1:
            raise ValueError(f"per_class must be >= 1, got {per_class}")
        targets = self.targets(split)
        rng = np.random.default_rng(self.seed if seed is None else seed)
        chosen: list[int] = []
        for label in range(len(self.class_names)):
            if targets.ndim == 2:
                candidates = np.flatnonzero(np.nan_to_num(targets[:, label]) > 0.5)
                candidates = np.setdiff1d(candidates, chosen)
            else:
                candidates = np.flatnonzero(targets == label)
            take = min(per_class, len(candidates))
            chosen += sorted(int(i) for i in rng.choice(candidates, size=take, replace=False))
        return chosen

    # -------------------------------------------------------------------------------------------------- lightning
    def setup(self, stage: str | None = None) -> None:
        needed = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        splits = needed.get(stage or "", SPLITS)
        for split in splits:
            self.dataset(split)
        for split in splits:
            self.check_classes(split)

    def check_classes(self, split: str) -> None:
        """Raise if ``split`` lacks a class (binary / multi-class tasks), saying which and what to change.

        A split without a class cannot train it, and its metrics (AUROC, per-class F1) are undefined, so
        :meth:`setup` refuses it before training instead of letting it fail later far from the cause.

        Example:
            >>> import numpy as np
            >>> class Toy(ImageDataModule):
            ...     class_names, task = ("a", "b", "rare"), "multiclass"
            ...     def index_samples(self):
            ...         return SampleTable(targets=np.array([0, 1] * 10 + [2]))
            >>> Toy(val_fraction=0.2, test_fraction=0.2).check_classes("val")
            Traceback (most recent call last):
            ...
            ValueError: Toy: the 'val' split has no sample of class 'rare' (... rare 1/0/0); add samples of ...
        """
        if self.task == "multilabel" or len(self.targets(split)) == 0:
            return  # a label without positives in a split is common for rare findings; empty splits fail elsewhere
        k = len(self.class_names)
        counts = {s: np.bincount(self.targets(s).astype(np.int64), minlength=k) for s in SPLITS}
        missing = [self.class_names[c] for c in np.flatnonzero(counts[split] == 0)]
        if not missing:
            return
        per_class = ", ".join(
            f"{name} {'/'.join(str(int(counts[s][c])) for s in SPLITS)}" for c, name in enumerate(self.class_names)
        )
        which = f"class {missing[0]!r}" if len(missing) == 1 else f"classes {missing}"
        predefined = self.table.splits is not None and split in set(np.asarray(self.table.splits).astype(str))
        remedy = (
            f"add samples of that class to the dataset's {split} split"
            if predefined
            else "add samples of that class, or change val_fraction, test_fraction or seed (data.init_args.*) so "
            "that every class reaches every split"
        )
        raise ValueError(
            f"{type(self).__name__}: the {split!r} split has no sample of {which} (samples per class in "
            f"train/val/test: {per_class}); {remedy}"
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        # A seeded generator drives both the shuffle order and the worker base seeds, so a run is reproducible
        # for a fixed num_workers without touching the global RNG. It is kept, so re-created loaders
        # (reload_dataloaders_every_n_epochs) continue the stream instead of repeating the first epoch's order.
        generator = self._generators.setdefault(split, torch.Generator().manual_seed(self.seed))
        return DataLoader(
            self.dataset(split),
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            collate_fn=default_collate,
            pin_memory=self.pin_memory,
            generator=generator,
            worker_init_fn=_seed_worker,
            persistent_workers=False,
        )

    # ------------------------------------------------------------------------------------------------- internals
    def _validate_class_declaration(self) -> None:
        name = type(self).__name__
        if self.task not in TASKS:
            raise ValueError(f"{name}.task must be one of {TASKS}, got {self.task!r}")
        if not self.class_names:
            raise ValueError(f"{name} must declare class_names (a tuple of class names)")
        if self.task == "binary" and len(self.class_names) != 2:
            raise ValueError(
                f"{name} is binary, so class_names must be (negative, positive); got {tuple(self.class_names)}"
            )

    def _save_init_arguments(self) -> None:
        # Stored in checkpoints (``datamodule_hyper_parameters``) so a run can be traced back to its data. Only the
        # arguments of the concrete class's own signature: a subclass that fixes a base argument (the synthetic data
        # fixes the split fractions) must be re-creatable as ``cls(**hparams)``.
        params = inspect.signature(type(self).__init__).parameters.values()
        if any(p.kind is p.VAR_KEYWORD for p in params):
            self.save_hyperparameters(frame=inspect.currentframe().f_back)
            self._record_resolved_classes()
            return
        names = [p.name for p in params if p.name != "self" and p.kind is not p.VAR_POSITIONAL]
        self.save_hyperparameters(*names, frame=inspect.currentframe().f_back)
        self._record_resolved_classes()

    def _record_resolved_classes(self) -> None:
        # A datamodule that infers its classes (class_names=None, task=None: read the folders) records what it
        # inferred, so its hyper-parameters agree with the model's linked ones (Lightning refuses to log two
        # different values of one key) and recreate the same classes.
        resolved = {"class_names": [str(c) for c in self.class_names], "task": self.task}
        for key, value in resolved.items():
            if key in self._hparams:
                self._hparams[key] = value
                self._hparams_initial[key] = list(value) if isinstance(value, list) else value

    def _check_split(self, split: str) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")

    def _check_table(self, table: SampleTable) -> None:
        targets = np.asarray(table.targets)
        name = type(self).__name__
        if self.task == "multilabel":
            if targets.ndim != 2 or targets.shape[1] != len(self.class_names):
                raise ValueError(
                    f"{name}: multilabel targets must be (N, {len(self.class_names)}), got {targets.shape}"
                )
        elif targets.ndim != 1 or (len(targets) and (targets.min() < 0 or targets.max() >= self.num_classes)):
            seen = np.unique(targets)[:10].tolist() if targets.ndim == 1 else targets.shape
            raise ValueError(f"{name}: {self.task} targets must be (N,) ints in [0, {self.num_classes}), got {seen}")

    def _compute_splits(self, table: SampleTable) -> dict[str, np.ndarray]:
        if table.splits is None:
            return split_indices(table.targets, self.val_fraction, self.test_fraction, self.seed, table.groups)
        names = np.asarray(table.splits).astype(str)
        rows = {s: np.flatnonzero(names == s) for s in SPLITS}
        missing = [s for s in ("val", "test") if len(rows[s]) == 0]
        fractions = {"val": self.val_fraction, "test": self.test_fraction}
        if missing and any(fractions[s] > 0 for s in missing):
            # Carve absent splits out of the predefined training set, keeping groups together.
            pool = rows["train"]
            parts = split_indices(
                np.asarray(table.targets)[pool],
                fractions["val"] if "val" in missing else 0.0,
                fractions["test"] if "test" in missing else 0.0,
                self.seed,
                None if table.groups is None else np.asarray(table.groups)[pool],
            )
            rows["train"] = pool[parts["train"]]
            for s in missing:
                rows[s] = pool[parts[s]]
        return rows
