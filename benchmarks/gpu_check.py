"""One-shot check of lit_xai on a GPU, printing a JSON summary (about 5-8 minutes on one GPU).

Sections (each one's failure is recorded in the JSON, the others still run):

* ``tests``: ``pytest -m cuda`` (tests/test_cuda.py: explainers on CUDA vs CPU, the monitors under 16-/bf16-mixed,
  asynchronous, bit-identical weights, nothing left on the GPU);
* ``demo``: ``train.py --config configs/demo.yaml`` on the device, wall time without the monitors, with them, and
  with them ``asynchronous: true`` (separate processes, start-up included);
* ``explainers``: on ResNet-50, 224 px, batch 32, in fp32 and bf16: LRP / input gradient and CRP / LRP (all calls
  interleaved in every repeat; min and median). A bf16 model is explained through an fp32 copy (LRP's epsilon
  underflows in bf16; :func:`lit_xai.explainers._core.explanation_model`), the input gradient runs in bf16;
* ``monitor_cost``: each monitor's work at an explained epoch end (timed between marker callbacks placed around it)
  against one training epoch of ResNet-50 on 2,000 synthetic 224-px images without monitors (bf16-mixed on a GPU).

Usage::

    python -m benchmarks gpu_check                      # on the GPU, full sizes
    python -m benchmarks gpu_check --device cpu --quick # CI smoke test: tiny sizes, about a minute on 2 cores

``--quick`` uses tiny sizes everywhere (ResNet-18 at 32 px for the explainers, tiny_resnet for the monitors, one
epoch of the demo on 64 images; the numbers then only show that every path runs).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks.timing import summary, time_interleaved  # noqa: E402

__all__ = ["main"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _interleaved(calls: dict[str, Callable[[], Any]], repeats: int, device: torch.device) -> dict[str, list[float]]:
    """Seconds per call (:func:`benchmarks.timing.time_interleaved`, one warm-up round, synchronised on CUDA)."""
    return time_interleaved(calls, repeats, warmup=1, sync=lambda: _sync(device))


def _summary(values: list[float]) -> dict[str, float]:
    s = summary(values)
    return {"min": s["min"], "median": s["median"]}


def _ratio(num: list[float], den: list[float]) -> dict[str, float]:
    return {"min": min(num) / min(den), "median": statistics.median(n / d for n, d in zip(num, den))}


# ------------------------------------------------------------------------------------------------- sections
def section_tests(device: torch.device, quick: bool) -> dict[str, Any]:
    if device.type != "cuda":
        return {"skipped": "no CUDA device: the cuda tests skip themselves (see tests/conftest.py)"}
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", "-rfEs", "tests/test_cuda.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", tail)}
    failures = [line for line in proc.stdout.splitlines() if line.startswith(("FAILED", "ERROR", "SKIPPED"))]
    return {"returncode": proc.returncode, "counts": counts, "summary": tail, "not_passed": failures[:20],
            "seconds": time.perf_counter() - start}  # fmt: skip


def _demo_config(device: torch.device, quick: bool, tmp: str, variant: str) -> str:
    import yaml

    config = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    trainer = config["trainer"]
    trainer["accelerator"] = "gpu" if device.type == "cuda" else "cpu"
    trainer["logger"] = {
        "class_path": trainer["logger"]["class_path"],
        "init_args": dict(trainer["logger"]["init_args"], save_dir=os.path.join(tmp, "logs")),
    }
    trainer["enable_progress_bar"] = False
    # the demo's RunReport is no monitor: left out of every variant, so the variants differ in the monitors only
    callbacks = [c for c in trainer["callbacks"] if "RunReport" not in c["class_path"]]
    if variant == "plain":
        callbacks = [c for c in callbacks if "Checkpoint" in c["class_path"]]
    elif variant == "async":
        callbacks = [
            c if "Checkpoint" in c["class_path"] else dict(c, init_args={**c["init_args"], "asynchronous": True})
            for c in callbacks
        ]
    if quick:  # every path, tiny sizes
        trainer["max_epochs"] = 1
        config["data"]["init_args"].update(num_train=64, num_val=32, num_test=16, image_size=32, batch_size=32)
        for c in callbacks:
            if "ShortcutMonitor" in c["class_path"]:
                c["init_args"]["budget"] = {"audit_max_samples": 32, "pool_size": 16}
    trainer["callbacks"] = callbacks
    path = os.path.join(tmp, f"demo_{variant}.yaml")
    Path(path).write_text(yaml.safe_dump(config))
    return path


def section_demo(device: torch.device, quick: bool) -> dict[str, Any]:
    variants = ("plain", "monitors") if quick else ("plain", "monitors", "async")
    out: dict[str, Any] = {"seconds": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for variant in variants:
            path = _demo_config(device, quick, tmp, variant)
            start = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, str(ROOT / "train.py"), "--config", path], cwd=tmp, capture_output=True, text=True,
                timeout=600, env=dict(os.environ, PYTHONWARNINGS="ignore"),
            )  # fmt: skip
            out["seconds"][variant] = time.perf_counter() - start
            if proc.returncode != 0:
                out["error"] = f"{variant}: {proc.stderr[-1500:]}"
                return out
    plain = out["seconds"]["plain"]
    out["monitors_over_plain"] = out["seconds"]["monitors"] / plain
    if "async" in out["seconds"]:
        out["async_over_plain"] = out["seconds"]["async"] / plain
    return out


def _input_gradient(net: torch.nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    xi = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(net(xi).gather(1, t[:, None]).sum(), xi)
    return g


def section_explainers(device: torch.device, quick: bool) -> dict[str, Any]:
    from lit_xai.explainers import CRP, LRP
    from lit_xai.models.architectures import build_architecture

    arch, side, batch, repeats = ("resnet18", 32, 2, 1) if quick else ("resnet50", 224, 32, 5)
    out: dict[str, Any] = {"model": arch, "side": side, "batch": batch, "repeats": repeats}
    for dtype_name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        torch.manual_seed(0)
        net = build_architecture(arch, num_classes=10).eval().requires_grad_(False).to(device, dtype)
        x = torch.randn(batch, 3, side, side, device=device, dtype=dtype)
        t = torch.randint(0, 10, (batch,), device=device)
        lrp, crp = LRP(), CRP()
        times = _interleaved(
            {
                "grad": functools.partial(_input_gradient, net, x, t),
                "lrp": functools.partial(lrp, net, x, t),
                "crp": functools.partial(crp, net, x, t),
            },
            repeats,
            device,
        )
        out[dtype_name] = {
            "lrp_over_grad": _ratio(times["lrp"], times["grad"]),
            "crp_over_lrp": _ratio(times["crp"], times["lrp"]),
            "seconds": {name: _summary(v) for name, v in times.items()},
        }
    return out


def section_monitor_cost(device: torch.device, quick: bool) -> dict[str, Any]:
    """Each monitor's epoch-end work vs one training epoch without monitors (the second epoch: warm)."""
    from lightning.pytorch import Callback, Trainer, seed_everything

    from lit_xai.callbacks import ExplanationMonitor, ExplanationQualityMonitor, ShortcutMonitor
    from lit_xai.datamodules import SyntheticShortcutDataModule
    from lit_xai.models import ImageClassifier

    arch, n_train, n_val, side, batch = ("tiny_resnet", 64, 32, 32, 32) if quick else ("resnet50", 2000, 256, 224, 32)
    gpu = device.type == "cuda"

    class Mark(Callback):
        """Records when the callbacks after it start their hooks (Lightning calls callbacks in list order)."""

        def __init__(self, times: dict[str, list[float]], name: str) -> None:
            self.times, self.name = times, name  # not self.log: a method of Lightning's Callback

        def _mark(self, hook: str) -> None:
            _sync(device)
            self.times.setdefault(f"{hook}:{self.name}", []).append(time.perf_counter())

        def on_fit_start(self, *args: Any) -> None:
            self._mark("fit_start")

        def on_train_epoch_start(self, *args: Any) -> None:
            self._mark("train_epoch_start")

        def on_validation_epoch_end(self, trainer: Trainer, *args: Any) -> None:
            if not trainer.sanity_checking:
                self._mark("val_end")

        def on_train_epoch_end(self, *args: Any) -> None:
            self._mark("train_epoch_end")

    def run(monitors: dict[str, Callback]) -> dict[str, list[float]]:
        seed_everything(0)
        log: dict[str, list[float]] = {}
        callbacks: list[Callback] = [Mark(log, "m0")]
        for i, mon in enumerate(monitors.values()):
            callbacks += [mon, Mark(log, f"m{i + 1}")]
        dm = SyntheticShortcutDataModule(
            num_train=n_train, num_val=n_val, num_test=8, image_size=side, batch_size=batch,
            num_workers=min(8, os.cpu_count() or 1) if gpu else 0,
        )  # fmt: skip
        model = ImageClassifier(arch, num_classes=2, task="binary", class_names=list(dm.class_names))
        trainer = Trainer(
            accelerator="gpu" if gpu else "cpu", devices=1, precision="bf16-mixed" if gpu else "32-true",
            max_epochs=2, num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks, default_root_dir=tmp,
        )  # fmt: skip
        trainer.fit(model, dm)
        return log

    monitors = {
        "explanation": ExplanationMonitor(explainers=("lrp", "crp", "gradcam"), every_n_epochs=1),
        "shortcut": ShortcutMonitor(artifacts=("ring",), every_n_epochs=1),
        "quality": ExplanationQualityMonitor(explainers=("lrp", "gradcam"), every_n_epochs=1),
    }
    # the monitors' fallback pictures (no logger) go to a folder removed afterwards
    with tempfile.TemporaryDirectory(prefix="lit_xai_gpu_check_") as tmp:
        plain = run({})
        log = run(monitors)
    epoch = plain["train_epoch_end:m0"][1] - plain["train_epoch_start:m0"][1]
    out: dict[str, Any] = {
        "model": arch, "train_images": n_train, "val_images": n_val, "side": side, "batch": batch,
        "precision": "bf16-mixed" if gpu else "32-true", "train_epoch_s": epoch,
    }  # fmt: skip
    for i, name in enumerate(monitors):
        # the second epoch's work (the first also pays one-time set-up such as CRP's reference search warm-up)
        cost = log[f"val_end:m{i + 1}"][1] - log[f"val_end:m{i}"][1]
        start = log[f"fit_start:m{i + 1}"][0] - log[f"fit_start:m{i}"][0]
        out[name] = {"epoch_end_s": cost, "over_train_epoch": cost / epoch, "fit_start_s": start}
    total = sum(out[name]["epoch_end_s"] for name in monitors)
    out["all_over_train_epoch"] = total / epoch
    return out


SECTIONS: dict[str, Callable[[torch.device, bool], dict[str, Any]]] = {
    "tests": section_tests,
    "demo": section_demo,
    "explainers": section_explainers,
    "monitor_cost": section_monitor_cost,
}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke test)")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {list(SECTIONS)}")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but torch.cuda.is_available() is False; pass --device cpu")
    unknown = [s for s in args.sections.split(",") if s not in SECTIONS]
    if unknown:
        raise SystemExit(f"unknown sections {unknown}; choose from {list(SECTIONS)}")
    summary: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "quick": args.quick,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
    }
    start = time.perf_counter()
    for name in args.sections.split(","):
        t0 = time.perf_counter()
        try:
            summary[name] = SECTIONS[name](device, args.quick)
        except Exception as err:  # noqa: BLE001 - one broken section must not hide the others
            summary[name] = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()[-2000:]}
        summary[name]["section_s"] = time.perf_counter() - t0
    summary["total_s"] = time.perf_counter() - start
    text = json.dumps(summary, indent=2)
    print(text, flush=True)
    if args.out:
        Path(args.out).write_text(text)
    return summary


if __name__ == "__main__":
    main()
