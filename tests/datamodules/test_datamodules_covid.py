"""COVID-QU-Ex and COVID-19 Radiography on fixture trees: layouts, 3-channel X-rays, lung masks as ``roi_mask``."""

from __future__ import annotations

import warnings

import _dataset_trees as trees
import numpy as np
import pytest
import torch

from lit_xai.datamodules import CovidQUExDataModule, CovidRadiographyDataModule
from lit_xai.datamodules._io import DataFormatError, decode_image, decode_mask

COMMON = {"image_size": 24, "batch_size": 4}


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yield


def test_quex_finds_the_doubled_folder_and_uses_the_predefined_splits(tmp_path):
    root = trees.covid_quex(tmp_path)
    dm = CovidQUExDataModule(str(root), **COMMON)
    assert dm.data_dir.parts[-2:] == ("Lung Segmentation Data", "Lung Segmentation Data")
    assert dm.class_names == ("COVID-19", "Non-COVID", "Normal") and dm.num_classes == 3
    for split, folder, per_class in (("train", "Train", 4), ("val", "Val", 2), ("test", "Test", 2)):
        rows = dm.split_rows(split)
        assert len(rows) == 3 * per_class
        assert all(f"/{folder}/" in dm.table.paths[i] for i in rows)
        assert np.bincount(dm.targets(split)).tolist() == [per_class] * 3
    # names with spaces and parentheses, naturally sorted; every roi file is the image's namesake in 'lung masks'
    assert any(p.endswith("Non-COVID/images/non_COVID (1).png") for p in dm.table.paths)
    for p, m in zip(dm.table.paths, dm.table.roi_paths):
        assert m == p.replace("/images/", "/lung masks/")
    infection = CovidQUExDataModule(str(root), subset="infection", **COMMON)
    assert infection.data_dir.name == "Infection Segmentation Data"


def test_quex_from_inside_the_subset_folder(tmp_path):
    root = trees.covid_quex(tmp_path)
    inner = root / "Lung Segmentation Data" / "Lung Segmentation Data"
    assert CovidQUExDataModule(str(inner), **COMMON).data_dir == inner


def test_xrays_are_three_equal_channels_and_16_bit_keeps_its_contrast(tmp_path):
    root = trees.covid_quex(tmp_path)
    path = root / "Lung Segmentation Data/Lung Segmentation Data/Train/Normal/images/Normal (1).png"
    raw = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(path))
    assert raw.dtype != np.uint8 or raw.max() > 255  # really 16 bit on disk
    image = decode_image(path)
    assert image.shape == (40, 40, 3) and image.dtype == np.uint8
    assert (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all()
    expected, _ = trees.xray(508)  # the builder seeds Train/Normal/1 with 500 + 8
    assert np.abs(image[..., 0].astype(int) - expected.astype(int)).max() <= 1


def test_roi_mask_is_resized_with_the_image_and_covers_the_dark_lungs(tmp_path):
    dm = CovidQUExDataModule(str(trees.covid_quex(tmp_path)), augment=False, **COMMON)
    item = dm.dataset("test")[0]
    assert item["roi_mask"].shape == (24, 24) and item["roi_mask"].dtype == torch.bool
    gray = dm.denormalize(item["image"])[0]
    inside, outside = gray[item["roi_mask"]].mean(), gray[~item["roi_mask"]].mean()
    assert inside < outside - 0.2  # the lung mask lies on the dark lungs
    # and it equals the file's mask resized to the image size (the eval transform only resizes)
    mask = decode_mask(dm.table.roi_paths[dm.split_rows("test")[0]], (40, 40))
    ref = torch.nn.functional.interpolate(torch.from_numpy(mask)[None, None].float(), size=(24, 24), mode="area")
    assert (item["roi_mask"] == (ref[0, 0] > 0.5)).float().mean() > 0.95


def test_roi_mask_is_augmented_in_lockstep(tmp_path):
    dm = CovidQUExDataModule(str(trees.covid_quex(tmp_path)), augment_strength=2.0, **COMMON)
    ds = dm.dataset("train")
    for i in range(len(ds)):
        item = ds[i]
        gray = dm.denormalize(item["image"])[0]
        roi = item["roi_mask"]
        assert roi.any() and (~roi).any()
        # whatever flip/rotation/shift happened, the mask still marks the darker (lung) pixels
        assert gray[roi].mean() < gray[~roi].mean() - 0.1
    batch = next(iter(dm.train_dataloader()))
    assert batch["roi_mask"].shape == (4, 24, 24) and batch["roi_mask"].dtype == torch.bool


def test_roi_can_be_switched_off(tmp_path):
    dm = CovidQUExDataModule(str(trees.covid_quex(tmp_path)), roi=False, **COMMON)
    assert "roi_mask" not in dm.dataset("val")[0]


def test_quex_missing_mask_is_an_error_naming_it_or_skipped(tmp_path):
    root = trees.covid_quex(tmp_path)
    victim = root / "Lung Segmentation Data/Lung Segmentation Data/Val/Normal/lung masks/Normal (2).png"
    victim.unlink()
    with pytest.raises(FileNotFoundError, match=r"its mask .*Normal \(2\)\.png' is missing"):
        _ = CovidQUExDataModule(str(root), **COMMON).table
    dm = CovidQUExDataModule(str(root), on_bad_image="skip", **COMMON)
    assert len(dm.split_rows("val")) == 5 and len(dm.skipped) == 1


def test_quex_missing_root_and_missing_class_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="set data.init_args.root to the folder that contains"):
        CovidQUExDataModule(str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="no 'Lung Segmentation Data' folder"):
        CovidQUExDataModule(str(tmp_path))
    root = trees.covid_quex(tmp_path)
    import shutil

    shutil.rmtree(root / "Lung Segmentation Data/Lung Segmentation Data/Test/Non-COVID")
    with pytest.raises(DataFormatError, match="has no Non-COVID/images/ folder"):
        _ = CovidQUExDataModule(str(root), **COMMON).table


def test_radiography_four_classes_space_in_folder_and_resized_masks(tmp_path):
    root = trees.covid_radiography(tmp_path)
    dm = CovidRadiographyDataModule(str(tmp_path), image_size=40, augment=False, batch_size=4)
    assert dm.data_dir == root
    assert dm.class_names == ("COVID", "Lung_Opacity", "Normal", "Viral Pneumonia")
    assert np.bincount(dm.table.targets).tolist() == [5, 5, 5, 5]
    assert any("/Viral Pneumonia/images/Viral Pneumonia-1.png" in p for p in dm.table.paths)
    _, lungs = trees.xray(600)  # COVID-1 (an RGB file) and its 32 px RGB mask
    mask = decode_mask(dm.table.roi_paths[0], (40, 40))
    assert (mask == lungs).mean() > 0.9  # nearest-upsampled from 32 px, so not exact at the border
    item = dm.dataset("train")[0]
    assert item["roi_mask"].shape == (40, 40)
    assert sum(len(dm.split_rows(s)) for s in ("train", "val", "test")) == 20


def test_radiography_without_masks_needs_roi_false(tmp_path):
    root = trees.covid_radiography(tmp_path)
    import shutil

    for cls in ("COVID", "Normal", "Lung_Opacity", "Viral Pneumonia"):
        shutil.rmtree(root / cls / "masks")
    with pytest.raises(DataFormatError, match="pass roi=false"):
        _ = CovidRadiographyDataModule(str(root), **COMMON).table
    dm = CovidRadiographyDataModule(str(root), roi=False, **COMMON)
    assert "roi_mask" not in dm.dataset("train")[0]


def test_class_weights_balance_the_training_split(tmp_path):
    dm = CovidQUExDataModule(str(trees.covid_quex(tmp_path, per_class={"Train": 6, "Val": 2, "Test": 2})), **COMMON)
    assert dm.class_weights() == pytest.approx([1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="binary and multilabel"):
        dm.pos_weight()
