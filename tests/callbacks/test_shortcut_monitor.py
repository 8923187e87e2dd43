"""ShortcutMonitor: alerts on the planted ring shortcut, stays silent in the control, writes its JSON report."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pytest
import torch
import torchvision
from lightning.pytorch import Callback, LightningModule, Trainer, seed_everything
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.data import DataLoader, TensorDataset

from lit_xai.artifacts import ARTIFACTS, SUSPICIOUS_THRESHOLD_CONCEPTS, AlertRule, register_artifact
from lit_xai.callbacks import ModelSpec, ShortcutBudget, ShortcutMonitor
from lit_xai.callbacks.shortcut_monitor import Discovery
from lit_xai.datamodules import SyntheticShortcutDataModule
from lit_xai.models import ImageClassifier

EPOCHS = 4


def run(tmp_path: Path, ring_benign: float, ring_melanoma: float) -> tuple[ShortcutMonitor, Trainer]:
    seed_everything(7)
    dm = SyntheticShortcutDataModule(
        num_train=800,
        num_val=192,
        num_test=16,
        image_size=48,
        batch_size=64,
        ring_fraction_benign=ring_benign,
        ring_fraction_melanoma=ring_melanoma,
        seed=1,
    )
    model = ImageClassifier("tiny_resnet", num_classes=2, task="binary", class_names=list(dm.class_names), lr=3e-3)
    mon = ShortcutMonitor(
        budget=ShortcutBudget(audit_max_samples=400, pool_size=192, num_counterfactual=48, spray_samples=48),
        verbose=False,
    )
    trainer = Trainer(
        max_epochs=EPOCHS,
        accelerator="cpu",
        logger=TensorBoardLogger(str(tmp_path), name="sc"),
        callbacks=[mon],
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=str(tmp_path),
    )
    trainer.fit(model, dm)
    return mon, trainer


@pytest.fixture(scope="module")
def shortcut_run(tmp_path_factory):
    return run(tmp_path_factory.mktemp("shortcut"), 0.0, 0.3)


@pytest.fixture(scope="module")
def control_run(tmp_path_factory):
    return run(tmp_path_factory.mktemp("control"), 0.3, 0.3)


def test_audit_flags_the_label_predictive_ring_only_in_the_shortcut_data(shortcut_run, control_run):
    assert shortcut_run[0].audit_report is not None and control_run[0].audit_report is not None
    assert shortcut_run[0]._audit_flags["ring"] == ["melanoma"]
    assert control_run[0]._audit_flags["ring"] == []


def test_alert_fires_on_the_shortcut_within_the_run(shortcut_run):
    mon, trainer = shortcut_run
    alerts = [a for a in mon.alerts if a["artifact"] == "ring"]
    assert len(alerts) == 1, mon.alerts  # once, not every epoch
    alert = alerts[0]
    assert alert["class"] == "melanoma" and 0 <= alert["epoch"] < EPOCHS
    evidence = alert["evidence"]
    assert evidence["counterfactual"]["mean_shift"] >= 0.2
    # patience: the rule held at this and the previous measurement
    met = [h["rule_met"] for h in mon.history if h["epoch"] <= alert["epoch"]]
    assert met[-2:] == [True, True]
    # the JSON report in the run directory holds the same alert
    report = json.loads((Path(trainer.log_dir) / "shortcut_report.json").read_text())
    assert report["alerts"][0]["epoch"] == alert["epoch"] and report["alerts"][0]["class"] == "melanoma"
    assert report["audit"]["artifacts"]["ring"]["predictive_classes"] == ["melanoma"]
    # scalars and the alert text reach TensorBoard
    acc = EventAccumulator(trainer.log_dir, size_guidance={"scalars": 0, "tensors": 0, "images": 0})
    acc.Reload()
    assert "XAI_shortcut/ring/melanoma/counterfactual_shift" in acc.Tags()["scalars"]  # beside XAI_drift
    assert "XAI/0_verdict" in acc.Tags()["images"]
    assert "XAI/shortcut/alerts/text_summary" in acc.Tags()["tensors"]
    assert "XAI/shortcut/ring/flagged_probes" in acc.Tags()["images"]


def test_control_with_balanced_ring_raises_no_alert(control_run, shortcut_run):
    mon, _ = control_run
    assert mon.alerts == []
    shifts = [h["counterfactual"]["mean_shift"] for h in mon.history]
    shortcut_shifts = [h["counterfactual"]["mean_shift"] for h in shortcut_run[0].history]
    # the control model may lean on the ring briefly while it learns, but not persistently and far less
    assert sum(s >= 0.2 for s in shifts[-2:]) == 0
    assert min(shortcut_shifts) > max(shifts[-2:]) + 0.3


def test_alert_rule():
    rule = AlertRule(min_effect=0.1, patience=1)
    removal = {"test": "removal", "effect": 0.4, "interval": [0.3, 0.5], "confidence": 0.95, "n": 30, "n_sham": 30}
    assert rule.met({"removal": removal}, audit_flagged=False)
    weak = {**removal, "effect": 0.12, "interval": [0.05, 0.19]}  # the interval does not clear min_effect
    assert not rule.met({"removal": weak}, audit_flagged=True)
    # relevance concentration and the audit are supporting evidence only: never an alert on their own
    assert not rule.met({"relevance_ratio": 5.0}, audit_flagged=True)
    assert not rule.met({"relevance_ratio": math.nan}, True)
    patient = AlertRule(patience=2)
    assert [patient.update("k", m) for m in (True, False, True, True, True)] == [False, False, False, True, False]
    restored = AlertRule(patience=2)
    restored.load_state_dict(patient.state_dict())
    assert not restored.update("k", True)  # fires once per key, also after a resume
    assert AlertRule(outside_roi_threshold=0.5).met_roi(0.7) and not AlertRule().met_roi(math.nan)


def test_bad_arguments():
    with pytest.raises(ValueError, match="choose from dark_corners, marker, ring"):
        ShortcutMonitor(detectors=("rings",))
    with pytest.raises(ValueError, match="every_n_epochs"):
        ShortcutMonitor(every_n_epochs=0)
    with pytest.raises(ValueError, match="patience"):
        AlertRule(patience=0)
    with pytest.raises(ValueError, match="not both"):
        ShortcutMonitor(model=ModelSpec(normalization=((0.5,) * 3, (0.5,) * 3), input_range=(0, 255)))
    with pytest.raises(ValueError, match="pool_size"):
        ShortcutMonitor(budget=ShortcutBudget(pool_size=1))


def test_watched_artifact_without_inserter_is_an_error():
    register_artifact("burnt_text_test", detect=lambda x: (x.mean((1, 2, 3)), x.mean(1) > 2), threshold=0.5)
    try:
        with pytest.raises(ValueError, match="no inserter"):
            ShortcutMonitor(detectors=("ring", "burnt_text_test"))
    finally:
        ARTIFACTS.pop("burnt_text_test")


def test_the_report_names_the_tests_that_ran(shortcut_run):
    mon = shortcut_run[0]
    ring = [h for h in mon.history if h["artifact"] == "ring"]
    assert ring and set(ring[-1]["tests"]) >= {"relevance_in_mask", "insertion", "removal"}
    assert "tests run:" in mon.alerts[0]["message"]


def test_unknown_target_class(tmp_path):
    dm = SyntheticShortcutDataModule(num_train=32, num_val=16, num_test=0, image_size=32)
    mon = ShortcutMonitor(target_class="nevus")
    trainer = Trainer(max_epochs=1, logger=False, callbacks=[mon], default_root_dir=str(tmp_path))
    with pytest.raises(ValueError, match="choose from \\['benign', 'melanoma'\\]"):
        trainer.fit(ImageClassifier("tiny_resnet"), dm)


class Foreign(LightningModule):
    """Another project's module: torchvision ResNet-18 on raw [0, 255] images, (image, target) tuples."""

    def __init__(self):
        super().__init__()
        self.net = torchvision.models.resnet18(num_classes=2)

    def forward(self, x):
        return self.net(x / 255.0 - 0.5)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.cross_entropy(self(x), y)

    def validation_step(self, batch, batch_idx):
        pass

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def foreign_data(n: int = 48) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, 32, 32, generator=g) * 255
    return DataLoader(TensorDataset(x, torch.arange(n) % 2), batch_size=16)


def foreign_trainer(tmp_path: Path, callbacks: list) -> Trainer:
    return Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=TensorBoardLogger(str(tmp_path), name="f"),
        callbacks=callbacks,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=str(tmp_path),
    )


class Steps(Callback):
    def __init__(self):
        self.batches = 0

    def on_train_batch_end(self, *args, **kwargs):
        self.batches += 1


def test_foreign_project_reports_every_missing_requirement_at_setup(tmp_path):
    steps = Steps()
    mon = ShortcutMonitor(verbose=False)
    with pytest.raises(ValueError) as err:
        foreign_trainer(tmp_path, [mon, steps]).fit(Foreign(), val_dataloaders=foreign_data())
    message = str(err.value)
    # both problems at once, each with the argument that fixes it, before any training step
    assert "ModelSpec(input_range=(low, high))" in message and "ModelSpec(normalization=(mean, std))" in message
    assert "train" in message and "ShortcutBudget(audit=False)" in message
    assert steps.batches == 0


def test_foreign_project_runs_with_only_input_range(tmp_path):
    # noise images carry no ring, so nothing is flagged: name the class to watch (class names default to indices)
    mon = ShortcutMonitor(
        model=ModelSpec(input_range=(0, 255)),
        target_class="1",
        budget=ShortcutBudget(audit_max_samples=32, pool_size=48, spray_samples=0),
        verbose=False,
    )
    train = foreign_data()
    foreign_trainer(tmp_path, [mon]).fit(Foreign(), train_dataloaders=train, val_dataloaders=foreign_data())
    assert mon.audit_report is not None and mon.audit_report["class_names"] == ["0", "1"]  # indices as names
    assert mon.contract.task == "binary"
    ring = [h for h in mon.history if h["artifact"] == "ring"]
    assert ring and "insertion" in ring[-1]["tests"]
    # the pool was mapped to [0, 1] through the given range, so inserted rings darken real pixel values
    assert 0.0 <= float(mon._pool.images01.min()) and float(mon._pool.images01.max()) <= 1.0
    assert float(mon._pool.images01.mean()) == pytest.approx(0.5, abs=0.05)


def test_relevance_outside_the_lungs_is_logged_and_alerted(tmp_path):
    import warnings as _warnings

    import _dataset_trees as trees

    from lit_xai.datamodules import CovidQUExDataModule

    root = trees.covid_quex(tmp_path / "data", per_class={"Train": 6, "Val": 4, "Test": 2})
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore")
        dm = CovidQUExDataModule(root, image_size=32, batch_size=8)
    model = ImageClassifier("tiny_resnet", num_classes=3, task="multiclass", class_names=list(dm.class_names))
    # any relevance outside the lungs alerts at once: the point is that the measurement reaches the rule
    rule = AlertRule(patience=1, outside_roi_threshold=1e-6)
    mon = ShortcutMonitor(
        detectors=["text_marker"],
        alert=rule,
        budget=ShortcutBudget(audit_max_samples=16, pool_size=12, spray_samples=0),
    )
    trainer = foreign_trainer(tmp_path, [mon])
    trainer.fit(model, dm)
    roi = [h for h in mon.history if h["artifact"] == "roi"]
    assert {h["class"] for h in roi} == set(dm.class_names)
    assert all(0.0 <= h["outside_share"] <= 1.0 for h in roi)
    assert [a["artifact"] for a in mon.alerts].count("roi") == len(roi)
    acc = EventAccumulator(trainer.log_dir, size_guidance={"scalars": 0})
    acc.Reload()
    assert any(t.startswith("XAI_shortcut/roi/") and t.endswith("/outside_share") for t in acc.Tags()["scalars"])


class FileBacked(TensorDataset):
    """Noise images that name their files (as an image-folder dataset does): what keys the audit cache."""

    def __init__(self, folder: Path, n: int = 48) -> None:
        x = torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 255
        super().__init__(x, torch.arange(n) % 2)
        folder.mkdir(parents=True, exist_ok=True)
        self.files = []
        for i in range(n):
            torch.save(x[i].clone(), folder / f"{i}.pt")
            self.files.append(str(folder / f"{i}.pt"))


def test_second_fit_reads_the_audit_from_the_cache_and_generated_data_never_does(tmp_path):
    def fit(sub, train):
        mon = ShortcutMonitor(
            model=ModelSpec(input_range=(0, 255)),
            target_class="1",
            budget=ShortcutBudget(audit_max_samples=16, pool_size=8, num_counterfactual=4, spray_samples=0),
            discovery=Discovery(every_n_epochs=0),
            verbose=False,
        )
        trainer = foreign_trainer(tmp_path / sub, [mon])
        trainer.fit(Foreign(), train_dataloaders=DataLoader(train, batch_size=16), val_dataloaders=foreign_data())
        return mon.audit_report

    files = FileBacked(tmp_path / "files")
    first, second = fit("a", files), fit("b", files)
    assert first["from_cache"] is False and second["from_cache"] is True
    same = [k for k in first if k != "from_cache"]
    assert {k: first[k] for k in same} == {k: second[k] for k in same}
    # no file names, no identity: an in-memory dataset is audited afresh (a hash of a few items could collide)
    memory = foreign_data().dataset
    assert fit("c", memory)["from_cache"] is False and fit("d", memory)["from_cache"] is False


def test_discovery_lists_candidates_of_maps_and_concepts_in_the_report(shortcut_run):
    mon, trainer = shortcut_run
    names = mon.contract.class_names
    assert mon.candidates, "discovery ran at the scheduled epochs"
    assert {c["epoch"] for c in mon.candidates} == {e for e in range(EPOCHS) if mon.discovery.due(e, EPOCHS)}
    pool_ids = set(mon._pool.ids)
    for c in mon.candidates:
        assert c["class"] in names and c["size"] == len(c["members"]) and set(c["members"]) <= pool_ids
        assert c["threshold"] == SUSPICIOUS_THRESHOLD_CONCEPTS and c["suspicious"] == (c["score"] >= c["threshold"])
        assert "CRP" in c["clustered"] and "concept relevances" in c["clustered"]  # the concepts beside the maps
    for epoch in {c["epoch"] for c in mon.candidates}:
        for name in names:
            group = [c for c in mon.candidates if c["epoch"] == epoch and c["class"] == name]
            assert [c["rank"] for c in group] == list(range(len(group))) and len(group) <= mon.discovery.top_k
            assert [c["score"] for c in group] == sorted((c["score"] for c in group), reverse=True)
    report = json.loads((Path(trainer.log_dir) / "shortcut_report.json").read_text())
    assert report["candidates"] == mon.candidates


def test_discovery_falls_back_to_the_maps_where_crp_does_not_apply():
    mon = ShortcutMonitor(verbose=False)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2))  # no concept layer
    with pytest.warns(UserWarning, match="maps alone"):
        assert mon._concepts(net, torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 0, 1])) == (None, "")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once, not at every discovery epoch
        assert mon._concepts(net, torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 0, 1])) == (None, "")
    assert Discovery(concepts=False).concepts is False
