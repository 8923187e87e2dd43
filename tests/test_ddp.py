"""Both monitors under 2-process CPU DDP (gloo): rank 0 explains, scalars are broadcast, nothing deadlocks."""

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "ddp_smoke.py"


def test_ddp_two_processes(tmp_path):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
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
    # ... but received the broadcast scalars, identical on both ranks (usable by checkpoint/early-stopping callbacks)
    assert r0["metrics"] == r1["metrics"] and "XAI_drift/time_s" in r0["metrics"]
    assert any(m.startswith("XAI_drift/lrp/") for m in r0["metrics"])
    assert any(m.startswith("XAI_shortcut/ring/") for m in r0["metrics"])
    assert r0["time_s"] == r1["time_s"] > 0
    assert list(tmp_path.rglob("events.out.tfevents.*"))
