"""Peak memory of one LRP call against the input gradient it is compared with, and growth over repeated calls.

**Peak** (CPU): every call is measured in its own fresh worker process (``--worker``): build the model and the batch,
run the call once (warm-up: one-off allocations such as oneDNN's primitive cache), read the resident set size
``VmRSS``, reset the kernel's peak counter (``echo 5 > /proc/self/clear_refs``), run the call again and read the
peak ``VmHWM``. The figure is ``VmHWM - VmRSS``: what the call adds at its peak on top of model, batch and libraries.
``tracemalloc`` cannot see torch's allocator, hence RSS. The workers run with ``MALLOC_MMAP_THRESHOLD_=65536`` so
that freed activations go back to the system instead of staying in glibc's heap (otherwise the warm-up's freed
memory would hide the measured call's peak). On CUDA (``--device cuda``) the figure is
``torch.cuda.max_memory_allocated()`` minus the memory allocated before the call.

**Growth** (``--growth N``): one worker process (same allocator setting) calls the public ``LRP()`` ``N`` times on
the same batch and reports ``VmRSS`` and the number of live tensors (``gc``) after the 1st, 10th, 50th and last
call; a leak shows as growth between the 10th and the last.

Run:
    python -m benchmarks lrp_memory                               # resnet50, 224 px, batch 8, 2 threads
    python -m benchmarks lrp_memory --growth 100 --growth-side 64  # + 100 repeated calls at 64 px
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's lit_xai, not whichever is installed

import torch  # noqa: E402

from benchmarks.timing import write_json  # noqa: E402

__all__ = ["CALLS", "growth", "peak"]

#: the compared calls, measured one per worker process
CALLS = ("gradient", "lrp_relevance", "LRP()")


def _status(field: str) -> int:
    """A ``/proc/self/status`` memory field in bytes (``VmRSS``, ``VmHWM``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux >= 4.0)


def _setup(arch: str, side: int, batch: int, device: str):
    from lit_xai.models.architectures import build_architecture, get_spec

    torch.manual_seed(0)
    net = build_architecture(arch, num_classes=10).eval().requires_grad_(False).to(device)
    images = torch.randn(batch, 3, side, side, device=device)
    targets = torch.randint(0, 10, (batch,), device=device)
    return net, images, targets, get_spec(arch).default_composite


def _call(name: str, net, images, targets, composite: str):
    from benchmarks.lrp_floor import input_gradient
    from lit_xai.explainers import LRP, lrp_relevance

    if name == "gradient":
        return lambda: input_gradient(net, images, targets)
    if name == "lrp_relevance":
        return lambda: lrp_relevance(net, images, targets, composite=composite)
    explainer = LRP(composite, batch_size=images.shape[0])
    return lambda: explainer(net, images, targets)


def _worker(name: str, arch: str, side: int, batch: int, device: str) -> dict:
    net, images, targets, composite = _setup(arch, side, batch, device)
    call = _call(name, net, images, targets, composite)
    call()  # warm-up
    gc.collect()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        call()
        torch.cuda.synchronize()
        return {"call": name, "peak_bytes": torch.cuda.max_memory_allocated() - before, "how": "cuda"}
    before = _status("VmRSS")
    _reset_peak()
    call()
    return {"call": name, "peak_bytes": _status("VmHWM") - before, "base_rss_bytes": before, "how": "VmHWM - VmRSS"}


def peak(arch: str, side: int, batch: int, threads: int, device: str) -> dict[str, dict]:
    """Each call's peak extra memory, measured in a fresh worker process per call."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", OMP_NUM_THREADS=str(threads))
    out = {}
    for name in CALLS:
        cmd = [sys.executable, __file__, "--worker", name, "--arch", arch, "--side", str(side), "--batch", str(batch)]
        cmd += ["--threads", str(threads), "--device", device]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        out[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def growth(arch: str, side: int, batch: int, calls: int) -> dict[str, list]:
    """``VmRSS`` (bytes) and live tensors after the 1st, 10th and last of ``calls`` public ``LRP()`` calls."""
    net, images, targets, composite = _setup(arch, side, batch, "cpu")
    call = _call("LRP()", net, images, targets, composite)
    marks = sorted({1, min(10, calls), min(50, calls), calls})
    rows = []
    for i in range(1, calls + 1):
        call()
        if i in marks:
            gc.collect()
            with warnings.catch_warnings():  # isinstance on every object wakes deprecated module attributes
                warnings.simplefilter("ignore")
                tensors = sum(isinstance(o, torch.Tensor) for o in gc.get_objects())
            rows.append([i, _status("VmRSS"), tensors])
    return {"calls_rss_tensors": rows}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--side", type=int, default=224)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--growth", type=int, default=0, help="also call LRP() this many times (leak check)")
    parser.add_argument("--growth-side", type=int, default=64)
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--worker", choices=CALLS, help=argparse.SUPPRESS)
    parser.add_argument("--growth-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps(_worker(args.worker, args.arch, args.side, args.batch, args.device)))
        return
    if args.growth_worker:
        print(json.dumps(growth(args.arch, args.growth_side, args.batch, args.growth)))
        return
    results: dict = {"args": vars(args), "peak": peak(args.arch, args.side, args.batch, args.threads, args.device)}
    base = results["peak"]["gradient"]["peak_bytes"]
    print(f"{args.arch} {args.side} px batch {args.batch}, {args.device}: peak extra memory of one call "
          f"({results['peak']['gradient']['how']}, fresh process per call, after a warm-up call)")  # fmt: skip
    for name, row in results["peak"].items():
        row["over_gradient"] = row["peak_bytes"] / base
        print(f"  {name:14s} {row['peak_bytes'] / 2**20:9.1f} MiB   x{row['over_gradient']:.2f} the gradient")
    if args.growth:
        # in a worker with the same allocator setting as the peaks, so that RSS follows live memory
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", OMP_NUM_THREADS=str(args.threads))
        cmd = [sys.executable, __file__, "--growth-worker", "--growth", str(args.growth), "--arch", args.arch]
        cmd += ["--growth-side", str(args.growth_side), "--batch", str(args.batch), "--threads", str(args.threads)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        results["growth"] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"growth over {args.growth} LRP() calls ({args.arch}, {args.growth_side} px, batch {args.batch}):")
        for i, rss, tensors in results["growth"]["calls_rss_tensors"]:
            print(f"  after call {i:4d}: VmRSS {rss / 2**20:8.1f} MiB, live tensors {tensors}")
    if args.json:
        write_json(args.json, results, suite="lrp_memory")


if __name__ == "__main__":
    main()
