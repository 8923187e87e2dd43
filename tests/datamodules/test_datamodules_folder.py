"""ImageFolderDataModule / MelanomaFolderDataModule on fixture trees, and the shared file helpers."""

from __future__ import annotations

import shutil
import warnings

import _dataset_trees as trees
import numpy as np
import pytest
from PIL import Image

from lit_xai.datamodules import ImageFolderDataModule, MelanomaFolderDataModule
from lit_xai.datamodules._io import DataFormatError, decode_image, read_csv

COMMON = {"image_size": 16, "batch_size": 4}


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yield


def test_flat_folder_every_extension_sorted_classes_and_stratified_split(tmp_path):
    root = trees.image_folder(tmp_path)
    dm = ImageFolderDataModule(str(root), val_fraction=0.2, test_fraction=0.2, **COMMON)
    assert dm.class_names == ("cat", "dog", "owl") and dm.task == "multiclass"
    assert len(dm.table) == 15  # .jpg .png .bmp .jpeg .tif
    for i, p in enumerate(dm.table.paths):
        assert f"/{dm.class_names[dm.table.targets[i]]}/" in p
    for split in ("train", "val", "test"):
        assert np.bincount(dm.targets(split), minlength=3).min() >= 1
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 3, 16, 16)


def test_two_classes_are_binary_and_class_names_fix_the_order(tmp_path):
    root = trees.image_folder(tmp_path, classes=("normal", "abnormal"))
    dm = ImageFolderDataModule(str(root), **COMMON)
    assert dm.task == "binary" and dm.class_names == ("abnormal", "normal")
    fixed = ImageFolderDataModule(str(root), class_names=["normal", "abnormal"], **COMMON)
    assert fixed.class_names == ("normal", "abnormal")
    assert all(("/normal/" in p) == (t == 0) for p, t in zip(fixed.table.paths, fixed.table.targets))
    with pytest.raises(DataFormatError, match=r"class folders \['abnormal'\] that are not in class_names"):
        ImageFolderDataModule(str(root), class_names=["normal", "other"])


def test_split_folders_are_predefined(tmp_path):
    root = tmp_path / "data"
    for split, n in (("train", 4), ("val", 2), ("test", 2)):
        for c in ("a", "b"):
            for i in range(n):
                trees.write_jpeg(root / split / c / f"{i}.jpg", seed=i)
    dm = ImageFolderDataModule(str(root), **COMMON)
    assert [len(dm.split_rows(s)) for s in ("train", "val", "test")] == [8, 4, 4]
    assert all("/val/" in dm.table.paths[i] for i in dm.split_rows("val"))


@pytest.mark.parametrize("nested", [True, False])
def test_melanoma_folders_nested_or_not(tmp_path, nested):
    root = trees.melanoma_folder(tmp_path, nested=nested)
    dm = MelanomaFolderDataModule(str(root), val_fraction=0.25, **COMMON)
    assert dm.class_names == ("benign", "malignant") and dm.task == "binary"
    assert len(dm.split_rows("test")) == 4 and all("/test/" in dm.table.paths[i] for i in dm.split_rows("test"))
    assert sorted(dm.targets("val")) == [0, 1] and all("/train/" in dm.table.paths[i] for i in dm.split_rows("val"))
    for p, t in zip(dm.table.paths, dm.table.targets):
        assert ("/malignant/" in p) == bool(t)  # the label comes from the folder, not the melanoma_ file name
    assert dm.pos_weight() == pytest.approx(1.0)


def test_melanoma_folder_without_train_is_an_error(tmp_path):
    root = trees.image_folder(tmp_path, classes=("benign", "malignant"))
    with pytest.raises(DataFormatError, match="has no train/ folder"):
        MelanomaFolderDataModule(str(root))


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="set data.init_args.root to the folder that contains one folder per"):
        ImageFolderDataModule(str(tmp_path / "nope"))
    (tmp_path / "only").mkdir()
    with pytest.raises(DataFormatError, match="at least two class folders"):
        ImageFolderDataModule(str(tmp_path / "only"))


def test_corrupt_file_in_a_folder_is_skipped_when_asked(tmp_path):
    root = trees.image_folder(tmp_path)
    (root / "dog" / "dog_0.jpg").write_bytes(b"\xff\xd8\xff garbage")
    dm = ImageFolderDataModule(str(root), on_bad_image="skip", **COMMON)
    assert len(dm.table) == 14 and dm.skipped[0][0].endswith("dog/dog_0.jpg")
    assert "cannot read" in dm.skipped[0][1] or "Error" in dm.skipped[0][1]


# ----------------------------------------------------------------------------------------------------- decoding
def test_large_jpeg_is_decoded_at_reduced_scale_and_matches_a_full_decode(tmp_path):
    yy, xx = np.mgrid[0:2000, 0:3000]
    pixels = np.stack([xx * 255 // 3000, yy * 255 // 2000, np.full_like(xx, 128)], -1).astype(np.uint8)
    path = tmp_path / "big.jpg"
    Image.fromarray(pixels).save(path, quality=90)
    small = decode_image(path, size_hint=64)
    assert min(small.shape[:2]) >= 128 and min(small.shape[:2]) <= 256  # >= 2x target, <= 4x target
    assert small.shape[1] / small.shape[0] == pytest.approx(1.5, rel=0.02)
    full = np.asarray(Image.open(path).convert("RGB").resize(small.shape[1::-1], Image.Resampling.BOX))
    assert np.abs(small.astype(int) - full.astype(int)).mean() < 3  # same picture, just cheaper


def test_black_bars_and_borders_are_kept_not_cropped(tmp_path):
    img = np.full((30, 40, 3), 200, np.uint8)
    img[:, :5] = 0  # black bar
    img[0, :] = 255  # 1-px border
    Image.fromarray(img).save(tmp_path / "bar.png")
    out = decode_image(tmp_path / "bar.png", size_hint=16)
    np.testing.assert_array_equal(out, img)  # decoding never crops; the augmentation sees the real picture


def test_read_csv_aliases_and_trailing_comma(tmp_path):
    path = tmp_path / "meta.csv"
    path.write_text("image,gender,age,\nISIC_1,female,45,\n\nISIC_2,,,\n")
    table = read_csv(path, ("image", "sex"), aliases={"sex": ("gender",)})
    assert table.columns == ["image", "sex", "age"]
    assert table.column("sex") == ["female", ""] and table.lines == [2, 4]
    shutil.copy(path, tmp_path / "x.csv")
    with pytest.raises(DataFormatError, match="x.csv has no column 'lesion_id'"):
        read_csv(tmp_path / "x.csv", ("image", "lesion_id"))
