"""Is the data loader the bottleneck? Loader images/s vs ResNet-50 training images/s, side by side in one run.

The loader reads large generated JPEG photographs (3000 x 2000 landscape, 2000 x 3000 portrait, a few 6000 x 4000
with an EXIF orientation) through :class:`lit_xai.datamodules.ImageFolderDataModule` at 224 x 224 with the default
training augmentation and 2 workers. Training is ResNet-50 (torchvision, random init) forward + backward + SGD step
on batches of 16 at 224 x 224. Both are measured in the same process, one after the other; numbers are the median
over repeats. Goal: loader / training >= 1.5, so the loader is not the bottleneck.

Run::

    python -m benchmarks loader_throughput            # full (about 2-4 minutes on 2 cores)
    python -m benchmarks loader_throughput --quick    # fewer images and steps
    python -m benchmarks loader_throughput --output loader.json

``measure(quick)`` returns the same numbers as a dict (for ``python -m benchmarks speed``).

Measured 2026-11-27 on the shared 2-core machine (other agents busy), full run, medians: loader 8.3 images/s
(full-size decode without ``draft``: 1.9), ResNet-50 training 0.4 images/s, ratio 19.4. Quick run: 11.5 vs 0.6,
ratio 19.0. Both sides slow down under load; the ratio is what matters.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

__all__ = ["measure", "write_photos"]

IMAGE_SIZE = 224
BATCH_SIZE = 16
NUM_WORKERS = 2


def write_photos(folder: Path, count: int, seed: int = 0) -> dict[str, int]:
    """Write ``count`` large JPEG "photographs" into ``folder/{benign,malignant}/``; returns counts per size."""
    rng = np.random.default_rng(seed)
    sizes = [(3000, 2000), (2000, 3000), (3000, 2000), (6000, 4000)]
    made: dict[str, int] = {}
    for i in range(count):
        w, h = sizes[i % len(sizes)]
        # smooth colour field + blob + fine noise: compresses like a real photo (not like flat colour or pure noise)
        yy, xx = np.mgrid[0:h:8, 0:w:8].astype(np.float32)
        base = np.stack([200 - 40 * yy / h, 150 + 30 * xx / w, 120 + 20 * np.sin(xx / 97)], -1)
        blob = ((yy - h / 2) ** 2 + (xx - w / 2) ** 2) < (0.2 * min(h, w)) ** 2
        base[blob] *= 0.5
        small = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).resize((w, h), Image.Resampling.BILINEAR)
        pixels = np.asarray(small).astype(np.int16) + rng.integers(-6, 7, (h, w, 1), dtype=np.int16)
        im = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        cls = ("benign", "malignant")[i % 2]
        (folder / cls).mkdir(parents=True, exist_ok=True)
        exif = Image.Exif()
        if (w, h) == (6000, 4000):
            exif[0x0112] = 6  # camera held upright: decoded portrait
        im.save(folder / cls / f"photo_{i}.jpg", quality=92, exif=exif)
        made[f"{w}x{h}"] = made.get(f"{w}x{h}", 0) + 1
    return made


def _loader_rate(folder: Path, batches: int, repeats: int, draft: bool = True) -> dict[str, Any]:
    from lit_xai.datamodules import ImageFolderDataModule

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dm = ImageFolderDataModule(
            str(folder),
            image_size=IMAGE_SIZE,
            batch_size=BATCH_SIZE,
            num_workers=NUM_WORKERS,
            val_fraction=0.0,
            test_fraction=0.0,
        )
        reader = dm.dataset("train").reader  # index outside the timed region
        if not draft:
            reader.size_hint = None  # decode the full-size original, as a plain PIL loader would
    rates = []
    for _ in range(repeats):
        loader = dm.train_dataloader()
        it = iter(loader)
        next(it)  # worker start-up and the first batch are not steady state
        start, seen = time.perf_counter(), 0
        for _ in range(batches):
            try:
                batch = next(it)
            except StopIteration:
                it = iter(loader)
                batch = next(it)
            seen += len(batch["image"])
        rates.append(seen / (time.perf_counter() - start))
        del it
    return {"images_per_s": statistics.median(rates), "min": min(rates), "max": max(rates), "repeats": rates}


def _train_rate(steps: int, repeats: int) -> dict[str, Any]:
    from torchvision.models import resnet50

    torch.manual_seed(0)
    model = resnet50(weights=None, num_classes=2).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(BATCH_SIZE, 3, IMAGE_SIZE, IMAGE_SIZE)
    y = torch.randint(0, 2, (BATCH_SIZE,))

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    step()  # warm-up (allocations, oneDNN kernels)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        rates.append(steps * BATCH_SIZE / (time.perf_counter() - start))
    return {"images_per_s": statistics.median(rates), "min": min(rates), "max": max(rates), "repeats": rates}


def measure(quick: bool = False) -> dict[str, Any]:
    """Loader and training throughput in one run; ``ratio`` = loader / training images per second."""
    n_images = 24 if quick else 48
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        t0 = time.perf_counter()
        sizes = write_photos(folder, n_images)
        write_s = time.perf_counter() - t0
        loader = _loader_rate(folder, batches=4 if quick else 12, repeats=2 if quick else 3)
        full = _loader_rate(folder, batches=2 if quick else 4, repeats=1 if quick else 2, draft=False)
    train = _train_rate(steps=2 if quick else 4, repeats=2 if quick else 3)
    ratio = loader["images_per_s"] / train["images_per_s"]
    return {
        "image_size": IMAGE_SIZE,
        "batch_size": BATCH_SIZE,
        "num_workers": NUM_WORKERS,
        "photos": sizes,
        "photo_write_s": write_s,
        "loader": loader,
        "loader_full_decode": full,
        "train_resnet50": train,
        "ratio": ratio,
        "goal": 1.5,
        "loader_is_bottleneck": ratio < 1.5,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "note": "shared machine: other processes use the same cores; median over repeats, measured side by side",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--output", default="loader_throughput.json")
    args = parser.parse_args(argv)
    result = measure(args.quick)
    print(f"{'what':<44} {'images/s (median)':>18} {'min':>8} {'max':>8}")
    rows = (
        ("loader: JPEG photos -> 224 px, aug, 2 workers", "loader"),
        ("same loader, full-size decode (no draft)", "loader_full_decode"),
        ("ResNet-50 train step, batch 16, 224 px", "train_resnet50"),
    )
    for name, key in rows:
        r = result[key]
        print(f"{name:<44} {r['images_per_s']:>18.1f} {r['min']:>8.1f} {r['max']:>8.1f}")
    verdict = "loader is NOT the bottleneck" if not result["loader_is_bottleneck"] else "loader IS the bottleneck"
    print(f"ratio loader / training = {result['ratio']:.1f} (goal >= {result['goal']}): {verdict}")
    Path(args.output).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
