"""Sinks: the same grid reaches TensorBoard, W&B (offline) and MLflow (sqlite) through their own APIs, and a run with
no image-capable logger gets PNG/Markdown files plus one warning. Each case is a real ``Trainer.fit``."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.demos.boring_classes import BoringModel
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from PIL import Image

from lit_xai.callbacks.sinks import FALLBACK_FOLDER, SinkReport, fallback_dir, log_image, log_text
from lit_xai.visualization import table_image

TAG, TEXT_TAG = "xai/test/grid", "xai/test/notes"


def _grid(step: int) -> torch.Tensor:
    """A small real picture that differs per step (so we can tell which step a stored image came from)."""
    return table_image(["step", "value"], [[str(step), f"{step * 0.5:.1f}"]], title=f"step {step}")


class _Logs(Callback):
    """Logs one image and one text per validation epoch through the sinks, keeping the reports."""

    def __init__(self) -> None:
        self.reports: list[SinkReport] = []
        self.images: dict[int, torch.Tensor] = {}

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: BoringModel) -> None:
        if trainer.sanity_checking:
            return
        step = trainer.global_step
        self.images[step] = _grid(step)
        self.reports.append(log_image(trainer, TAG, self.images[step], step, caption=f"caption {step}"))
        self.reports.append(log_text(trainer, TEXT_TAG, f"**notes** at step {step}", step))


def _fit(tmp_path: Path, logger, epochs: int = 2) -> _Logs:
    cb = _Logs()
    trainer = Trainer(
        default_root_dir=tmp_path,
        max_epochs=epochs,
        limit_train_batches=2,
        limit_val_batches=1,
        logger=logger,
        callbacks=[cb],
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        accelerator="cpu",
        devices=1,
    )
    trainer.fit(BoringModel())
    return cb


def _png(data: bytes | Path) -> torch.Tensor:
    img = Image.open(io.BytesIO(data) if isinstance(data, bytes) else data).convert("RGB")
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)


def test_tensorboard_gets_images_and_text(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = TensorBoardLogger(tmp_path, name="tb")
    cb = _fit(tmp_path, logger)
    assert [r.loggers for r in cb.reports] == [("TensorBoardLogger",)] * 4 and not any(r.files for r in cb.reports)
    acc = EventAccumulator(logger.log_dir, size_guidance={"images": 0, "tensors": 0})
    acc.Reload()
    events = acc.Images(TAG)
    assert [e.step for e in events] == [2, 4]
    for e in events:
        expected = cb.images[e.step]
        assert (e.height, e.width) == tuple(expected.shape[1:])
        torch.testing.assert_close(_png(e.encoded_image_string), expected)  # PNG is lossless: the very pixels
    tensor_tags = acc.Tags()["tensors"]
    assert f"{TEXT_TAG}/text_summary" in tensor_tags and f"{TAG}/caption/text_summary" in tensor_tags
    assert not (Path(logger.log_dir) / FALLBACK_FOLDER).exists()


def test_csv_only_writes_png_and_markdown_with_one_warning(tmp_path):
    logger = CSVLogger(tmp_path, name="csv")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cb = _fit(tmp_path, logger)
    ours = [w for w in caught if "lit_xai: none of the trainer's loggers" in str(w.message)]
    assert len(ours) == 1, [str(w.message) for w in ours]
    folder = Path(logger.log_dir) / FALLBACK_FOLDER
    assert "CSVLogger" in str(ours[0].message) and str(folder) in str(ours[0].message)
    for step in (2, 4):
        png = folder / "xai" / "test" / "grid" / f"step_{step:06d}.png"
        torch.testing.assert_close(_png(png), cb.images[step])
        assert png.with_suffix(".txt").read_text().strip() == f"caption {step}"
        md = folder / "xai" / "test" / "notes" / f"step_{step:06d}.md"
        assert md.read_text().strip() == f"**notes** at step {step}"
    assert all(r.delivered and not r.loggers and r.files for r in cb.reports)


def test_no_logger_writes_under_default_root_dir(tmp_path):
    with pytest.warns(UserWarning, match="no logger"):
        cb = _fit(tmp_path, False, epochs=1)
    png = tmp_path / FALLBACK_FOLDER / "xai" / "test" / "grid" / "step_000002.png"
    assert png.is_file() and cb.reports[0].files[0] == png


def test_bad_input_and_other_ranks(tmp_path, monkeypatch):
    trainer = Trainer(default_root_dir=tmp_path, logger=False)
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        log_image(trainer, TAG, torch.zeros(1, 8, 8, dtype=torch.uint8), 0)
    with pytest.raises(ValueError, match="non-empty"):
        log_image(trainer, "", torch.zeros(3, 8, 8, dtype=torch.uint8), 0)
    with pytest.raises(ValueError, match="uint8 or float"):
        log_image(trainer, TAG, torch.zeros(3, 8, 8, dtype=torch.int64), 0)
    # tags cannot escape the fallback folder
    with pytest.warns(UserWarning):
        report = log_image(trainer, "../../x y/../z", torch.rand(3, 8, 8), 3)
    assert report.files[0].is_relative_to(fallback_dir(trainer)) and report.files[0].is_file()
    assert report.files[0].relative_to(fallback_dir(trainer)).parts == ("_", "_", "x_y", "_", "z", "step_000003.png")
    # rank > 0: nothing is written (rank 0 writes), and the report says why
    monkeypatch.setattr(Trainer, "is_global_zero", property(lambda self: False))
    before = sorted(tmp_path.rglob("*"))
    skipped = log_text(trainer, TEXT_TAG, "x", 1)
    assert skipped.skipped == "not global rank 0" and not skipped.delivered
    assert log_image(trainer, TAG, torch.rand(3, 8, 8), 1).skipped == "not global rank 0"
    assert sorted(tmp_path.rglob("*")) == before


def test_fast_dev_run_keeps_nothing_but_says_so(tmp_path):
    with pytest.warns(UserWarning, match="fast_dev_run"):
        cb = _fit_fast(tmp_path)
    assert cb.reports and all(r.skipped == "fast_dev_run" for r in cb.reports)
    assert not list(tmp_path.rglob("*.png"))


def _fit_fast(tmp_path: Path) -> _Logs:
    class _Always(_Logs):
        def on_validation_epoch_end(self, trainer, pl_module):  # fast_dev_run has no sanity check
            super().on_validation_epoch_end(trainer, pl_module)

    cb = _Always()
    Trainer(default_root_dir=tmp_path, fast_dev_run=True, callbacks=[cb], enable_progress_bar=False).fit(BoringModel())
    return cb


def test_wandb_offline_gets_images(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    import wandb
    from lightning.pytorch.loggers import WandbLogger

    # WandbLogger(offline=True) sets os.environ["WANDB_MODE"] for the whole process: monkeypatch restores it
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    logger = WandbLogger(project="lit_xai_test", save_dir=str(tmp_path), offline=True)
    try:
        cb = _fit(tmp_path, logger, epochs=1)
    finally:
        wandb.finish()
    assert [r.loggers for r in cb.reports] == [("WandbLogger",)] * 2
    images = sorted(tmp_path.glob("wandb/offline-run-*/files/media/images/xai/test/grid_*.png"))
    assert len(images) == 1
    torch.testing.assert_close(_png(images[0]), cb.images[2])
    tables = list(tmp_path.glob("wandb/offline-run-*/files/media/table/xai/test/notes_*.table.json"))
    assert len(tables) == 1 and "**notes** at step 2" in tables[0].read_text()
    assert not (tmp_path / FALLBACK_FOLDER).exists()


def test_mlflow_sqlite_gets_artifacts(tmp_path):
    pytest.importorskip("mlflow")
    from lightning.pytorch.loggers import MLFlowLogger
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    logger = MLFlowLogger(experiment_name="lit_xai_test", tracking_uri=uri, artifact_location=str(tmp_path / "art"))
    cb = _fit(tmp_path, logger, epochs=1)
    assert [r.loggers for r in cb.reports] == [("MLFlowLogger",)] * 2
    client = MlflowClient(tracking_uri=uri)
    listed = {a.path for a in client.list_artifacts(logger.run_id, "xai/test/grid")}
    assert listed == {"xai/test/grid/step_000002.png", "xai/test/grid/step_000002.txt"}
    assert {a.path for a in client.list_artifacts(logger.run_id, "xai/test/notes")} == {"xai/test/notes/step_000002.md"}
    local = client.download_artifacts(logger.run_id, "xai/test/grid/step_000002.png", str(tmp_path / "dl"))
    torch.testing.assert_close(_png(Path(local)), cb.images[2])
