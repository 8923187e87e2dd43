"""How fast can setup look for unreadable images? The quick check vs a 1/8-scale decode vs a training decode.

``FileDataModule`` with ``on_bad_image="raise"`` checks every image of the splits a stage needs at setup, before any
training step (:func:`lit_xai.datamodules._io.check_image`). This script measures, on generated JPEGs:

* ``quick``: header + end-of-image marker (what setup runs);
* ``decode_1_8``: ``check_image(decode=True)``, a full entropy decode at the smallest DCT scale (finds damage inside
  the compressed data too);
* ``decode_train``: :func:`~lit_xai.datamodules._io.decode_image` at ``size_hint=224`` (what the loader does).

Sets: 10,000 small JPEGs (320 x 320, CheXpert-small sized) and 2,000 large ones (1024 x 768). Each method runs
over the whole set once with a thread pool as setup uses it (``--threads``, default: setup's choice) and once on one
thread. Files are written to a temporary folder (about 150 MB) and removed afterwards; the page cache is warm
(as on a second run; a cold network disk is slower for every method alike).

Measured 2026-12-03 on the shared 2-core machine (load 13-16 from other agents, so absolute rates are pessimistic;
warm page cache), images/s on 1 thread / 2 threads:

=================== ============== ============== ===============
set                 quick          decode 1/8     training decode
=================== ============== ============== ===============
10,000 x 320 px     8,603 / 4,705  1,607 / 1,318  209 / 268
2,000 x 1024 px     7,715 / 6,841  165 / 142      22.5 / 48.9
=================== ============== ============== ===============

So the quick check costs about 26 s for CheXpert's 224k small images and seconds for ISIC's 33k, whatever their
size; a 1/8-scale decode would add ~2.5 minutes on CheXpert and, on ISIC's 1024-6000 px photographs, from minutes to
hours, at every start. Setup therefore runs the quick check (it finds truncation, the damage of interrupted
downloads and unzips, which is what makes PIL fail mid-epoch); the rarer damage inside the compressed data still
raises, naming the file, when the loader reads it, and ``on_bad_image="skip"`` keeps decoding everything once.
(With 2 threads the quick check is slower here: it is CPU-bound on a warm cache and the cores are shared; on a cold
or network disk the threads hide the latency.)

Run::

    python -m benchmarks bad_image_check                 # full: 10,000 small + 2,000 large
    python -m benchmarks bad_image_check --quick         # 1,000 small + 200 large
    python -m benchmarks bad_image_check --output check.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lit_xai.datamodules._io import check_image, decode_image  # noqa: E402
from lit_xai.datamodules.files import check_workers  # noqa: E402

__all__ = ["measure", "write_jpegs"]


def write_jpegs(folder: Path, n: int, size: tuple[int, int], seed: int = 0) -> list[Path]:
    """``n`` photo-like JPEGs (smooth gradient + noise, quality 90) of ``size`` = (width, height)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([xx / w * 200, yy / h * 200, np.full_like(xx, 120)], -1)
    paths = []
    for i in range(n):
        noise = rng.normal(0, 12, (h // 8, w // 8, 3)).repeat(8, 0).repeat(8, 1)
        pixels = np.clip(base + noise + rng.normal(0, 4, (1, 1, 3)), 0, 255).astype(np.uint8)
        path = folder / f"img_{i:05d}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(path)
    return paths


def _rate(fn, paths: list[Path], threads: int) -> float:
    start = time.perf_counter()
    if threads == 1:
        for p in paths:
            fn(p)
    else:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(fn, paths))
    return len(paths) / (time.perf_counter() - start)


def measure(quick: bool = False, threads: int | None = None) -> dict[str, Any]:
    """Images/s of each method on each set (keys ``<set>.<method>.<threads>``)."""
    threads = threads or check_workers()
    sets = {"small_320": (1000 if quick else 10000, (320, 320)), "large_1024": (200 if quick else 2000, (1024, 768))}
    methods = {
        "quick": check_image,
        "decode_1_8": lambda p: check_image(p, decode=True),
        "decode_train": lambda p: decode_image(p, 224),
    }
    out: dict[str, Any] = {"threads": threads, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (n, size) in sets.items():
            start = time.perf_counter()
            paths = write_jpegs(Path(tmp) / name, n, size)
            out[f"{name}.n"] = n
            out[f"{name}.write_s"] = round(time.perf_counter() - start, 1)
            out[f"{name}.mb"] = round(sum(p.stat().st_size for p in paths) / 1e6, 1)
            for method, fn in methods.items():
                for t in sorted({threads, 1}):
                    rate = out[f"{name}.{method}.{t}"] = round(_rate(fn, paths, t), 1)
                    print(f"{name:11s} {method:13s} threads={t}: {rate:9.1f} images/s", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    result = measure(args.quick, args.threads)
    print(json.dumps(result, indent=2))
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
