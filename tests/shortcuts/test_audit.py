"""Dataset audit: artifact prevalence per class and the "label-predictive" verdict."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from _artifact_images import skin_images
from torch.utils.data import DataLoader

from lit_xai.artifacts import association_table, audit_datamodule, audit_dataset, insert_ring

NAMES = ["benign", "melanoma"]


def _items(n_per_class: int, ring_rate: tuple[float, float], seed: int = 0) -> list[dict]:
    """Dict items (class 0 first, then class 1); ``ring_rate[c]`` of class c carries a ring."""
    images = skin_images(2 * n_per_class, size=48, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    items = []
    for c in (0, 1):
        block = images[c * n_per_class : (c + 1) * n_per_class]
        k = round(ring_rate[c] * n_per_class)
        if k:
            block = block.clone()
            block[:k] = insert_ring(block[:k], gen)[0]
        for i, img in enumerate(block):
            items.append({"image": img, "target": torch.tensor(c), "index": len(items), "artifact": i < k})
    return items


def test_ring_only_in_one_class_is_flagged() -> None:
    report = audit_dataset(_items(60, (0.0, 0.4)), class_names=NAMES, task="binary")
    ring = report.artifacts["ring"]
    assert report.n_images == 120 and report.n_failed == 0 and report.class_counts == [60, 60]
    assert ring.count_by_class == [0, 24] and ring.prevalence == pytest.approx(0.2)
    assert ring.prevalence_by_class == pytest.approx([0.0, 0.4])
    assert ring.p_class_given_artifact == pytest.approx([0.0, 1.0])
    assert ring.lift[1] == pytest.approx(2.0) and ring.odds_ratio[1] > 50
    assert ring.p_value[1] < 1e-6 and ring.chi2_p < 1e-6
    assert 0.45 < ring.cramers_v < 0.6  # sqrt(chi2 / n) for this table = 0.5
    assert 0.1 < ring.mutual_information < 0.3  # bits
    assert report.label_predictive("ring") and ring.predictive_classes == ["melanoma"]
    assert report.verdicts[0].startswith("ring: 100 % of images with ring are melanoma vs 50 % overall")
    # the dataset's own flags are audited too, and the detector agrees with them
    assert report.label_predictive("annotated")
    assert ring.agreement["precision"] == 1.0 and ring.agreement["recall"] == 1.0


def test_ring_equally_frequent_in_both_classes_is_not_flagged() -> None:
    report = audit_dataset(_items(60, (0.3, 0.3), seed=1), class_names=NAMES, task="binary")
    ring = report.artifacts["ring"]
    assert ring.count_by_class == [18, 18]
    assert ring.lift == pytest.approx([1.0, 1.0]) and ring.p_value[1] == pytest.approx(1.0)
    assert ring.cramers_v < 0.05
    assert not report.label_predictive("ring") and report.verdicts == []
    assert "no artifact is label-predictive" in report.summary()


def test_no_artifacts_is_not_flagged_and_serialises() -> None:
    report = audit_dataset(_items(30, (0.0, 0.0)), detectors=("ring", "dark_corners", "marker"), class_names=NAMES)
    for name in ("ring", "dark_corners", "marker"):
        a = report.artifacts[name]
        assert a.n_with == 0 and not a.label_predictive and a.cramers_v == 0.0
        assert all(math.isnan(p) for p in a.p_class_given_artifact)
    d = json.loads(report.to_json())  # strict JSON: NaN became null
    assert d["artifacts"]["ring"]["p_class_given_artifact"] == [None, None]
    assert d["criteria"] == {"alpha": 1e-3, "min_odds_ratio": 3.0, "min_support": 10.0}
    with pytest.raises(KeyError, match="audited: ring, dark_corners, marker"):
        report.label_predictive("ruler")


def test_small_support_is_not_flagged() -> None:
    # 8 rings, all in a rare class (20 of 220): significant (p ~ 1e-9) and huge odds ratio, but 8 images cannot
    # teach a network a shortcut -> below min_support
    labels = np.r_[np.zeros(200, int), np.ones(20, int)]
    flags = np.r_[np.zeros(200, bool), np.ones(8, bool), np.zeros(12, bool)]
    a = association_table(flags, labels, NAMES, "binary", name="ring")
    assert a.p_value[1] < 1e-6 and a.odds_ratio[1] > 100 and not a.label_predictive
    assert association_table(flags, labels, NAMES, "binary", name="ring", min_support=5).label_predictive


def test_odds_ratio_catches_majority_class_shortcuts_that_lift_misses() -> None:
    # ISIC-like "colour patch -> benign": 1000 images, 20 % malignant, 72 patches of which 1 malignant
    labels = np.r_[np.zeros(800, int), np.ones(200, int)]
    flags = np.zeros(1000, bool)
    flags[:71] = True
    flags[800] = True
    a = association_table(flags, labels, NAMES, "binary", name="patch")
    assert a.lift[0] == pytest.approx(0.986 / 0.8, abs=0.01)  # lift only 1.23
    assert a.odds_ratio[0] > 10 and a.p_value[0] < 1e-3 and a.predictive_classes == ["benign"]
    # Bissoto's ISIC 2018 dark corners: 37 % prevalence, P(malignant | dark corner) 0.244 vs 0.174 -> mild, not flagged
    n = 2594
    labels = np.r_[np.ones(234), np.zeros(726), np.ones(285), np.zeros(1349)].astype(int)
    flags = np.r_[np.ones(960, bool), np.zeros(n - 960, bool)]
    a = association_table(flags, labels, NAMES, "binary", name="dark_corner")
    assert a.p_class_given_artifact[1] == pytest.approx(0.244, abs=0.001) and a.odds_ratio[1] < 2
    assert not a.label_predictive


def test_multiclass_and_multilabel() -> None:
    images = skin_images(90, size=48, seed=3)
    targets = torch.arange(90) // 30  # 3 classes
    images[60:75] = insert_ring(images[60:75], torch.Generator().manual_seed(0))[0]  # half of class 2
    names = ["nevus", "bcc", "melanoma"]
    report = audit_dataset(list(zip(images, targets)), class_names=names, task="multiclass")
    ring = report.artifacts["ring"]
    assert ring.count_by_class == [0, 0, 15] and ring.predictive_classes == ["melanoma"]
    assert ring.lift[2] == pytest.approx(3.0) and ring.chi2 is not None
    # multilabel: label 0 positive for the ringed images and 15 others, label 1 independent of the ring
    multi = torch.zeros(90, 2)
    multi[60:90, 0] = 1
    multi[::2, 1] = 1
    report = audit_dataset(list(zip(images, multi)), class_names=["pacemaker", "effusion"], task="multilabel")
    ring = report.artifacts["ring"]
    assert report.class_counts == [30, 45]
    assert ring.p_class_given_artifact == pytest.approx([1.0, 8 / 15])
    assert ring.predictive_classes == ["pacemaker"] and ring.chi2 is None


def test_loader_batches_denormalize_and_normalized_input_error() -> None:
    items = _items(40, (0.0, 0.5))
    mean, std = torch.tensor([0.5, 0.4, 0.3])[:, None, None], torch.tensor([0.2, 0.2, 0.2])[:, None, None]
    for it in items:
        it["image"] = (it["image"] - mean) / std
    loader = DataLoader(items, batch_size=16, shuffle=False)
    report = audit_dataset(loader, class_names=NAMES, task="binary", denormalize=lambda x: x * std + mean)
    assert report.n_images == 80 and report.artifacts["ring"].count_by_class == [0, 20]
    assert report.label_predictive("ring")
    with pytest.raises(ValueError, match="denormalize"):
        audit_dataset(loader, class_names=NAMES, task="binary")
    denormalize = lambda x: x * std + mean  # noqa: E731
    capped = audit_dataset(loader, class_names=NAMES, task="binary", denormalize=denormalize, max_samples=50)
    assert capped.n_images == 50


class _FlakyDataset:
    """Items per the data contract; every 10th item fails to read."""

    def __init__(self, items: list[dict]) -> None:
        self.items = items
        self.transform = "train-augmentation"

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        if i % 10 == 3:
            raise OSError(f"cannot decode image {i}")
        return self.items[i]


class _FakeDataModule:
    class_names = NAMES
    task = "binary"

    def __init__(self, items: list[dict]) -> None:
        self.ds = _FlakyDataset(items)

    def dataset(self, split: str) -> _FlakyDataset:
        assert split == "train"
        return self.ds

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def transform(self, train: bool) -> str:
        return "train-augmentation" if train else "eval"


def test_audit_datamodule_counts_failures_and_samples_deterministically() -> None:
    dm = _FakeDataModule(_items(50, (0.0, 0.4)))
    report = audit_datamodule(dm, "train")
    assert report.n_failed == 10 and report.n_images == 90
    assert report.failures[0] == "index 3: OSError: cannot decode image 3"
    assert report.label_predictive("ring")
    assert dm.ds.transform == "train-augmentation"  # the eval transform went on a copy
    a = audit_datamodule(dm, "train", max_samples=40, seed=1)
    b = audit_datamodule(dm, "train", max_samples=40, seed=1)
    assert a.n_images + a.n_failed == 40 and a.to_dict() == b.to_dict()
    assert 0 < a.class_counts[0] < 40 and 0 < a.class_counts[1] < 40  # a random subset, not the first 40 (all class 0)


def test_audit_of_the_synthetic_datamodule() -> None:
    synthetic = pytest.importorskip("lit_xai.datamodules.synthetic")
    dm = synthetic.SyntheticShortcutDataModule(num_train=300, num_val=8, num_test=8, image_size=40)
    report = audit_datamodule(dm, "train", max_samples=200)
    ring = report.artifacts["ring"]
    assert report.n_images == 200 and report.n_failed == 0
    assert report.label_predictive("ring") and ring.predictive_classes == ["melanoma"]
    assert ring.count_by_class[0] == 0 and ring.p_class_given_artifact[1] == 1.0
    assert ring.agreement["precision"] >= 0.9 and ring.agreement["recall"] >= 0.9
    control = synthetic.SyntheticShortcutDataModule(
        num_train=200, num_val=8, num_test=8, image_size=40, ring_fraction_benign=0.3, ring_fraction_melanoma=0.3
    )
    assert not audit_datamodule(control, "train").label_predictive("ring")
