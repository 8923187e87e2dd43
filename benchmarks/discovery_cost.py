"""Cost of the ShortcutMonitor's discovery plus candidate tests against an epoch of training (issue 32, item 4).

Side by side in one process, interleaved (:mod:`benchmarks.timing`), after a warm-up:

* ``epoch``: one more training epoch of a copy of the model (``Trainer.fit``, training and validation loops, no
  callbacks, no logger: what the epoch costs without the monitor);
* ``discover``: :meth:`lit_xai.shortcuts.ShortcutWatch.discover` of the monitor (LRP maps and CRP concept relevances
  of the labelled validation pool, clustered per class);
* ``verify``: :meth:`lit_xai.shortcuts.ShortcutWatch.verify` of that discovery (each suspicious candidate built into an
  artifact and put through the sham-controlled insertion and removal tests).

Settings:

* ``demo``: ``configs/demo.yaml``'s model, data and ShortcutMonitor (tiny_resnet, 1600 training images of 96 px, pool
  of 256), trained ``--epochs`` epochs first (default 4: the ring is learned and its discovered twin is verified);
* ``isic``: ``configs/melanoma_resnet50.yaml``'s model (ResNet-50, 224 px, batch 32) on synthetic stand-in images
  (the ISIC data is not on this machine): the epoch is ``--isic-train-images`` (25,000: the ISIC 2020 training
  split's size) images at the measured time of ``--isic-steps`` training steps, the discovery runs on a pool of
  ``--isic-pool`` images (the monitor's default pool is 256: the figure scales with the pool, LRP and CRP are linear
  in it) and every class's top candidate is forced through the tests (an untrained model has no suspicious
  candidate; a forced test is what a verified one costs).

The ratio quoted is ``(discover + verify) / epoch`` of one discovery measurement, min over repeats and the median of
per-repeat ratios; the monitor runs discovery every 2nd measured epoch by default, so the cost per epoch is half.

Run:
    python -m benchmarks discovery_cost                       # the demo, 3 repeats (about 3 min, 1 thread)
    python -m benchmarks discovery_cost --setting isic --repeats 2
    python -m benchmarks discovery_cost --json out.json
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.timing import ratio, summary, time_interleaved, write_json  # noqa: E402


def _demo(epochs: int, root: str) -> tuple:
    from lightning.pytorch import Trainer, seed_everything

    from lit_xai.callbacks import ShortcutBudget, ShortcutMonitor
    from lit_xai.datamodules import SyntheticShortcutDataModule
    from lit_xai.explainers import LRP
    from lit_xai.models import ImageClassifier

    seed_everything(42)
    dm = SyntheticShortcutDataModule(
        num_train=1600, num_val=400, num_test=400, image_size=96, batch_size=64, ring_fraction_benign=0.0,
        ring_fraction_melanoma=0.3,
    )  # fmt: skip
    model = ImageClassifier(
        "tiny_resnet", num_classes=2, class_names=list(dm.class_names), lr=3e-3, optimizer="adamw", scheduler="cosine"
    )
    monitor = ShortcutMonitor(
        detectors=["ring"], explainer=LRP(composite="epsilon_gamma_box"),
        budget=ShortcutBudget(audit_max_samples=800, pool_size=256), verbose=False,
    )  # fmt: skip
    trainer = Trainer(
        max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[monitor], default_root_dir=root,
    )  # fmt: skip
    trainer.fit(model, dm)

    def epoch() -> None:
        Trainer(
            max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=root,
        ).fit(copy.deepcopy(model), dm)  # fmt: skip

    return model, monitor, epoch, {"train_images": 1600, "val_images": 400, "pool": len(monitor.watch.pool)}


def _isic(steps: int, train_images: int, pool_size: int, root: str) -> tuple:
    from lit_xai.contracts import Probes, resolve_contract
    from lit_xai.datamodules import SyntheticShortcutDataModule
    from lit_xai.models import ImageClassifier
    from lit_xai.shortcuts import ShortcutBudget, ShortcutWatch

    torch.manual_seed(0)
    dm = SyntheticShortcutDataModule(
        num_train=32 * steps, num_val=pool_size, num_test=8, image_size=224, batch_size=32, seed=0,
        ring_fraction_melanoma=0.3,
    )  # fmt: skip
    dm.setup("fit")
    model = ImageClassifier("resnet50", num_classes=2, class_names=list(dm.class_names), lr=0.01, optimizer="sgd")
    val = dm.dataset("val")
    items = [val[i] for i in range(len(val))]
    images = torch.stack([it["image"] for it in items]).float()
    targets = torch.stack([it["target"] for it in items]).long()
    watch = ShortcutWatch(("ring",), budget=ShortcutBudget(pool_size=pool_size))
    contract = resolve_contract(None, model, images[:2], targets[:2], dm)
    ids = list(range(len(items)))
    probes = Probes(images, targets, ids, torch.zeros(len(ids), dtype=torch.bool))
    watch.pool = watch.read_pool(probes, ids, contract.to01, "val")
    loader = dm.train_dataloader()
    batches = [next(iter(loader)) for _ in range(1)] * steps
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    net = copy.deepcopy(model)

    def epoch() -> None:  # ``steps`` training steps; scaled to ``train_images`` below
        net.train()
        for batch in batches:
            loss = torch.nn.functional.cross_entropy(net(batch["image"]), batch["target"].long())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        net.eval()

    model.eval()

    class _Monitor:  # the two attributes the timing needs, as the callback has them
        pass

    monitor = _Monitor()
    monitor.watch, monitor.contract = watch, contract
    return model, monitor, epoch, {"train_images": train_images, "steps_timed": steps, "batch": 32, "pool": pool_size}


def measure(setting: str, repeats: int, epochs: int, steps: int, train_images: int, pool: int) -> dict:
    with tempfile.TemporaryDirectory() as root:
        if setting == "demo":
            model, monitor, epoch, info = _demo(epochs, root)
        else:
            model, monitor, epoch, info = _isic(steps, train_images, pool, root)
        watch, contract = monitor.watch, monitor.contract
        found = {}
        force = setting == "isic"

        def discover() -> None:
            found.clear()
            found.update(watch.discover(model))
            if force:  # every class's top candidate through the tests: what a verified candidate costs
                for c in found["candidates"]:
                    c.suspicious = c.rank == 0

        def verify() -> None:
            found["verified"] = watch.verify(contract, model, found)

        times = time_interleaved({"epoch": epoch, "discover": discover, "verify": verify}, repeats=repeats)
    scale = 1.0
    if setting == "isic":  # the timed steps stand for the whole epoch
        scale = info["train_images"] / (info["batch"] * info["steps_timed"])
        times["epoch"] = [t * scale for t in times["epoch"]]
    both = [d + v for d, v in zip(times["discover"], times["verify"])]
    out = {
        "setting": setting,
        **info,
        "epoch_scale": scale,
        "seconds": {name: summary(t) for name, t in times.items()} | {"discover+verify": summary(both)},
        "ratio_discovery_to_epoch": ratio(both, times["epoch"]),
        "ratio_discover_to_epoch": ratio(times["discover"], times["epoch"]),
        "ratio_verify_to_epoch": ratio(times["verify"], times["epoch"]),
        "candidates_tested": len(found.get("verified", [])),
        "suspicious": sum(bool(c.suspicious) for c in found.get("candidates", [])),
        "kept_per_image": _kept(found),
        "threads": torch.get_num_threads(),
    }
    return out


def _kept(found: dict) -> dict:
    """What a discovery holds per pool image while it runs (dropped after the measurement, except the records)."""
    heat = found.get("heat")
    if heat is None:
        return {}
    n = len(heat)
    return {
        "heatmap_bytes": int(heat[0].numel() * heat.element_size()),
        "clustered_features": 16 * 16,
        "note": f"{n} maps of {tuple(heat.shape[1:])} float32 while discovery and the tests run; after it, per "
        "verified candidate 8 member rows and one (H, W) bool mask (the verdict picture), and the JSON records",
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", choices=["demo", "isic"], default="demo")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=4, help="demo: epochs trained before timing")
    parser.add_argument("--isic-steps", type=int, default=4)
    parser.add_argument("--isic-train-images", type=int, default=25000)
    parser.add_argument("--isic-pool", type=int, default=64)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    out = measure(args.setting, args.repeats, args.epochs, args.isic_steps, args.isic_train_images, args.isic_pool)
    s, r = out["seconds"], out["ratio_discovery_to_epoch"]
    print(f"setting {out['setting']} ({args.threads} thread, {args.repeats} interleaved repeats after a warm-up; "
          f"{time.perf_counter() - t0:.0f} s in all)")  # fmt: skip
    for name in ("epoch", "discover", "verify", "discover+verify"):
        print(f"  {name:16s} min {s[name]['min']:8.2f} s  median {s[name]['median']:8.2f} s")
    print(f"  (discover + verify) / epoch: min {r['min']:.3f}, median {r['median']:.3f}; "
          f"discover alone {out['ratio_discover_to_epoch']['min']:.3f}, verify alone "
          f"{out['ratio_verify_to_epoch']['min']:.3f}; {out['candidates_tested']} candidates tested")  # fmt: skip
    print(f"  kept per image: {out['kept_per_image']}")
    if args.json is not None:
        write_json(args.json, out, suite="discovery_cost")


if __name__ == "__main__":
    main()
