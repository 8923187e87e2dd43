"""benchmarks/gpu_check.py: the CPU smoke run (``--device cpu --quick``) produces every section without errors."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def _module():
    spec = importlib.util.spec_from_file_location("lit_xai_gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_variants_differ_only_in_the_monitors(tmp_path) -> None:
    import torch

    check = _module()
    configs = {
        v: yaml.safe_load(Path(check._demo_config(torch.device("cpu"), True, str(tmp_path), v)).read_text())
        for v in ("plain", "monitors", "async")
    }
    names = {v: [c["class_path"].rsplit(".", 1)[-1] for c in cfg["trainer"]["callbacks"]] for v, cfg in configs.items()}
    assert names["plain"] == ["ModelCheckpoint"]
    assert names["monitors"] == names["async"] == ["ModelCheckpoint", "ExplanationMonitor", "ShortcutMonitor"]
    monitors = [c for c in configs["async"]["trainer"]["callbacks"] if "Monitor" in c["class_path"]]
    assert all(c["init_args"]["asynchronous"] is True for c in monitors)
    for cfg in configs.values():
        assert cfg["trainer"]["accelerator"] == "cpu" and cfg["trainer"]["max_epochs"] == 1
        assert cfg["trainer"]["logger"]["init_args"]["save_dir"].startswith(str(tmp_path))  # never into the repo
        assert cfg["model"] == configs["plain"]["model"] and cfg["data"] == configs["plain"]["data"]
    with pytest.raises(SystemExit, match="unknown sections"):
        check.main(["--device", "cpu", "--sections", "nope"])


@pytest.mark.slow
def test_cpu_quick_run_covers_every_section(tmp_path) -> None:
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--quick", "--out", str(out)],
        cwd=str(tmp_path), capture_output=True, text=True, timeout=900, env=dict(os.environ, PYTHONWARNINGS="ignore"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(out.read_text())
    assert summary["device"] == "cpu" and summary["quick"] is True
    errors = {k: v["error"] for k, v in summary.items() if isinstance(v, dict) and "error" in v}
    assert not errors, errors
    assert "skipped" in summary["tests"]  # no CUDA here: the cuda tests skip themselves
    assert summary["demo"]["monitors_over_plain"] > 0
    for dtype in ("fp32", "bf16"):
        ratios = summary["explainers"][dtype]
        assert ratios["lrp_over_grad"]["min"] > 0 and ratios["crp_over_lrp"]["min"] > 0
    cost = summary["monitor_cost"]
    assert cost["train_epoch_s"] > 0
    assert all(cost[m]["epoch_end_s"] > 0 for m in ("explanation", "shortcut", "quality"))
