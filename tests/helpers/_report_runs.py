"""A tiny real fit with the monitors and RunReport (32 px images, tiny ResNet, 2 epochs), for the report tests."""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.loggers import TensorBoardLogger

from lit_xai.callbacks import ExplanationMonitor, Pictures, RunReport, ShortcutBudget, ShortcutMonitor
from lit_xai.callbacks.shortcut_monitor import Discovery
from lit_xai.datamodules import SyntheticShortcutDataModule
from lit_xai.explainers import CRP
from lit_xai.models import ImageClassifier


def tiny_run(root: Path, tensorboard: bool, epochs: int = 2) -> Trainer:
    """Fit; ``tensorboard=False`` runs with ``logger=False`` (everything goes to the fallback folder)."""
    seed_everything(0)
    dm = SyntheticShortcutDataModule(
        num_train=96, num_val=48, num_test=16, image_size=32, batch_size=32, seed=0, ring_fraction_benign=0.0,
        ring_fraction_melanoma=0.5,
    )
    model = ImageClassifier("tiny_resnet", num_classes=2, task="binary", class_names=["benign", "melanoma"], lr=0.01)
    callbacks = [
        ExplanationMonitor(
            explainers=("lrp", CRP(top_k=2), "gradcam"), probes=4, verbose=False, pictures=Pictures(tile=32)
        ),
        ShortcutMonitor(
            budget=ShortcutBudget(audit_max_samples=48, pool_size=32, num_counterfactual=8, spray_samples=0),
            discovery=Discovery(every_n_epochs=0),
            verbose=False,
        ),
        RunReport(verbose=False),
    ]
    logger = TensorBoardLogger(str(root), name="run", default_hp_metric=False) if tensorboard else False
    trainer = Trainer(
        default_root_dir=str(root),
        logger=logger,
        callbacks=callbacks,
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
    )
    trainer.fit(model, dm)
    return trainer
