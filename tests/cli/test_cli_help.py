"""The command-line tools answer at once and open with a short usage block (issue 30.6); the training command leaves
busy cores alone (issue 30.3)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from lit_xai.commands import COMMANDS
from lit_xai.threads import choose_threads

ROOT = Path(__file__).resolve().parents[2]


def test_lit_xai_help_lists_every_command_without_importing_torch() -> None:
    code = (
        "import sys, time; t = time.perf_counter(); from lit_xai.tool import main; main(['--help']); "
        "print('torch' in sys.modules, 'lightning' in sys.modules, round(time.perf_counter() - t, 3))"
    )
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    wall = time.perf_counter() - start
    *help_lines, last = out.strip().splitlines()
    assert last.split()[:2] == ["False", "False"]  # no heavy import behind --help
    assert wall < 2.0, wall  # the whole process, Python's start included (measured 0.05 s)
    text = "\n".join(help_lines)
    for name, line in COMMANDS.items():
        assert f"{name}  " in text and line in text
    assert sorted(COMMANDS) == ["audit", "correct", "report", "train"]


def test_lit_xai_unknown_command_is_named_with_the_choices() -> None:
    from lit_xai.tool import main

    assert main(["nope"]) == 2


@pytest.mark.parametrize("argv", [["--help"], ["help"], []])
def test_help_spellings(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    from lit_xai.tool import main

    assert main(argv) == 0
    assert "usage: lit-xai <command>" in capsys.readouterr().out


def test_train_help_opens_with_the_short_usage_block() -> None:
    out = subprocess.run(
        [sys.executable, "train.py", "--help"], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    head = out.splitlines()[0]
    assert head.startswith("usage: python train.py --config configs/<experiment>.yaml")
    short, _, full = out.partition("Every option (LightningCLI):")
    assert "python train.py --config configs/demo.yaml" in short and "--trainer.max_epochs" in short
    assert "--trainer.accelerator" in full  # LightningCLI's own help follows


def test_threads_leave_busy_cores_alone() -> None:
    assert choose_threads(cores=2, busy=1.0, default=2) == 1
    assert choose_threads(cores=2, busy=0.3, default=2) == 2
    assert choose_threads(cores=2, busy=2.0, default=2) == 1  # never below one
    assert choose_threads(cores=16, busy=3.6, default=8) == 8  # never above torch's default
    assert choose_threads(cores=16, busy=12.0, default=8) == 4


def test_threads_respect_an_explicit_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from lit_xai import threads

    before = torch.get_num_threads()
    try:
        monkeypatch.setattr(threads, "busy_cores", lambda interval=0.3: 64.0)  # everything busy
        monkeypatch.setenv("OMP_NUM_THREADS", str(before))
        assert threads.configure_threads() is None and torch.get_num_threads() == before
        monkeypatch.delenv("OMP_NUM_THREADS")
        monkeypatch.setenv("LIT_XAI_THREADS", "all")
        assert threads.configure_threads() is None and torch.get_num_threads() == before
        monkeypatch.setenv("LIT_XAI_THREADS", "abc")
        with pytest.raises(ValueError, match="LIT_XAI_THREADS"):
            threads.configure_threads()
        monkeypatch.delenv("LIT_XAI_THREADS")
        note = threads.configure_threads()
        if before > 1:
            assert torch.get_num_threads() == 1 and "busy" in note and "OMP_NUM_THREADS" in note
    finally:
        torch.set_num_threads(before)
