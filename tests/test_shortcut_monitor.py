"""ShortcutMonitor: alerts on the planted ring shortcut, stays silent in the control, writes its JSON report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lit_xai.callbacks import ShortcutMonitor, alert_decision
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
    mon = ShortcutMonitor(audit_max_samples=400, pool_size=192, num_counterfactual=48, spray_samples=48, verbose=False)
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
    assert "shortcut/ring/melanoma/counterfactual_shift" in acc.Tags()["scalars"]
    assert "shortcut/alerts/text_summary" in acc.Tags()["tensors"]
    assert "shortcut/ring/flagged_probes" in acc.Tags()["images"]


def test_control_with_balanced_ring_raises_no_alert(control_run, shortcut_run):
    mon, _ = control_run
    assert mon.alerts == []
    shifts = [h["counterfactual"]["mean_shift"] for h in mon.history]
    shortcut_shifts = [h["counterfactual"]["mean_shift"] for h in shortcut_run[0].history]
    # the control model may lean on the ring briefly while it learns, but not persistently and far less
    assert sum(s >= 0.2 for s in shifts[-2:]) == 0
    assert min(shortcut_shifts) > max(shifts[-2:]) + 0.3


def test_alert_rule():
    strong = {"counterfactual": {"mean_shift": 0.4}, "relevance_ratio": 2.0}
    assert alert_decision(strong, audit_flagged=False, shift_threshold=0.1, relevance_threshold=1.5)
    weak_shift = {"counterfactual": {"mean_shift": 0.05}, "relevance_ratio": 5.0}
    assert not alert_decision(weak_shift, audit_flagged=True, shift_threshold=0.1, relevance_threshold=1.5)
    unfocused = {"counterfactual": {"mean_shift": 0.4}, "relevance_ratio": 0.8}
    assert not alert_decision(unfocused, audit_flagged=False, shift_threshold=0.1, relevance_threshold=1.5)
    assert alert_decision(unfocused, audit_flagged=True, shift_threshold=0.1, relevance_threshold=1.5)
    assert not alert_decision({"relevance_ratio": math.nan}, True, 0.1, 1.5)


def test_bad_arguments():
    with pytest.raises(ValueError, match="choose from ring"):
        ShortcutMonitor(detectors=("rings",))
    with pytest.raises(ValueError, match="every_n_epochs"):
        ShortcutMonitor(every_n_epochs=0)
    with pytest.raises(ValueError, match="patience"):
        ShortcutMonitor(patience=0)


def test_unknown_target_class(tmp_path):
    dm = SyntheticShortcutDataModule(num_train=32, num_val=16, num_test=0, image_size=32)
    mon = ShortcutMonitor(target_class="nevus")
    trainer = Trainer(max_epochs=1, logger=False, callbacks=[mon], default_root_dir=str(tmp_path))
    with pytest.raises(ValueError, match="choose from \\['benign', 'melanoma'\\]"):
        trainer.fit(ImageClassifier("tiny_resnet"), dm)
