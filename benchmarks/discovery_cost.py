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

``--before DIR`` (demo): the same discovery and tests run by another checkout of the package (``DIR``: an extracted
``git archive`` or a worktree of an earlier commit) on the same trained model, pool and previous discovery, saved once
and loaded by a subprocess per round that has ``DIR`` first on its path, warms up and times one ``discover`` and one
``verify`` itself (its start and load are not timed). The rounds interleave it with the others, so ``before`` and
this checkout's figures come from one session under one load; its candidates and verdicts are printed beside this
checkout's, which must be the same.

Run:
    python -m benchmarks discovery_cost                       # the demo, 3 repeats (about 3 min, 1 thread)
    python -m benchmarks discovery_cost --before /tmp/before  # + the same work by an earlier checkout
    python -m benchmarks discovery_cost --profile             # + one discover + verify under cProfile
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

#: configs/demo.yaml's data
DEMO_DATA = {
    "num_train": 1600, "num_val": 400, "num_test": 400, "image_size": 96, "batch_size": 64,
    "ring_fraction_benign": 0.0, "ring_fraction_melanoma": 0.3,
}  # fmt: skip


def _demo(epochs: int, root: str) -> tuple:
    from lightning.pytorch import Trainer, seed_everything

    from lit_xai.callbacks import ShortcutBudget, ShortcutMonitor
    from lit_xai.datamodules import SyntheticShortcutDataModule
    from lit_xai.explainers import LRP
    from lit_xai.models import ImageClassifier

    seed_everything(42)
    dm = SyntheticShortcutDataModule(**DEMO_DATA)
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


#: run by ``--before``'s subprocess with the other checkout first on ``sys.path``: argv = state file, threads
_TIME_SAVED = """
import json, sys, time, torch
torch.set_num_threads(int(sys.argv[2]))
from lit_xai.contracts import resolve_contract
from lit_xai.datamodules import SyntheticShortcutDataModule
from lit_xai.explainers import LRP
from lit_xai.models import ImageClassifier
from lit_xai.shortcuts import ShortcutBudget, ShortcutWatch
from lit_xai.shortcuts.monitoring import ReliancePool
state = torch.load(sys.argv[1], weights_only=False)
model = ImageClassifier(**state["model_args"])
model.load_state_dict(state["model"])
model.eval()
watch = ShortcutWatch(("ring",), explainer=LRP(composite="epsilon_gamma_box"), budget=ShortcutBudget(**state["budget"]))
def pool(p):
    if p is None:
        return None
    out = ReliancePool(p["images01"], p["inputs"], p["labels"], p["ids"], p["roi_masks"], split=p["split"])
    out.flags, out.masks = dict(p["flags"]), dict(p["masks"])
    return out
watch.pool, watch.train_pool, watch.audit_flags = pool(state["pool"]), pool(state["train_pool"]), state["audit_flags"]
contract = resolve_contract(None, model, watch.pool.inputs[:2], watch.pool.labels[:2],
                            SyntheticShortcutDataModule(**state["data_args"]))
seconds = {}
for round_ in range(2):  # a warm-up round, then the timed one
    watch._previous = dict(state["previous"])
    start = time.perf_counter()
    found = watch.discover(model)
    seconds["discover"] = time.perf_counter() - start
    start = time.perf_counter()
    found["verified"] = watch.verify(contract, model, found)
    seconds["verify"] = time.perf_counter() - start
cands = [[c.class_index, c.rank, round(float(c.score), 6), bool(c.suspicious)] for c in found["candidates"]]
verified = [[v["label"], v["twin"], v["evidence"].get("counterfactual", {}).get("effect")] for v in found["verified"]]
print("RESULT " + json.dumps({"seconds": seconds, "candidates": cands, "verified": verified}))
"""


def _pool_state(pool) -> dict | None:
    if pool is None:
        return None
    return {
        "images01": pool.images01, "inputs": pool.inputs, "labels": pool.labels, "ids": list(pool.ids),
        "roi_masks": pool.roi_masks, "split": pool.split, "flags": dict(pool.flags), "masks": dict(pool.masks),
    }  # fmt: skip


def _before_call(before: Path, model, watch, root: str, threads: int) -> tuple:
    """A callable running the saved discovery work by the checkout ``before`` in a subprocess, and its results."""
    import json
    import os
    import subprocess

    path = Path(root) / "before_state.pt"
    torch.save(
        {
            "model": model.state_dict(),
            "model_args": {"architecture": "tiny_resnet", "num_classes": 2, "class_names": list(model.class_names),
                           "lr": 3e-3, "optimizer": "adamw", "scheduler": "cosine"},
            "data_args": dict(DEMO_DATA),
            "budget": {"audit_max_samples": 800, "pool_size": 256},
            "pool": _pool_state(watch.pool), "train_pool": _pool_state(watch.train_pool),
            "audit_flags": dict(watch.audit_flags), "previous": dict(watch._previous),
        },
        path,
    )  # fmt: skip
    results: list[dict] = []
    env = dict(os.environ, PYTHONPATH=str(before))

    def run() -> None:
        proc = subprocess.run(
            [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(before)!r})\n" + _TIME_SAVED, str(path),
             str(threads)], capture_output=True, text=True, env=env, cwd=root,
        )  # fmt: skip
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if proc.returncode != 0 or line is None:
            raise RuntimeError(f"--before {before} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
        results.append(json.loads(line[len("RESULT ") :]))

    return run, results


#: what --profile reports: (label, a function's file suffix, its name)
PARTS: list[tuple[str, str, str]] = [
    ("discover (all)", "shortcuts/watch.py", "discover"),
    ("  LRP maps of the pool (explainer call)", "explainers/base.py", "__call__"),
    ("    of it: conservation guard's bias-free pass (confirm)", "explainers/conservation.py", "confirm"),
    ("  CRP concept relevances (concepts)", "shortcuts/watch.py", "concepts"),
    ("  clustering (discover_candidates)", "shortcuts/discovery.py", "discover_candidates"),
    ("verify (all)", "shortcuts/watch.py", "verify"),
    ("  artifact from the members (candidate_artifact)", "shortcuts/candidate_artifact.py", "candidate_artifact"),
    ("  causal tests (measure_reliance)", "shortcuts/monitoring.py", "measure_reliance"),
    ("    of it: harmonic fill (remove_ring)", "artifacts/inserters.py", "remove_ring"),
    ("    of it: forward passes (paired_shift)", "shortcuts/reliance.py", "paired_shift"),
]


def _profile(discover, verify) -> dict[str, float]:
    """Cumulative seconds of :data:`PARTS` in one more ``discover(); verify()`` under cProfile."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.runcall(lambda: (discover(), verify()))
    stats = pstats.Stats(profiler).stats  # {(file, line, name): (cc, nc, tt, ct, callers)}
    return {
        label: sum(v[3] for (f, _, n), v in stats.items() if f.endswith(file) and n == name)
        for label, file, name in PARTS
    }


def measure(
    setting: str,
    repeats: int,
    epochs: int,
    steps: int,
    train_images: int,
    pool: int,
    before: Path | None = None,
    profile: bool = False,
) -> dict:
    with tempfile.TemporaryDirectory() as root:
        if setting == "demo":
            model, monitor, epoch, info = _demo(epochs, root)
        else:
            model, monitor, epoch, info = _isic(steps, train_images, pool, root)
        watch, contract = monitor.watch, monitor.contract
        found = {}
        force = setting == "isic"
        calls = {}
        before_results: list[dict] = []
        if before is not None:
            calls["before"], before_results = _before_call(before, model, watch, root, torch.get_num_threads())

        def discover() -> None:
            found.clear()
            found.update(watch.discover(model))
            if force:  # every class's top candidate through the tests: what a verified candidate costs
                for c in found["candidates"]:
                    c.suspicious = c.rank == 0

        def verify() -> None:
            found["verified"] = watch.verify(contract, model, found)

        times = time_interleaved({"epoch": epoch, "discover": discover, "verify": verify, **calls}, repeats=repeats)
        parts = _profile(discover, verify) if profile else {}
    if before is not None:  # the subprocess's own seconds of its timed round (warm-up dropped) replace its wall time
        del times["before"]
        kept = before_results[-repeats:]
        times["before_discover"] = [r["seconds"]["discover"] for r in kept]
        times["before_verify"] = [r["seconds"]["verify"] for r in kept]
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
    if profile:
        out["profile_cumulative_s"] = parts
    if before is not None:
        before_both = [d + v for d, v in zip(times["before_discover"], times["before_verify"])]
        out["before"] = str(before)
        out["seconds"]["before_discover+verify"] = summary(before_both)
        out["ratio_before_discovery_to_epoch"] = ratio(before_both, times["epoch"])
        out["ratio_discovery_to_before"] = ratio(both, before_both)
        out["before_result"] = before_results[-1]
        out["result"] = {
            "candidates": [[c.class_index, c.rank, round(float(c.score), 6), bool(c.suspicious)]
                           for c in found.get("candidates", [])],
            "verified": [[v["label"], v["twin"], v["evidence"].get("counterfactual", {}).get("effect")]
                         for v in found.get("verified", [])],
        }  # fmt: skip
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
    parser.add_argument("--before", type=Path, default=None, help="demo: another checkout, timed on the same work")
    parser.add_argument("--profile", action="store_true", help="one more discover + verify under cProfile")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.before is not None and (args.setting != "demo" or not (args.before / "lit_xai").is_dir()):
        parser.error("--before DIR needs --setting demo and the root of another checkout (with lit_xai/)")
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    out = measure(
        args.setting, args.repeats, args.epochs, args.isic_steps, args.isic_train_images, args.isic_pool,
        None if args.before is None else args.before.resolve(), args.profile,
    )  # fmt: skip
    s, r = out["seconds"], out["ratio_discovery_to_epoch"]
    print(f"setting {out['setting']} ({args.threads} thread, {args.repeats} interleaved repeats after a warm-up; "
          f"{time.perf_counter() - t0:.0f} s in all)")  # fmt: skip
    for name in ("epoch", "discover", "verify", "discover+verify"):
        print(f"  {name:16s} min {s[name]['min']:8.2f} s  median {s[name]['median']:8.2f} s")
    print(f"  (discover + verify) / epoch: min {r['min']:.3f}, median {r['median']:.3f}; "
          f"discover alone {out['ratio_discover_to_epoch']['min']:.3f}, verify alone "
          f"{out['ratio_verify_to_epoch']['min']:.3f}; {out['candidates_tested']} candidates tested")  # fmt: skip
    print(f"  kept per image: {out['kept_per_image']}")
    for label, secs in out.get("profile_cumulative_s", {}).items():
        print(f"  profile {label:58s} {secs:6.2f} s")
    if "before" in out:
        b, rb = out["seconds"]["before_discover+verify"], out["ratio_before_discovery_to_epoch"]
        r2 = out["ratio_discovery_to_before"]
        print(f"  --before {out['before']}: discover+verify min {b['min']:.2f} s, median {b['median']:.2f} s; "
              f"(discover + verify) / epoch min {rb['min']:.3f}, median {rb['median']:.3f}")  # fmt: skip
        print(f"  this checkout / before, discover+verify: min {r2['min']:.3f}, median {r2['median']:.3f}")
        same = out["result"] == {k: out["before_result"][k] for k in ("candidates", "verified")}
        print(f"  the same candidates and verdicts as before: {same}")
        if not same:
            print(f"    this checkout: {out['result']}\n    before: {out['before_result']}")
    if args.json is not None:
        write_json(args.json, out, suite="discovery_cost")


if __name__ == "__main__":
    main()
