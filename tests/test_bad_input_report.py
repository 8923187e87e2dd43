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
