"""Base ImageDataModule: splits, item contract, loaders, transforms, normalization and argument validation."""

from __future__ import annotations

import pickle
from typing import ClassVar

import numpy as np
import pytest
import torch
from PIL import Image

from lit_xai.datamodules import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ArrayImageReader,
    ImageDataModule,
    ImageTransform,
    SampleTable,
    denormalize,
    normalize,
    split_indices,
)

# ------------------------------------------------------------------------------------------------------ fixtures


class FileToy(ImageDataModule):
    """A binary dataset of PNG files with patient ids, as a real loader would index it."""

    class_names: ClassVar[tuple[str, ...]] = ("benign", "melanoma")
    task: ClassVar[str] = "binary"

    def __init__(self, root: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.root = root

    def index_samples(self) -> SampleTable:
        paths = sorted(str(p) for p in __import__("pathlib").Path(self.root).glob("*.png"))
        targets = np.array([int(p.rsplit("_", 1)[1][0]) for p in paths])
        groups = np.array([p.rsplit("/", 1)[1].split("x")[0] for p in paths])
        return SampleTable(targets=targets, paths=paths, groups=groups)


@pytest.fixture(scope="module")
def image_tree(tmp_path_factory) -> str:
    """30 non-square RGB PNGs named p<patient>x<image>_<label>.png; 10 patients with 3 images each."""
    root = tmp_path_factory.mktemp("toy")
    yy, xx = np.mgrid[0:20, 0:28]
    for i in range(30):
        patient, label = i // 3, int((i // 3) % 3 == 0)
        # Smooth gradients, so any reasonable resampling gives nearly the same small image.
        pixels = np.stack([xx * 9, yy * 12, np.full_like(xx, 7 * i)], axis=-1).astype(np.uint8)
        Image.fromarray(pixels).save(root / f"p{patient:02d}x{i}_{label}.png")
    return str(root)


class ArrayToy(ImageDataModule):
    """Multiclass in-memory dataset with artifact masks; images are constant per sample (value = 8 * index)."""

    class_names: ClassVar[tuple[str, ...]] = ("a", "b", "c")
    task: ClassVar[str] = "multiclass"

    def index_samples(self) -> SampleTable:
        n = 24
        return SampleTable(targets=np.arange(n) % 3, artifacts=np.arange(n) % 2 == 0)

    def make_reader(self, split: str, rows: np.ndarray) -> ArrayImageReader:
        images = np.repeat((rows * 8 % 256).astype(np.uint8)[:, None, None, None], 16 * 16 * 3, axis=1)
        masks = np.zeros((len(rows), 16, 16), bool)
        masks[:, :4, :4] = True
        return ArrayImageReader(images.reshape(len(rows), 16, 16, 3), masks)


class NoImages(ImageDataModule):
    """Loading pixels is an error: targets() and splits must work without it."""

    class_names: ClassVar[tuple[str, ...]] = ("x", "y")
    task: ClassVar[str] = "binary"

    def index_samples(self) -> SampleTable:
        return SampleTable(targets=np.arange(50) % 2)

    def make_reader(self, split: str, rows: np.ndarray):
        raise AssertionError("images must not be loaded")


# -------------------------------------------------------------------------------------------------------- splits


def test_split_partitions_and_is_stratified():
    targets = np.array([0] * 300 + [1] * 100)
    parts = split_indices(targets, 0.2, 0.1, seed=0)
    joined = np.concatenate([parts["train"], parts["val"], parts["test"]])
    assert np.array_equal(np.sort(joined), np.arange(len(targets))), "splits must partition the samples"
    assert len(parts["val"]) == 80 and len(parts["test"]) == 40
    for split in ("train", "val", "test"):
        assert targets[parts[split]].mean() == pytest.approx(0.25, abs=0.02), f"{split} not stratified"


def test_split_is_seeded():
    targets = np.arange(200) % 4
    a, b = split_indices(targets, 0.2, 0.2, seed=3), split_indices(targets, 0.2, 0.2, seed=3)
    c = split_indices(targets, 0.2, 0.2, seed=4)
    assert all(np.array_equal(a[s], b[s]) for s in a)
    assert not np.array_equal(a["test"], c["test"])


def test_grouped_split_keeps_groups_together():
    rng = np.random.default_rng(1)
    sizes = rng.integers(1, 6, 150)  # patients with 1-5 images
    groups = np.repeat([f"patient{i}" for i in range(len(sizes))], sizes)
    # A patient is positive (all images) with probability 0.2.
    positive = rng.random(len(sizes)) < 0.2
    targets = np.repeat(positive.astype(int), sizes)
    parts = split_indices(targets, 0.2, 0.2, seed=0, groups=groups)
    owners = {s: set(groups[parts[s]]) for s in parts}
    assert (
        not owners["train"] & owners["val"]
        and not owners["train"] & owners["test"]
        and not owners["val"] & owners["test"]
    )
    assert sum(len(p) for p in parts.values()) == len(targets)
    for split, fraction in (("val", 0.2), ("test", 0.2)):
        assert len(parts[split]) / len(targets) == pytest.approx(fraction, abs=0.05)
        assert targets[parts[split]].mean() == pytest.approx(targets.mean(), abs=0.07), f"{split} not stratified"


def test_group_stratum_is_its_rarest_member_class():
    # Every patient has 3 negatives and one positive image: if groups were stratified by majority, all would be
    # "negative" and nothing would force positives into val/test; by rarest member they spread evenly anyway.
    groups = np.repeat(np.arange(40), 4)
    targets = np.tile([0, 0, 0, 1], 40)
    parts = split_indices(targets, 0.25, 0.25, seed=0, groups=groups)
    assert [len(set(groups[parts[s]])) for s in ("train", "val", "test")] == [20, 10, 10]


def test_missing_group_ids_are_singletons():
    groups = np.array(["a", "a", "a", "a", None, None, "", "", float("nan"), float("nan")] * 4, dtype=object)
    targets = np.zeros(len(groups), int)
    parts = split_indices(targets, 0.3, 0.3, seed=0, groups=groups)
    a_rows = np.flatnonzero(groups == "a")
    homes = [s for s in parts if np.isin(a_rows, parts[s]).any()]
    assert len(homes) == 1, "the shared id 'a' must stay in one split"
    # 24 unknown-id samples would all land in one split if they were treated as one group.
    unknown = np.setdiff1d(np.arange(len(groups)), a_rows)
    assert sum(np.isin(unknown, parts[s]).any() for s in parts) == 3


def test_multilabel_split_spreads_rare_label():
    targets = np.zeros((300, 3), np.float32)
    targets[:, 0] = 1.0
    targets[::10, 2] = 1.0  # rare label, co-occurring with the common one
    parts = split_indices(targets, 0.2, 0.2, seed=0)
    for split in ("val", "test"):
        assert targets[parts[split], 2].sum() == pytest.approx(6, abs=1)


@pytest.mark.parametrize(
    ("val", "test", "message"), [(0.5, 0.5, "< 1"), (-0.1, 0.2, "val_fraction"), (0.1, 1.0, "test_fraction")]
)
def test_split_rejects_bad_fractions(val, test, message):
    with pytest.raises(ValueError, match=message):
        split_indices(np.zeros(10, int), val, test)


def test_split_rejects_group_length_mismatch():
    with pytest.raises(ValueError, match="groups has 3"):
        split_indices(np.zeros(10, int), 0.1, 0.1, groups=["a", "b", "c"])


# ------------------------------------------------------------------------------------------- datamodule contract


def test_file_datamodule_items_follow_contract(image_tree):
    dm = FileToy(image_tree, image_size=16, batch_size=4, val_fraction=0.2, test_fraction=0.2)
    item = dm.dataset("val")[1]
    assert set(item) == {"image", "target", "index"}  # nothing is known about artifacts here
    assert item["image"].shape == (3, 16, 16) and item["image"].dtype == torch.float32
    assert item["target"].dtype == torch.long and item["target"].ndim == 0
    assert item["index"] == 1
    assert int(item["target"]) == dm.targets("val")[1]
    # Eval images are only resized: denormalizing recovers the resized pixels.
    raw = np.asarray(Image.open(dm.dataset("val").reader.paths[1]).convert("RGB").resize((16, 16), Image.BOX))
    recovered = dm.denormalize(item["image"]).permute(1, 2, 0).numpy() * 255
    assert np.abs(recovered - raw).mean() < 3.0


def test_file_datamodule_groups_patients(image_tree):
    dm = FileToy(image_tree, image_size=16, val_fraction=0.2, test_fraction=0.2)
    patients = {}
    for split in ("train", "val", "test"):
        for path in dm.dataset(split).reader.paths:
            patients.setdefault(path.rsplit("/", 1)[1].split("x")[0], set()).add(split)
    assert len(patients) == 10 and all(len(s) == 1 for s in patients.values())


def test_loaders_yield_batched_dicts(image_tree):
    dm = FileToy(image_tree, image_size=16, batch_size=4, val_fraction=0.2, test_fraction=0.2)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 3, 16, 16) and batch["image"].dtype == torch.float32
    assert batch["target"].shape == (4,) and batch["target"].dtype == torch.long
    assert batch["index"].dtype == torch.long
    val_indices = torch.cat([b["index"] for b in dm.val_dataloader()])
    assert val_indices.tolist() == list(range(len(dm.dataset("val")))), "val loader must not shuffle"


def test_train_loader_shuffle_is_seeded(image_tree):
    def order(seed: int) -> list[int]:
        dm = FileToy(image_tree, image_size=16, batch_size=64, seed=seed, augment=False)
        return next(iter(dm.train_dataloader()))["index"].tolist()

    assert order(0) == order(0)
    assert order(0) != order(1)
    assert order(0) != sorted(order(0)), "train loader must shuffle"
    dm = FileToy(image_tree, image_size=16, batch_size=64, augment=False)
    epochs = [next(iter(dm.train_dataloader()))["index"].tolist() for _ in range(2)]
    assert epochs[0] == order(0) and epochs[1] != epochs[0], "a reloaded loader continues the shuffle stream"


def test_array_datamodule_masks_and_flags():
    dm = ArrayToy(image_size=8, batch_size=5, val_fraction=0.25, test_fraction=0.25, augment=False)
    batch = next(iter(dm.train_dataloader()))
    assert batch["artifact"].dtype == torch.bool and batch["artifact"].shape == (5,)
    assert batch["artifact_mask"].shape == (5, 8, 8) and batch["artifact_mask"].dtype == torch.bool
    # The 4x4 corner of a 16 px mask becomes the 2x2 corner at 8 px: the mask is resized with the image.
    expected = torch.zeros(8, 8, dtype=torch.bool)
    expected[:2, :2] = True
    assert all(torch.equal(m, expected) for m in batch["artifact_mask"])
    rows = dm.split_rows("train")
    assert batch["artifact"].tolist() == [bool(r % 2 == 0) for r in rows[batch["index"]]]


def test_targets_need_no_images():
    dm = NoImages(val_fraction=0.2, test_fraction=0.2)
    sizes = [len(dm.targets(s)) for s in ("train", "val", "test")]
    assert sizes == [30, 10, 10]
    assert all(dm.targets(s).mean() == pytest.approx(0.5) for s in ("train", "val", "test"))


def test_predefined_splits_carve_missing_val_from_train():
    class Official(NoImages):
        def index_samples(self) -> SampleTable:
            splits = np.array(["train"] * 80 + ["test"] * 20)
            return SampleTable(targets=np.arange(100) % 2, groups=np.arange(100) // 4, splits=splits)

    dm = Official(val_fraction=0.25, test_fraction=0.1)
    assert np.array_equal(dm.split_rows("test"), np.arange(80, 100)), "a predefined test split is kept as is"
    train, val = dm.split_rows("train"), dm.split_rows("val")
    assert len(val) == 20 and len(train) == 60 and not set(train) & set(val)
    assert not set(train // 4) & set(val // 4), "carving val out of train must keep groups together"


def test_probe_indices_are_stratified_and_fixed():
    dm = NoImages(val_fraction=0.2, test_fraction=0.2)
    probes = dm.probe_indices("val", per_class=3)
    assert probes == dm.probe_indices("val", per_class=3)
    assert sorted(dm.targets("val")[probes].tolist()) == [0, 0, 0, 1, 1, 1]


def test_multilabel_targets_are_float_vectors():
    class Findings(ImageDataModule):
        class_names: ClassVar[tuple[str, ...]] = ("edema", "effusion", "none")
        task: ClassVar[str] = "multilabel"

        def index_samples(self) -> SampleTable:
            return SampleTable(targets=(np.arange(30)[:, None] % np.array([2, 3, 5]) == 0).astype(np.float32))

        def make_reader(self, split: str, rows: np.ndarray) -> ArrayImageReader:
            return ArrayImageReader(np.zeros((len(rows), 8, 8, 3), np.uint8))

    dm = Findings(image_size=8)
    assert dm.num_classes == 3
    item = dm.dataset("train")[0]
    assert item["target"].dtype == torch.float32 and item["target"].shape == (3,)


def test_num_classes_available_right_after_init():
    assert NoImages().num_classes == 2  # binary: two logits
    assert ArrayToy().num_classes == 3


def test_datasets_pickle_for_spawned_workers():
    dm = ArrayToy(image_size=8)
    clone = pickle.loads(pickle.dumps(dm.dataset("train")))
    assert torch.equal(clone[0]["artifact_mask"], dm.dataset("train")[0]["artifact_mask"])


# ----------------------------------------------------------------------------------------------------- transforms


def test_normalize_denormalize_round_trip():
    x = torch.rand(4, 3, 5, 5)
    dm = ArrayToy()
    ulps = 4 * torch.finfo(x.dtype).eps  # subtract, divide, multiply, add: four roundings of values of magnitude <= 1
    assert torch.allclose(dm.denormalize(dm.normalize(x)), x, rtol=0, atol=ulps)
    assert torch.allclose(dm.denormalize(dm.normalize(x[0])), x[0], rtol=0, atol=ulps)
    expected = (x[:, 1] - IMAGENET_MEAN[1]) / IMAGENET_STD[1]
    assert torch.allclose(normalize(x, IMAGENET_MEAN, IMAGENET_STD)[:, 1], expected)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        denormalize(torch.rand(2, 1, 4, 4), IMAGENET_MEAN, IMAGENET_STD)


def test_eval_transform_is_exact_at_native_size():
    image = np.random.default_rng(0).integers(0, 256, (12, 12, 3), dtype=np.uint8)
    tensor, _ = ImageTransform(12, train=False)(image)
    back = denormalize(tensor, IMAGENET_MEAN, IMAGENET_STD).permute(1, 2, 0).numpy() * 255
    assert np.abs(back - image).max() < 1e-3


def test_augmentation_moves_mask_with_image():
    # A bright square in a corner of a black image, with the square as the mask: after any flip/rotation/shift the
    # bright pixels must still be where the mask is.
    image = np.zeros((32, 32, 3), np.uint8)
    image[2:12, 4:14] = 255
    mask = image[..., 0] > 0
    transform = ImageTransform(32, train=True, strength=1.0, vertical_flip=True, mean=(0, 0, 0), std=(1, 1, 1), seed=0)
    moved = 0
    for _ in range(30):
        tensor, out_mask = transform(image, mask)
        bright = tensor.mean(0) > 0.5
        iou = (bright & out_mask).sum() / (bright | out_mask).sum()
        assert iou > 0.8, f"image and mask disagree (IoU {iou:.2f})"
        moved += not torch.equal(out_mask, torch.from_numpy(mask))
    assert moved >= 15, "training augmentation should change the geometry most of the time"


def test_augmentation_is_seeded_and_off_when_disabled():
    image = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    a = [ImageTransform(16, train=True, seed=5)(image)[0] for _ in range(2)]
    assert torch.equal(a[0], a[1])
    plain = ImageTransform(16, train=False)(image)[0]
    assert torch.equal(ImageTransform(16, train=True, augment=False)(image)[0], plain)
    assert torch.equal(ImageTransform(16, train=True, strength=0.0)(image)[0], plain)


# ---------------------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"val_fraction": 0.6, "test_fraction": 0.4}, "< 1"),
        ({"batch_size": 0}, "batch_size"),
        ({"num_workers": -1}, "num_workers"),
        ({"image_size": 4}, "image_size"),
        ({"augment_strength": -1.0}, "augment_strength"),
        ({"std": (0.2, 0.0, 0.2)}, "std"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        NoImages(**kwargs)


def test_bad_class_declarations_raise():
    class UnknownTask(NoImages):
        task: ClassVar[str] = "regression"

    class ThreeBinary(NoImages):
        class_names: ClassVar[tuple[str, ...]] = ("a", "b", "c")

    with pytest.raises(ValueError, match="task must be one of"):
        UnknownTask()
    with pytest.raises(ValueError, match="binary"):
        ThreeBinary()


def test_bad_tables_and_splits_raise():
    class OutOfRange(NoImages):
        def index_samples(self) -> SampleTable:
            return SampleTable(targets=np.array([0, 1, 2]))

    with pytest.raises(ValueError, match=r"ints in \[0, 2\)"):
        OutOfRange().targets("train")
    with pytest.raises(ValueError, match="unknown split"):
        NoImages().dataset("validation")
    with pytest.raises(ValueError, match="paths has 1"):
        SampleTable(targets=np.zeros(2), paths=["a"])
    with pytest.raises(ValueError, match="may only contain"):
        SampleTable(targets=np.zeros(2), splits=np.array(["train", "valid"]))
    with pytest.raises(IndexError):
        ArrayToy(image_size=8).dataset("val")[100]


def test_workers_get_different_augmentation_streams():
    # All images are identical, so batches differ only by augmentation. Every worker holds a copy of the same
    # seeded transform: without per-worker re-seeding, worker 0 and worker 1 would produce identical first batches.
    class Same(ArrayToy):
        def make_reader(self, split: str, rows: np.ndarray) -> ArrayImageReader:
            gradient = np.linspace(0, 255, 16 * 16 * 3).reshape(1, 16, 16, 3).astype(np.uint8)
            return ArrayImageReader(np.repeat(gradient, len(rows), axis=0))

    dm = Same(image_size=16, batch_size=1, num_workers=2, val_fraction=0.1, test_fraction=0.1)
    first, second = [b["image"] for _, b in zip(range(2), dm.train_dataloader())]
    assert not torch.equal(first, second)


def test_hyperparameters_are_recorded(image_tree):
    dm = FileToy(image_tree, image_size=16, batch_size=4)
    assert dm.hparams["root"] == image_tree and dm.hparams["batch_size"] == 4 and dm.hparams["image_size"] == 16
    clone = FileToy(**dm.hparams)  # what load_from_checkpoint does with datamodule_hyper_parameters
    assert np.array_equal(clone.split_rows("test"), dm.split_rows("test"))
