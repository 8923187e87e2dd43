"""Training-split audit at scale: images/s on 1 and 2 processes, cold and cached.

Generates ``--n`` skin-like ``--size``-px JPEGs into ``--root`` (``root/benign``, ``root/melanoma``; a dark ring in a
share of the melanoma images, so the audit has something to find), reads them through
:class:`lit_xai.datamodules.ImageFolderDataModule` (the loader a real run uses: JPEG decode at reduced scale, eval
transform) and audits the whole training split with :func:`lit_xai.shortcuts.audit.count_sample`:

* **1 process, cold**: one process audits everything (no cache);
* **2 processes, cold**: two OS processes each audit their shard (``shard=(rank, 2)``) at the same time, the parent
  merges the counts (:func:`~lit_xai.shortcuts.audit.merge_counts`) and checks them against the 1-process counts;
* **cached**: the same calls again (the cold runs filled a fresh cache; the cost is then fingerprinting the file
  list plus a few items, and the start-up).

Usage::

    python -m benchmarks audit_scale --root /tmp/audit_jpegs --n 10000 --size 512     # prints JSON

Never generate into the repository. ``--image-size`` is the datamodule's training size (JPEGs decode at reduced
scale close to twice that).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def generate(root: Path, n: int, size: int, seed: int = 0) -> None:
    """``n`` JPEGs (half benign, half melanoma; a dermatoscope ring in 40 % of the melanoma images, drawn by the
    registered inserter so the ring detector has something to count), skipped if already there."""
    import torch
    from PIL import Image

    from lit_xai.artifacts import insert_ring

    marker = root / f".generated_ring_{n}_{size}"
    if marker.exists():
        return
    rng = np.random.default_rng(seed)
    for c in ("benign", "melanoma"):
        (root / c).mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    ringed_count = 0
    for i in range(n):
        cls = "melanoma" if i % 2 else "benign"
        skin = np.array([0.85, 0.62, 0.5]) + rng.normal(0, 0.04, 3)
        cx, cy, r = rng.uniform(0.35, 0.65), rng.uniform(0.35, 0.65), rng.uniform(0.08, 0.2)
        lesion = np.exp(-(((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r**2)))[..., None]
        img = skin[None, None, :] * (1 - 0.55 * lesion) + rng.normal(0, 0.02, (size, size, 1))
        img = np.clip(img, 0, 1)
        if cls == "melanoma" and rng.random() < 0.4:
            chw = torch.from_numpy(img.transpose(2, 0, 1).astype(np.float32))[None]
            ringed, _ = insert_ring(chw, torch.Generator().manual_seed(int(rng.integers(2**31))))
            img = ringed[0].numpy().transpose(1, 2, 0)
            ringed_count += 1
        Image.fromarray((img * 255).astype(np.uint8)).save(root / cls / f"{i:06d}.jpg", quality=90)
    marker.write_text(str(ringed_count))


def _dataset(root: str, image_size: int):
    from lit_xai.artifacts.audit import eval_dataset
    from lit_xai.datamodules import ImageFolderDataModule

    dm = ImageFolderDataModule(root, image_size=image_size, val_fraction=0.001, test_fraction=0.001, num_workers=0)
    dm.setup("fit")
    return dm, eval_dataset(dm.dataset("train"), dm)


def _count(root: str, image_size: int, shard, cache: str | None, threads: int):
    import torch

    from lit_xai.artifacts.audit import count_sample

    torch.set_num_threads(threads)
    dm, ds = _dataset(root, image_size)
    start = time.perf_counter()
    counts = count_sample(
        ds, shard=shard, cache_dir=cache, detectors=("ring",), class_names=list(dm.class_names), task=str(dm.task),
        denormalize=dm.denormalize,
    )
    return counts.to_dict(), time.perf_counter() - start, len(ds)


def _worker(args, queue) -> None:
    queue.put(_count(*args))


def _two_processes(root: str, image_size: int, cache: str | None, threads: int) -> tuple[list, float]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    start = time.perf_counter()
    procs = [ctx.Process(target=_worker, args=((root, image_size, (r, 2), cache, threads), queue)) for r in range(2)]
    for p in procs:
        p.start()
    parts = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    return parts, time.perf_counter() - start  # includes both processes' start-up (imports, datamodule setup)


def run(root: str, image_size: int, threads: int) -> dict:
    """Cold runs fill a fresh cache; the same calls again are the cached runs."""
    from lit_xai.artifacts.audit import AuditCounts, merge_counts

    out: dict = {}
    caches = [tempfile.mkdtemp(prefix="lit_xai_audit_cache_") for _ in range(2)]
    try:
        one, t_cold, n = _count(root, image_size, None, caches[0], threads)
        _, t_hit, _ = _count(root, image_size, None, caches[0], threads)
        out["images"] = n
        out["1_process"] = {"cold_s": t_cold, "cold_images_per_s": n / t_cold, "cached_s": t_hit,
                            "cached_images_per_s": n / t_hit}  # fmt: skip
        two = {}
        for kind in ("cold", "cached"):
            parts, wall = _two_processes(root, image_size, caches[1], threads)
            audit = max(p[1] for p in parts)  # the slower rank's audit call alone
            two[f"{kind}_s"] = wall
            two[f"{kind}_images_per_s"] = n / wall
            two[f"{kind}_images_per_s_excluding_startup"] = n / audit
            merged = merge_counts([AuditCounts.from_dict(p[0]) for p in parts])
            two[f"{kind}_equals_1_process"] = merged.to_dict() == AuditCounts.from_dict(one).to_dict()
        out["2_processes"] = two
    finally:
        for cache in caches:
            shutil.rmtree(cache, ignore_errors=True)
    out["ring_count_by_class"] = one["artifacts"]["ring"]["count_by_class"]
    out["threads_per_process"] = threads
    out["cpu_count"] = os.cpu_count()
    out["load_average_after"] = os.getloadavg()
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default=str(Path(tempfile.gettempdir()) / "lit_xai_audit_jpegs"))
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--generate-only", action="store_true")
    args = parser.parse_args(argv)
    root = Path(args.root)
    if Path(__file__).resolve().parents[1] in root.resolve().parents:
        raise SystemExit(f"--root {root} is inside the repository; generate into /tmp")
    start = time.perf_counter()
    generate(root, args.n, args.size)
    gen_s = time.perf_counter() - start
    if args.generate_only:
        return {"generated_s": gen_s}
    result = {"n": args.n, "size": args.size, "image_size": args.image_size, "generate_s": gen_s}
    result.update(run(str(root), args.image_size, args.threads))
    marker = root / f".generated_ring_{args.n}_{args.size}"
    result["ring_drawn"] = int(marker.read_text() or -1) if marker.exists() else None  # vs ring_count_by_class
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
