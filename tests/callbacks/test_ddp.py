"""Both monitors under 2-process CPU DDP (gloo): rank 0 explains, scalars are broadcast, nothing deadlocks."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lit_xai.artifacts.audit import eval_dataset
from lit_xai.datamodules import SyntheticShortcutDataModule
from lit_xai.probes import select_probes

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "ddp_smoke.py"


def test_ddp_two_processes(tmp_path):
    # the subprocess imports this checkout's lit_xai, wherever (or whether) the package is installed
    path = os.pathsep.join(p for p in (str(SCRIPT.parents[1]), os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, PYTHONWARNINGS="ignore", PYTHONPATH=path)
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=420,
        env=env,
        cwd=str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = [json.loads((tmp_path / f"result_rank{r}.json").read_text()) for r in (0, 1)]
    r0, r1 = results
    assert r0["world_size"] == r1["world_size"] == 2
    assert r0["xai_history"] == [-1, 0, 1]  # rank 0 explained the baseline and both epochs
    # rank 1 explained nothing itself (no baseline at fit start) but holds the broadcast history of every epoch
    assert r1["xai_history"] == [0, 1]
    # a monitor with a time budget measured the initial model only (rank 0) and postponed both epochs on every rank
    assert r0["budget_history"] == [-1] and r1["budget_history"] == []
    # ... but received the broadcast scalars, identical on both ranks (usable by checkpoint/early-stopping callbacks)
    assert r0["metrics"] == r1["metrics"] and "XAI_drift/time_s" in r0["metrics"]
    assert any(m.startswith("XAI_drift/lrp/") for m in r0["metrics"])
    assert any(m.startswith("XAI_shortcut/ring/") for m in r0["metrics"])
    assert r0["time_s"] == r1["time_s"] > 0
    assert list(tmp_path.rglob("events.out.tfevents.*"))
    # the reliance pools (validation, and training for the removal test) were decoded half by each rank and gathered:
    # every rank holds what one process reading every item holds
    assert r0["pools"] == r1["pools"] and "val" in r0["pools"]
    dm = SyntheticShortcutDataModule(num_train=128, num_val=64, num_test=0, image_size=32, batch_size=32)
    dm.setup("fit")
    for split, pool in r0["pools"].items():
        data = eval_dataset(dm.dataset(split), dm)
        alone = select_probes(data, indices=pool["ids"])
        assert len(pool["ids"]) == 32
        assert pool["sum"] == pytest.approx(float(alone.images.double().sum()), rel=1e-12)
        assert pool["labels"] == alone.targets.long().tolist()
