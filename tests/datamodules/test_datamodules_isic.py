"""ISICDataModule on fixture trees in the ISIC 2019 / ISIC 2020 (official, Kaggle) / HAM10000 layouts."""

from __future__ import annotations

import csv
import shutil
import warnings

import _dataset_trees as trees
import numpy as np
import pytest
import torch

from lit_xai.datamodules import ISICDataModule
from lit_xai.datamodules._io import DataFormatError

COMMON = {"image_size": 16, "batch_size": 4, "val_fraction": 0.2, "test_fraction": 0.2}


def _csv_rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _no_group_crosses_splits(dm: ISICDataModule) -> None:
    groups = np.asarray(dm.table.groups)
    seen: dict[str, str] = {}
    for split in ("train", "val", "test"):
        for g in groups[dm.split_rows(split)]:
            if g:  # blank = own group
                assert seen.setdefault(g, split) == split, f"group {g} in {seen[g]} and {split}"


def _assert_partition(dm: ISICDataModule, n: int) -> None:
    rows = np.concatenate([dm.split_rows(s) for s in ("train", "val", "test")])
    assert sorted(rows.tolist()) == list(range(n))


# -------------------------------------------------------------------------------------------------------- layouts
def test_isic2019_multiclass_labels_match_the_csv(tmp_path):
    root = trees.isic2019(tmp_path)
    dm = ISICDataModule(str(root), labels="dataset", **COMMON)
    assert dm.layout == "isic2019" and dm.task == "multiclass"
    assert dm.class_names == ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC")
    rows = _csv_rows(root / "ISIC_2019_Training_GroundTruth.csv")
    expected = [dm.class_names.index(next(c for c in dm.class_names if r[c] == "1.0")) for r in rows]
    assert dm.table.targets.tolist() == expected
    # every id resolves to its own file, in the doubled folder, including the _downsampled one
    for r, p in zip(rows, dm.table.paths):
        assert p.endswith(f"ISIC_2019_Training_Input/ISIC_2019_Training_Input/{r['image']}.jpg")
    _assert_partition(dm, len(rows))
    _no_group_crosses_splits(dm)


def test_isic2019_groups_by_lesion_and_blank_lesions_are_singletons(tmp_path):
    dm = ISICDataModule(str(trees.isic2019(tmp_path)), **COMMON)
    groups = list(dm.table.groups)
    assert groups[0] == groups[1] == "BCN_0000000"  # two images of one lesion
    assert groups[3] == "" and groups[7] == ""  # blank lesion_id -> each its own group
    assert dm.class_names == ("other", "melanoma") and dm.task == "binary"
    assert dm.table.targets.tolist() == [int(i % 4 == 0) for i in range(24)]
    for seed in range(5):
        _no_group_crosses_splits(ISICDataModule(str(tmp_path / "ISIC_2019"), seed=seed, **COMMON))


def test_isic2019_without_metadata_notes_that_images_are_their_own_groups(tmp_path):
    with pytest.warns(UserWarning, match="without lesion ids"):
        dm = ISICDataModule(str(trees.isic2019(tmp_path, metadata=False)), **COMMON)
        _ = dm.table
    assert set(dm.table.groups) == {""}


def test_isic2020_official_drops_documented_duplicates_and_groups_by_patient(tmp_path):
    root = trees.isic2020(tmp_path)
    dm = ISICDataModule(str(root), **COMMON)
    with pytest.warns(UserWarning, match="dropped 1 documented duplicate"):
        table = dm.table
    assert dm.layout == "isic2020" and dm.label_file.name == "ISIC_2020_Training_GroundTruth_v2.csv"
    rows = _csv_rows(root / "ISIC_2020_Training_GroundTruth_v2.csv")
    kept = [r for r in rows if r["image_name"] != rows[1]["image_name"]]
    assert len(table) == len(rows) - 1
    assert table.targets.tolist() == [int(r["target"]) for r in kept]
    assert list(table.groups) == [r["patient_id"] for r in kept]
    _no_group_crosses_splits(dm)


def test_isic2020_kaggle_layout_with_float_ages(tmp_path):
    root = trees.isic2020(tmp_path, kaggle=True)
    dm = ISICDataModule(str(root), **COMMON)
    assert dm.layout == "kaggle2020"
    assert all("/jpeg/train/" in p for p in dm.table.paths)
    assert int(dm.table.targets.sum()) == sum(int(r["target"]) for r in _csv_rows(root / "train.csv"))
    _no_group_crosses_splits(dm)


def test_deotte_tfrecord_minus_one_rows_are_dropped_with_a_note(tmp_path):
    root = trees.isic2020(tmp_path, kaggle=True)
    rows = _csv_rows(root / "train.csv")
    header = [*rows[0].keys(), "tfrecord", "width", "height"]
    trees.write_csv(
        root / "train.csv",
        header,
        [[*r.values(), -1 if i == 4 else i % 3, 6000, 4000] for i, r in enumerate(rows)],
    )
    dm = ISICDataModule(str(root), **COMMON)
    with pytest.warns(UserWarning, match="dropped 1 rows marked tfrecord == -1"):
        assert len(dm.table) == len(rows) - 1


def test_ham10000_seven_classes_lesion_groups_and_duplicate_folders(tmp_path):
    root = trees.ham10000(tmp_path)
    dm = ISICDataModule(str(root), labels="dataset", **COMMON)
    assert dm.layout == "ham10000" and dm.class_names == ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
    rows = _csv_rows(root / "HAM10000_metadata.csv")
    assert dm.table.targets.tolist() == [dm.class_names.index(r["dx"]) for r in rows]
    # the upper-case part folder wins over the lower-case duplicate, deterministically
    assert all("/HAM10000_images_part_" in p for p in dm.table.paths)
    assert len(set(dm.table.paths)) == len(rows)
    _no_group_crosses_splits(dm)
    binary = ISICDataModule(str(root), **COMMON)
    assert binary.table.targets.tolist() == [int(r["dx"] == "mel") for r in rows]


def test_items_are_upright_3_channel_and_follow_the_contract(tmp_path):
    dm = ISICDataModule(str(trees.isic2019(tmp_path)), **COMMON)
    reader = dm.dataset("train").reader if 6 in dm.split_rows("train") else None
    # the EXIF-rotated (orientation 6) landscape JPEG comes out portrait, the portrait one stays portrait
    from lit_xai.datamodules._io import decode_image

    assert decode_image(dm.table.paths[6]).shape == (40, 30, 3)
    assert decode_image(dm.table.paths[5]).shape == (40, 30, 3)
    assert decode_image(dm.table.paths[0]).shape == (30, 40, 3)
    del reader
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 3, 16, 16) and batch["target"].dtype == torch.long
    assert torch.isfinite(batch["image"]).all()


# ------------------------------------------------------------------------------------------------- class weights
def test_class_weights_and_pos_weight_come_from_the_training_split(tmp_path):
    root = trees.isic2019(tmp_path)
    dm = ISICDataModule(str(root), **COMMON)
    train = dm.targets("train")
    pos, neg = (train == 1).sum(), (train == 0).sum()
    assert dm.pos_weight() == pytest.approx(neg / pos)
    assert dm.class_weights() == pytest.approx([len(train) / (2 * neg), len(train) / (2 * pos)])
    multi = ISICDataModule(str(root), labels="dataset", **COMMON)
    with pytest.raises(ValueError, match="no positive samples of \\['AK', 'BKL', 'DF', 'VASC', 'SCC'\\]"):
        multi.class_weights()  # the fixture has no AK/BKL/...: infinite weights are refused, not returned


# ------------------------------------------------------------------------------------------------------ bad input
def test_missing_root_says_which_setting_to_change(tmp_path):
    with pytest.raises(FileNotFoundError, match="set data.init_args.root to the folder that contains"):
        ISICDataModule(str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="no ISIC label file"):
        ISICDataModule(str(tmp_path))


def test_several_layouts_under_one_root_need_an_explicit_layout(tmp_path):
    trees.isic2019(tmp_path)
    trees.ham10000(tmp_path)
    with pytest.raises(DataFormatError, match="several ISIC datasets.*data.init_args.layout"):
        ISICDataModule(str(tmp_path))
    assert ISICDataModule(str(tmp_path), layout="ham10000").layout == "ham10000"


def test_missing_column_names_the_column_and_the_file(tmp_path):
    root = trees.ham10000(tmp_path)
    path = root / "HAM10000_metadata.csv"
    rows = _csv_rows(path)
    trees.write_csv(
        path,
        [h for h in trees.HAM_HEADER if h != "lesion_id"],
        [[v for k, v in r.items() if k != "lesion_id"] for r in rows],
    )
    with pytest.raises(DataFormatError, match="HAM10000_metadata.csv has no column 'lesion_id'"):
        _ = ISICDataModule(str(root)).table


@pytest.mark.parametrize(
    ("layout", "column", "value", "message"),
    [
        ("isic2019", "MEL", "yes", r"ISIC_2019_Training_GroundTruth.csv, line 4 \(image ISIC_0000002\): unknown label"),
        ("isic2019", "UNK", "1.0", r"line 4 \(image ISIC_0000002\): expected exactly one 1.0"),
        ("ham10000", "dx", "melanoma", r"HAM10000_metadata.csv, line 4 \(image ISIC_0024308\): unknown dx"),
        ("isic2020", "target", "2", r"GroundTruth_v2.csv, line 4: unknown target value '2'"),
    ],
)
def test_unknown_label_value_names_the_row(tmp_path, layout, column, value, message):
    root = {"isic2019": trees.isic2019, "ham10000": trees.ham10000, "isic2020": trees.isic2020}[layout](tmp_path)
    path = next(root.glob("*GroundTruth*.csv")) if layout != "ham10000" else root / "HAM10000_metadata.csv"
    rows = _csv_rows(path)
    rows[2][column] = value  # third data row = line 4
    trees.write_csv(path, list(rows[0].keys()), [list(r.values()) for r in rows])
    with pytest.raises(DataFormatError, match=message):
        _ = ISICDataModule(str(root)).table


def test_unk_label_is_an_error_naming_the_row(tmp_path):
    root = trees.isic2019(tmp_path)
    path = root / "ISIC_2019_Training_GroundTruth.csv"
    rows = _csv_rows(path)
    rows[1] = {k: ("1.0" if k == "UNK" else "0.0" if k != "image" else v) for k, v in rows[1].items()}
    trees.write_csv(path, list(rows[0].keys()), [list(r.values()) for r in rows])
    with pytest.raises(DataFormatError, match=r"line 3 \(image ISIC_0000001\): label UNK"):
        _ = ISICDataModule(str(root)).table


def test_listed_but_missing_image_raises_naming_it_or_is_skipped_counted_and_reported(tmp_path):
    root = trees.isic2019(tmp_path)
    victim = next(root.rglob("ISIC_0000009.jpg"))
    victim.unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of 24 listed images are missing, e\.g\. .*ISIC_0000009\.jpg"):
        _ = ISICDataModule(str(root), **COMMON).table
    dm = ISICDataModule(str(root), on_bad_image="skip", **COMMON)
    with pytest.warns(UserWarning, match="skipped 1 of 24 images.*ISIC_0000009"):
        assert len(dm.table) == 23
    assert [p.rsplit("/", 1)[-1] for p, _ in dm.skipped] == ["ISIC_0000009.jpg"]
    assert "missing" in dm.skipped[0][1]
    with pytest.warns(UserWarning, match="1 images were skipped"):
        dm.setup("fit")
    assert not any(p.endswith("ISIC_0000009.jpg") for p in dm.table.paths)


def test_corrupt_and_truncated_images_raise_naming_the_file_or_are_skipped(tmp_path):
    root = trees.isic2019(tmp_path)
    garbage = next(root.rglob("ISIC_0000010.jpg"))
    garbage.write_bytes(b"this is not a jpeg")
    truncated = next(root.rglob("ISIC_0000011.jpg"))
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    dm = ISICDataModule(str(root), val_fraction=0.0, test_fraction=0.0, image_size=16)
    position = list(dm.split_rows("train")).index(10)
    with pytest.raises(OSError, match="cannot read image file .*ISIC_0000010.jpg"):
        dm.dataset("train")[position]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        skip = ISICDataModule(str(root), on_bad_image="skip", **COMMON)
        _ = skip.table
    assert sorted(p.rsplit("/", 1)[-1] for p, _ in skip.skipped) == ["ISIC_0000010.jpg", "ISIC_0000011.jpg"]
    assert len(skip.table) == 22
    # every remaining image loads
    for split in ("train", "val", "test"):
        ds = skip.dataset(split)
        for i in range(len(ds)):
            ds[i]


def test_empty_split_is_a_clear_error(tmp_path):
    root = trees.isic2019(tmp_path, n=4)
    dm = ISICDataModule(str(root), image_size=16, val_fraction=0.2, test_fraction=0.2)
    with pytest.raises(ValueError, match="the 'test' split is empty"):
        dm.setup("test")
    # the one validation image is not a melanoma: a split without a class is refused too
    with pytest.raises(ValueError, match="the 'val' split has no sample of class 'melanoma'"):
        dm.setup("fit")


def test_hyperparameters_recreate_the_datamodule(tmp_path):
    root = trees.isic2019(tmp_path)
    dm = ISICDataModule(str(root), labels="dataset", **COMMON)
    again = ISICDataModule(**dict(dm.hparams))
    assert again.class_names == dm.class_names and again.image_size == 16
    shutil.rmtree(root)
    with pytest.raises(FileNotFoundError):
        ISICDataModule(**dict(dm.hparams))
