"""CheXpertDataModule on fixture trees: uncertainty policies, frontal views, Path prefixes, patient-level split."""

from __future__ import annotations

import csv
import math
import warnings

import _dataset_trees as trees
import numpy as np
import pytest
import torch

from lit_xai.datamodules import CHEXPERT_COMPETITION, CHEXPERT_OBSERVATIONS, CheXpertDataModule
from lit_xai.datamodules._io import DataFormatError

COMMON = {"image_size": 16, "batch_size": 4, "val_fraction": 0.25}


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yield


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _expected(rows, names, policy):
    out = []
    for r in rows:
        if r["Frontal/Lateral"] != "Frontal":
            continue
        out.append([{"1.0": 1.0, "0.0": 0.0, "": 0.0, "-1.0": policy}[r[n]] for n in names])
    return np.asarray(out, dtype=np.float32)


@pytest.mark.parametrize(("policy", "value"), [("zeros", 0.0), ("ones", 1.0), ("ignore", math.nan)])
def test_uncertainty_policies_map_minus_one_and_blank_is_negative(tmp_path, policy, value):
    root = trees.chexpert(tmp_path)
    dm = CheXpertDataModule(str(root), uncertainty=policy, **COMMON)
    train_rows = _rows(root / "train.csv")
    expected = _expected(train_rows, CHEXPERT_COMPETITION, value)
    got = dm.table.targets[np.asarray(dm.table.splits) != "test"]
    np.testing.assert_array_equal(got, expected)  # NaN == NaN for assert_array_equal
    assert any(r[n] == "-1.0" for r in train_rows for n in CHEXPERT_COMPETITION)  # the case is really exercised
    assert any(r[n] == "" for r in train_rows for n in CHEXPERT_COMPETITION)


def test_all_observations_in_csv_order(tmp_path):
    dm = CheXpertDataModule(str(trees.chexpert(tmp_path)), observations="all", **COMMON)
    assert dm.class_names == CHEXPERT_OBSERVATIONS and dm.num_classes == 14 and dm.task == "multilabel"
    assert dm.table.targets.shape[1] == 14


def test_frontal_only_drops_laterals_with_a_note_and_can_keep_them(tmp_path):
    root = trees.chexpert(tmp_path)
    rows = _rows(root / "train.csv") + _rows(root / "valid.csv")
    laterals = sum(r["Frontal/Lateral"] == "Lateral" for r in rows)
    assert laterals > 0
    dm = CheXpertDataModule(str(root), **COMMON)
    assert len(dm.table) == len(rows) - laterals
    assert any("dropped" in n and "lateral" in n for n in dm.notes)
    assert not any("lateral" in p for p in dm.table.paths)
    everything = CheXpertDataModule(str(root), frontal_only=False, **COMMON)
    assert len(everything.table) == len(rows)


@pytest.mark.parametrize(
    ("prefix", "csv_prefix", "root_level"),
    [(True, True, "dataset"), (True, True, "parent"), (False, True, "dataset"), (True, False, "dataset")],
    ids=["official", "official-parent-root", "kaggle-without-folder", "csv-without-prefix"],
)
def test_path_prefix_is_resolved_in_every_layout(tmp_path, prefix, csv_prefix, root_level):
    root = trees.chexpert(tmp_path, prefix=prefix, csv_prefix=csv_prefix)
    dm = CheXpertDataModule(str(root if root_level == "dataset" else tmp_path), **COMMON)
    assert all(__import__("os").path.isfile(p) for p in dm.table.paths)
    item = dm.dataset("test")[0]
    assert item["image"].shape == (3, 16, 16) and item["target"].dtype == torch.float32


def test_valid_csv_is_the_test_split_and_patients_never_cross(tmp_path):
    root = trees.chexpert(tmp_path, patients=20)
    dm = CheXpertDataModule(str(root), **COMMON)
    test_paths = {dm.table.paths[i] for i in dm.split_rows("test")}
    assert test_paths and all("/valid/" in p for p in test_paths)
    assert all("/train/" in dm.table.paths[i] for s in ("train", "val") for i in dm.split_rows(s))
    groups = np.asarray(dm.table.groups)
    assert set(groups[dm.split_rows("train")]).isdisjoint(groups[dm.split_rows("val")])
    assert all(g.startswith("patient") for g in groups)
    assert len(dm.split_rows("val")) > 0


def test_ignore_policy_gives_nan_targets_and_pos_weight_ignores_them(tmp_path):
    dm = CheXpertDataModule(str(trees.chexpert(tmp_path)), uncertainty="ignore", **COMMON)
    train = dm.targets("train")
    assert np.isnan(train).any()
    pw = dm.pos_weight()
    known = ~np.isnan(train)
    expected = ((train == 0) & known).sum(0) / (train == 1).sum(0)
    np.testing.assert_allclose(pw, expected)
    batch = next(iter(dm.train_dataloader()))
    assert batch["target"].shape == (4, 5)


def test_unknown_label_value_and_missing_column(tmp_path):
    root = trees.chexpert(tmp_path)
    rows = _rows(root / "train.csv")
    rows[3]["Edema"] = "maybe"
    trees.write_csv(root / "train.csv", trees.CHEXPERT_HEADER, [list(r.values()) for r in rows])
    message = r"train.csv, line 5 \(CheXpert-v1.0-small/train/.*\): unknown 'Edema' label 'maybe'"
    with pytest.raises(DataFormatError, match=message):
        _ = CheXpertDataModule(str(root), **COMMON).table
    rows[3]["Edema"] = "0.0"
    trees.write_csv(root / "train.csv", trees.CHEXPERT_HEADER, [list(r.values()) for r in rows])
    header = [h for h in trees.CHEXPERT_HEADER if h != "Edema"]
    trees.write_csv(root / "valid.csv", header, [])
    with pytest.raises(DataFormatError, match="valid.csv has no column 'Edema'"):
        _ = CheXpertDataModule(str(root), **COMMON).table


def test_missing_root_and_missing_csv(tmp_path):
    with pytest.raises(FileNotFoundError, match="set data.init_args.root to the folder that contains train.csv"):
        CheXpertDataModule(str(tmp_path / "CheXpert-v1.0-small"))
    (tmp_path / "train.csv").write_text("a,b\n1,2\n")  # somebody else's train.csv does not count
    with pytest.raises(FileNotFoundError, match="no CheXpert train.csv"):
        CheXpertDataModule(str(tmp_path))
