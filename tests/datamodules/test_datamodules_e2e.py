"""End to end: a dermoscopy photo tree in the ISIC 2019 layout trains with both monitors (fit -> audit ->
explanations -> test), using pos_weight from the training split."""

from __future__ import annotations

import warnings

import _dataset_trees as trees
import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from lit_xai.callbacks import ExplanationMonitor, ShortcutBudget, ShortcutMonitor
from lit_xai.datamodules import ISICDataModule
from lit_xai.models import ImageClassifier


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_isic2019_tree_trains_end_to_end_with_both_monitors(tmp_path):
    root = trees.isic2019(tmp_path, n=40)
    # one listed image is missing: skipped, counted, and visible to the user and the audit
    next(root.rglob("ISIC_0000013.jpg")).unlink()
    dm = ISICDataModule(
        str(root), image_size=32, batch_size=8, val_fraction=0.2, test_fraction=0.2, on_bad_image="skip", seed=0
    )
    assert [p.rsplit("/", 1)[-1] for p, _ in dm.skipped] == ["ISIC_0000013.jpg"]
    model = ImageClassifier(
        architecture="tiny_resnet",
        num_classes=dm.num_classes,
        task=dm.task,
        class_names=list(dm.class_names),
        pos_weight=dm.pos_weight(),
        lr=1e-3,
    )
    explain = ExplanationMonitor(probes=4)
    budget = ShortcutBudget(audit_max_samples=64, pool_size=16, spray_samples=0)
    shortcut = ShortcutMonitor(detectors=["ring"], budget=budget)
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        devices=1,
        logger=TensorBoardLogger(str(tmp_path / "logs"), name="isic2019"),
        callbacks=[explain, shortcut],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, datamodule=dm)
    assert trainer.current_epoch == 1 and trainer.global_step > 0
    # the audit ran on the real training split
    report = shortcut.audit_report
    assert report is not None and report["class_names"] == ["other", "melanoma"]
    assert report["n_images"] == len(dm.dataset("train"))
    assert report["n_failed"] == 1 and "ISIC_0000013.jpg" in report["failures"][0]  # the skipped file is reported
    assert "ring" in report["artifacts"]
    # explanations were computed on probes of the real validation images, every epoch
    assert 0 in {h["epoch"] for h in explain.history} and any("XAI_drift" in k for h in explain.history for k in h)
    assert all(0 <= i < len(dm.dataset("val")) for i in explain.probes.ids)
    results = trainer.test(model, datamodule=dm, verbose=False)
    assert results and any(k.startswith("test/") for k in results[0])
    assert all(torch.isfinite(torch.tensor(v)) for k, v in results[0].items() if k == "test/loss")
    assert list((tmp_path / "logs").rglob("events.out.tfevents.*"))
