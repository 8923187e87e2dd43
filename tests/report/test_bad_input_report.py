"""Bad input and faults of the report (issue 33): unreadable event files are refused naming the file, the page is
written atomically, output names stay inside the run folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.tensorboard import SummaryWriter

from lit_xai.callbacks import RunReport
from lit_xai.cli import report_main
from lit_xai.report import read_run, write_report
from lit_xai.report.run_data import UnreadableRunError


def tiny_events(folder: Path, steps: int = 3) -> Path:
    """A run folder with one real event file: a scalar and a picture per step."""
    folder.mkdir(parents=True, exist_ok=True)
    writer = SummaryWriter(str(folder))
    for step in range(steps):
        writer.add_scalar("XAI_drift/lrp/spearman_prev", 0.5 + 0.1 * step, step)
        writer.add_image("XAI/lrp/true", torch.full((3, 8, 8), step / 3), step)
    writer.close()
    return next(folder.glob("events.out.tfevents.*"))


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(".tmp"))


def test_a_good_run_still_reads_completely(tmp_path):
    tiny_events(tmp_path / "run")
    run = read_run(tmp_path / "run")
    assert [s for s, _ in run.scalars["XAI_drift/lrp/spearman_prev"]] == [0, 1, 2]
    assert [e.step for e in run.images["XAI/lrp/true"]] == [0, 1, 2]


@pytest.mark.parametrize("damage", ["zero_bytes", "garbled", "truncated", "garbled_middle"])
def test_unreadable_event_files_are_refused_naming_the_file(tmp_path, capsys, damage):
    # each used to give exit 0 and an empty or partial report without a word
    file = tiny_events(tmp_path / "run")
    data = file.read_bytes()
    if damage == "zero_bytes":
        file.write_bytes(b"")
    elif damage == "garbled":
        file.write_bytes(bytes(range(256)) * 4)
    elif damage == "truncated":
        file.write_bytes(data[: len(data) - 50])
    else:
        middle = len(data) // 2
        file.write_bytes(data[:middle] + b"\x00" * 40 + data[middle + 40 :])
    with pytest.raises(UnreadableRunError, match=str(file.name)):
        read_run(tmp_path / "run")
    assert report_main([str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and file.name in err
    assert not (tmp_path / "run" / "report.html").exists() and leftovers(tmp_path) == []


def test_output_naming_an_existing_folder_is_a_clear_error_and_leaves_nothing(tmp_path, capsys):
    tiny_events(tmp_path / "run")
    out = tmp_path / "out"
    out.mkdir()
    assert report_main([str(tmp_path / "run"), "-o", str(out)]) == 2  # used to be an IsADirectoryError traceback
    err = capsys.readouterr().err
    assert "is a folder" in err and "report.html" in err
    assert list(out.iterdir()) == [] and leftovers(tmp_path) == []  # a 422 KB temp file used to be left behind


def test_report_is_written_atomically_and_a_failed_write_leaves_no_temp_file(tmp_path, monkeypatch):
    tiny_events(tmp_path / "run")
    built = write_report(tmp_path / "run")
    assert built.path.read_text(encoding="utf-8").startswith("<!") and leftovers(tmp_path) == []
    before = built.path.read_bytes()

    def full_disk(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "replace", full_disk)
    with pytest.raises(OSError, match="No space left"):
        write_report(tmp_path / "run")
    assert built.path.read_bytes() == before and leftovers(tmp_path) == []  # the old page is intact


@pytest.mark.parametrize("filename", ["../report.html", "../../x.html", "/tmp/report.html", "reports/", "a/../../b"])
def test_run_report_file_names_stay_inside_the_run_folder(filename):
    # RunReport(filename="../..") used to write outside the run folder, creating missing parent folders
    with pytest.raises(ValueError, match="inside the run folder"):
        RunReport(filename=filename)


def test_run_report_accepts_names_inside_the_run_folder():
    assert RunReport(filename="reports/report.html").filename == "reports/report.html"
    assert RunReport(filename="report.html").filename == "report.html"


def test_a_later_event_file_supersedes_the_steps_it_logs_again(tmp_path):
    # a resume into the same version used to give pictures at steps 0,1,2,3,2,3 and every scalar point twice
    folder = tmp_path / "run"
    tiny_events(folder, steps=4)  # steps 0-3
    writer = SummaryWriter(str(folder))  # the resumed run, from step 2 on
    for step in (2, 3):
        writer.add_scalar("XAI_drift/lrp/spearman_prev", -1.0, step)
        writer.add_image("XAI/lrp/true", torch.zeros(3, 8, 8), step)
    writer.close()
    assert len(list(folder.glob("events.out.tfevents.*"))) == 2
    run = read_run(folder)
    assert [e.step for e in run.images["XAI/lrp/true"]] == [0, 1, 2, 3]
    assert run.scalars["XAI_drift/lrp/spearman_prev"] == [(0, 0.5), (1, pytest.approx(0.6)), (2, -1.0), (3, -1.0)]
    assert run.purged == 4
    assert "4 points of a resumed run's earlier event file dropped" in write_report(folder).summary()


def test_resume_into_the_same_version_warns_and_the_report_keeps_one_point_per_step(tmp_path):
    from lightning.pytorch import Trainer
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import TensorBoardLogger

    from lit_xai.callbacks import ExplanationMonitor, Pictures
    from lit_xai.datamodules import SyntheticShortcutDataModule
    from lit_xai.models import ImageClassifier

    def fit(callback, ckpt_path=None):
        torch.manual_seed(0)
        trainer = Trainer(
            default_root_dir=tmp_path, max_epochs=3, limit_train_batches=2, accelerator="cpu",
            enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
            logger=TensorBoardLogger(str(tmp_path), name="run", version=0, default_hp_metric=False),
            callbacks=[ExplanationMonitor(("gradcam",), probes=2, verbose=False, pictures=Pictures(tile=32)), callback],
        )  # fmt: skip
        data = SyntheticShortcutDataModule(num_train=32, num_val=8, num_test=8, image_size=32, batch_size=16, seed=0)
        trainer.fit(ImageClassifier("tiny_resnet", num_classes=2), data, ckpt_path=ckpt_path)

    fit(ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1, filename="{epoch}"))
    with pytest.warns(UserWarning, match="already holds 1 event file.*TensorBoard shows those steps twice.*version"):
        fit(ModelCheckpoint(dirpath=tmp_path / "ckpt2"), ckpt_path=tmp_path / "ckpt" / "epoch=0.ckpt")
    run = read_run(tmp_path / "run" / "version_0")
    assert [e.step for e in run.images["XAI/gradcam/true"]] == [0, 1, 2, 3]
    steps = [s for s, _ in run.scalars["XAI_drift/gradcam/spearman_prev"]]
    assert steps == sorted(set(steps)) and run.purged > 0


def test_event_files_are_read_oldest_first_by_their_numbers(tmp_path):
    from lit_xai.report.run_data import _event_file_order

    names = [f"events.out.tfevents.1700000000.host.name.42.{uid}" for uid in (10, 9, 11)]
    names.append("events.out.tfevents.1699999999.host.name.42.12")
    ordered = [p.name for p in sorted((tmp_path / n for n in names), key=_event_file_order)]
    assert [n.rsplit(".", 1)[1] for n in ordered] == ["12", "9", "10", "11"]  # as text, 10 came before 9
