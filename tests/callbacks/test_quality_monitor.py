"""ExplanationQualityMonitor: schedule, logged scalars/figures/text, no effect on training."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lit_xai.callbacks.quality_monitor import ExplanationQualityMonitor, QualitySettings
from lit_xai.datamodules import SyntheticShortcutDataModule
from lit_xai.models import ImageClassifier


def tiny_dm() -> SyntheticShortcutDataModule:
    return SyntheticShortcutDataModule(num_train=64, num_val=32, num_test=16, image_size=32, batch_size=32, seed=0)


def tiny_model() -> ImageClassifier:
    return ImageClassifier("tiny_resnet", num_classes=2, task="binary", class_names=["benign", "melanoma"])


def fit(tmp_path, callbacks, max_epochs=2, logger=True):
    log = TensorBoardLogger(str(tmp_path), name="run", default_hp_metric=False) if logger else False
    trainer = Trainer(
        default_root_dir=str(tmp_path),
        logger=log,
        callbacks=callbacks,
        max_epochs=max_epochs,
        accelerator="cpu",
        devices=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        deterministic=True,
        enable_checkpointing=False,
    )
    seed_everything(0)
    model = tiny_model()
    trainer.fit(model, tiny_dm())
    return trainer, model


def cheap(**kw) -> ExplanationQualityMonitor:
    settings = QualitySettings(
        steps=4, sensitivity_samples=1, infidelity_samples=2, randomization_steps=1, transforms=("blur", "rotate90")
    )
    args = dict(num_probes=2, settings=settings, every_n_epochs=1)
    args.update(kw)
    return ExplanationQualityMonitor(**args)


def test_logs_scalars_figures_and_table(tmp_path):
    mon = cheap(every_n_epochs=2)
    trainer, _ = fit(tmp_path, [mon], max_epochs=3)
    for key in (
        "quality/aopc/lrp",
        "quality/aopc/gradcam",
        "quality/aopc/random",
        "quality/sensitivity/lrp",
        "quality/infidelity/gradcam",
        "quality/randomization/lrp/spearman_top",
        "quality/stability/lrp/ssim",
    ):
        assert key in trainer.callback_metrics, (key, sorted(trainer.callback_metrics))
    assert [h["epoch"] for h in mon.history] == [1, 2]  # every 2nd epoch and the last one
    files = sorted(Path(tmp_path).rglob("events.out.tfevents.*"))
    acc = EventAccumulator(str(files[0].parent), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    acc.Reload()
    images = acc.Tags()["images"]
    for tag in ("quality/pixel_flipping", "quality/randomization", "quality/stability"):
        assert tag in images and len(acc.Images(tag)) == 2, (tag, images)
    assert any("quality/stability_table" in t for t in acc.Tags()["tensors"])  # the markdown text
    md = mon.last_report.stability_markdown()
    assert "| rotate90 |" in md and "lrp SSIM" in md


def test_no_effect_on_training(tmp_path):
    # the callback restores RNG and never touches the model: training is bit-identical with and without it
    mon = cheap(metrics=("pixel_flipping", "randomization", "stability"))
    _, with_cb = fit(tmp_path / "a", [mon])
    _, without = fit(tmp_path / "b", [])
    assert [h["epoch"] for h in mon.history] == [0, 1]
    for (k, a), (_, b) in zip(with_cb.state_dict().items(), without.state_dict().items()):
        assert torch.equal(a, b), k


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown explainer"):
        ExplanationQualityMonitor(explainers=("shap",))
    with pytest.raises(ValueError, match="unknown metrics"):
        ExplanationQualityMonitor(metrics=("aopc",))
    with pytest.raises(ValueError, match="unknown transforms"):
        QualitySettings(transforms=("rotate45",))
