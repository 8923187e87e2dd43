"""Shortcut correction on the demo, side by side in one run: no correction, each training-time method of
:class:`lit_xai.callbacks.ShortcutCorrection`, and P-ClArC after training.

    python -m benchmarks correction [--config configs/demo.yaml] [--seed 42] [--methods aclarc,rrclarc,rrr]
        [--pclarc_subspace 1] [--workdir DIR [--resume]] [--epochs 5 --data image_size=64 --data num_train=800]
        [--json out.json]

Trains the demo's model and data (``configs/demo.yaml``; the monitors are left out so the timing is the correction's
alone) once without and once with each training-time method, all from the same seed and all at once, each in its own
process (``--sequential``: one after the other), and applies P-ClArC post hoc
(:class:`lit_xai.correction.ProjectedModel`) to the uncorrected model. All models are the last epoch's; they are kept
in ``--workdir``, and ``--resume`` re-evaluates the rows already trained there (their times stay those of their own
run). ``--epochs`` and ``--data KEY=VALUE`` make a smaller proxy of the demo.

Columns, all on the test split (400 images of the demo):

* ``insertion``: the sham-corrected insertion effect exactly as :class:`~lit_xai.callbacks.ShortcutMonitor` measures
  it (:func:`lit_xai.shortcuts.measure_reliance`): change of P(melanoma) when the registered inserter draws a ring
  into clean benign images, minus the change a same-shaped neutral (sham) region causes (ideal 0; the issue's goal
  <= 0.1);
* ``removal``: the sham-corrected removal effect (ring inpainted away on ringed melanomas vs inpainting ring-shaped
  regions elsewhere; positive = relied on);
* ``rel_ratio``: relevance ratio on the ring (LRP of melanoma on ringed test images: share of relevance inside the
  ring mask / share of the area; 1 = no preference);
* ``acc_clean``: accuracy with every ring removed (exact re-render of the synthetic generator, ring off);
* ``acc_ben_ring``: accuracy on the benign test images with their ring drawn in (exact re-render, ring on; goal
  >= 0.9);
* ``ins_exact``: mean change of P(melanoma) on benign images between the exact ring-on and ring-off renders (no sham);
* ``train_s`` and ``time_x``: wall time of ``trainer.fit`` and its ratio to the uncorrected run's (the runs follow each
  other, so machine load can differ; P-ClArC's column is its CAV fit).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lightning.pytorch import Trainer, seed_everything  # noqa: E402

from lit_xai.artifacts import ReliancePool, measure_reliance  # noqa: E402
from lit_xai.callbacks import ShortcutCorrection  # noqa: E402
from lit_xai.cli import instantiate_datamodule  # noqa: E402
from lit_xai.contracts import read_item  # noqa: E402
from lit_xai.correction import CAVSettings, CorrectionBudget, PenaltySettings, ProjectedModel  # noqa: E402
from lit_xai.correction.posthoc import fit_split_cav  # noqa: E402
from lit_xai.explainers import build_explainer  # noqa: E402
from lit_xai.models import ImageClassifier  # noqa: E402


def ring_figures(model: torch.nn.Module, dm, split: str = "test") -> dict[str, float]:
    """Exact counterfactual ring on/off figures of ``model`` (re-renders of the synthetic generator: same lesion and
    background, the sample's own ring forced on / off)."""
    ds = dm.dataset(split)
    labels, rings = ds.generator.plan(split, ds.sample_ids)
    labels = torch.from_numpy(labels)
    probs = {}
    for ring in (False, True, None):
        images, _ = ds.generator.render(split, ds.sample_ids, ring=ring)
        x = dm.normalize(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0)
        with torch.no_grad():
            probs[ring] = torch.cat([model.eval()(x[i : i + 128]).softmax(1)[:, 1] for i in range(0, len(x), 128)])
    benign, melanoma = labels == 0, labels == 1
    ringed_mel = melanoma & torch.from_numpy(rings)
    return {
        "ins_exact": float((probs[True] - probs[False])[benign].mean()),
        "rem_exact": float((probs[False] - probs[True])[ringed_mel].mean()) if ringed_mel.any() else math.nan,
        "acc_clean": float(((probs[False] > 0.5).long() == labels).float().mean()),
        "acc_test": float(((probs[None] > 0.5).long() == labels).float().mean()),
        "acc_ben_ring": float((probs[True][benign] <= 0.5).float().mean()),
        "acc_ben_clean": float((probs[False][benign] <= 0.5).float().mean()),
    }


def reliance_pool(dm, split: str = "test") -> ReliancePool:
    """The split's un-augmented images as the monitor reads them (every item; the ring detector run once)."""
    ds = dm.dataset(split)
    items = [read_item(ds[i]) for i in range(len(ds))]
    inputs = torch.stack([torch.as_tensor(it["image"]).float() for it in items])
    labels = torch.tensor([int(it["target"]) for it in items])
    pool = ReliancePool(dm.denormalize(inputs).clamp(0, 1), inputs, labels, list(range(len(items))), split=split)
    pool.detect("ring")
    return pool


def monitor_figures(model: torch.nn.Module, dm, pool: ReliancePool, counterfactual: int, seed: int) -> dict:
    """Insertion and removal effects (sham-corrected) and the relevance ratio, as ShortcutMonitor computes them."""
    found = measure_reliance(
        model.eval(),
        pool,
        "ring",
        1,
        dm.normalize,
        explainer=build_explainer("lrp"),
        num_probes=8,
        num_counterfactual=counterfactual,
        seed=seed,
        resamples=200,
    )
    return {
        "insertion": found.get("counterfactual", {}).get("effect", math.nan),
        "removal": found.get("removal", {}).get("effect", math.nan),
        "rel_ratio": found.get("relevance_ratio", math.nan),
    }


def train(config: dict, dm, seed: int, callbacks: list) -> tuple[ImageClassifier, float]:
    seed_everything(seed, workers=True)
    init = dict(config["model"]["init_args"])
    model = ImageClassifier(**init, num_classes=dm.num_classes, class_names=list(dm.class_names))
    trainer = Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=config["trainer"]["max_epochs"],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=callbacks,
    )
    start = time.perf_counter()
    trainer.fit(model, dm)
    return model.eval(), time.perf_counter() - start


def corrections(args: argparse.Namespace) -> dict[str, tuple[str, ShortcutCorrection]]:
    """The training-time corrections compared: method -> (row name, a fresh callback)."""
    budget = CorrectionBudget(max_samples=args.max_samples, seed=args.seed)
    make = {
        "aclarc": lambda: ShortcutCorrection(method="aclarc", budget=budget),
        "rrclarc": lambda: ShortcutCorrection(
            method="rrclarc", cav=CAVSettings(layer=args.layer), budget=budget,
            penalty=PenaltySettings(weight=args.rrclarc_weight, subspace=args.rrclarc_subspace),
        ),
        "rrr": lambda: ShortcutCorrection(
            method="rrr", cav=CAVSettings(layer=args.layer), penalty=PenaltySettings(weight=args.rrr_weight),
            budget=CorrectionBudget(seed=args.seed),  # RRR's CAV sample: the default size, as before
        ),
    }
    names = {
        "aclarc": "A-ClArC",
        "rrclarc": f"RR-ClArC l={args.rrclarc_weight:g}" + (f" k={k}" if (k := args.rrclarc_subspace) > 1 else ""),
        "rrr": f"RRR l={args.rrr_weight:g}",
    }
    unknown = set(args.methods) - set(make)
    if unknown:
        raise SystemExit(f"unknown methods {sorted(unknown)}; choose from {sorted(make)}")
    return {m: (names[m], make[m]()) for m in args.methods}


def run_one(args: argparse.Namespace, config: dict, dm, method: str) -> dict[str, Any]:
    """Train one row (``"none"`` or a method), save the model, return its training time."""
    callbacks = [] if method == "none" else [corrections(args)[method][1]]
    model, seconds = train(config, dm, args.seed, callbacks)
    torch.save(model.state_dict(), Path(args.workdir) / f"{method}.pt")
    record: dict[str, Any] = {"train_s": seconds}
    if callbacks and callbacks[0].history:
        record["last_epoch"] = callbacks[0].history[-1]
    return record


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--methods", default="aclarc,rrclarc,rrr", type=lambda s: [m for m in s.split(",") if m])
    parser.add_argument("--layer", default="net.layer3", help="RR-ClArC / RRR layer")
    parser.add_argument("--rrclarc_weight", type=float, default=1.0)
    parser.add_argument("--rrr_weight", type=float, default=10.0)
    parser.add_argument("--rrclarc_subspace", type=int, default=1, help="RR-ClArC along a k-dim paired subspace")
    parser.add_argument("--max_samples", type=int, default=256, help="images per CAV / rate estimate")
    parser.add_argument("--pclarc_layer", default="net.layer3")
    parser.add_argument(
        "--pclarc_subspace", default="1", type=lambda s: [int(k) for k in s.split(",")],
        help="P-ClArC rows: dimension(s) of the projected artifact subspace, e.g. 1,4",
    )
    parser.add_argument("--counterfactual", type=int, default=128, help="benign images of the insertion test")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each training")
    parser.add_argument(
        "--sequential", action="store_true", help="train one after the other (default: all at once, same load)"
    )
    parser.add_argument("--workdir", default=None, help="where the trained models go (default: a temporary folder)")
    parser.add_argument(
        "--resume", action="store_true", help="keep the rows already trained in --workdir (their times stay theirs)"
    )
    parser.add_argument("--only", default=None, help=argparse.SUPPRESS)  # a child process: train this row only
    parser.add_argument("--epochs", type=int, default=None, help="override trainer.max_epochs (a smaller proxy)")
    parser.add_argument(
        "--data", action="append", default=[], metavar="KEY=VALUE",
        help="override a data init_arg, e.g. --data image_size=64 --data num_train=800 (a smaller proxy)",
    )
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows_to_train = ["none", *args.methods]
    corrections(args)  # unknown methods fail before anything trains
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="lit_xai_correction_"))
    workdir.mkdir(parents=True, exist_ok=True)
    args.workdir = str(workdir)
    with open(args.config) as fh:
        config = yaml.safe_load(fh)
    if args.epochs is not None or args.data:
        if args.epochs is not None:
            config["trainer"]["max_epochs"] = args.epochs
        for pair in args.data:
            key, _, value = pair.partition("=")
            config["data"]["init_args"][key] = yaml.safe_load(value)
        if args.only is None:  # the parent writes the proxy's config once; the children read it
            (workdir / "config.yaml").write_text(yaml.safe_dump(config))
        args.config = str(workdir / "config.yaml")
    dm = instantiate_datamodule(args.config)
    dm.setup("fit")
    dm.setup("test")
    if args.only is not None:
        Path(args.json).write_text(json.dumps(run_one(args, config, dm, args.only)))
        return
    records: dict[str, dict[str, Any]] = {}
    if args.resume:
        for method in rows_to_train:
            if (workdir / f"{method}.pt").exists() and (workdir / f"{method}.json").exists():
                records[method] = {**json.loads((workdir / f"{method}.json").read_text()), "resumed": True}
    todo = [m for m in rows_to_train if m not in records]
    if args.sequential:
        for method in todo:
            records[method] = run_one(args, config, dm, method)
            (workdir / f"{method}.json").write_text(json.dumps(records[method]))
    else:
        # every row in its own process, all at once: the machine's load hits them alike, so time_x is fair
        argv = [a for a in sys.argv[1:] if a != "--resume"]
        children = {
            method: subprocess.Popen(
                [sys.executable, __file__, *argv, "--workdir", str(workdir), "--only", method,
                 "--json", str(workdir / f"{method}.json")]
            )
            for method in todo
        }
        for method, child in children.items():
            if child.wait() != 0:
                raise SystemExit(f"training {method!r} failed (exit {child.returncode})")
            records[method] = json.loads((workdir / f"{method}.json").read_text())
    pool = reliance_pool(dm)

    def load(method: str) -> ImageClassifier:
        model = ImageClassifier(**config["model"]["init_args"], num_classes=dm.num_classes)
        model.load_state_dict(torch.load(workdir / f"{method}.pt"))
        return model.eval()

    def figures(model: torch.nn.Module) -> dict[str, Any]:
        return {**monitor_figures(model, dm, pool, args.counterfactual, args.seed), **ring_figures(model, dm)}

    names = {"none": "uncorrected", **{m: name for m, (name, _) in corrections(args).items()}}
    base_s = records["none"]["train_s"]
    rows: dict[str, dict[str, Any]] = {}
    for method in rows_to_train:
        seconds = records[method]["train_s"]
        rows[names[method]] = {**figures(load(method)), "train_s": seconds, "time_x": seconds / base_s}

    base = load("none")
    train_ds = dm.dataset("train")
    train_ds.transform = dm.transform(train=False)  # the CAV from un-augmented training images
    for k in args.pclarc_subspace:
        start = time.perf_counter()
        cav = fit_split_cav(
            base, train_ds, args.pclarc_layer, "field", to01=lambda x: dm.denormalize(x).clamp(0, 1), max_samples=1024,
            seed=args.seed, subspace=k, from01=dm.normalize,
        )
        fit_s = time.perf_counter() - start
        name = f"P-ClArC {args.pclarc_layer.split('.')[-1]}" + (f" k={k}" if k > 1 else "")
        rows[name] = {**figures(ProjectedModel(base, cav)), "train_s": fit_s, "cav_auc": cav.separability}
    train_ds.transform = dm.transform(train=True)

    keys = ["insertion", "removal", "rel_ratio", "acc_clean", "acc_ben_ring", "ins_exact", "train_s", "time_x"]
    mode = "one after the other" if args.sequential else "all at once"
    print(f"seed {args.seed}, {args.config}, {config['trainer']['max_epochs']} epochs, trainings {mode} with "
          f"{args.threads} torch thread(s) each, insertion test on {args.counterfactual} benign test images")
    print(f"{'model':<30}" + "".join(f"{k:>13}" for k in keys))
    for name, row in rows.items():
        print(f"{name:<30}" + "".join(f"{row.get(k, math.nan):>13.3f}" for k in keys))
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows, "records": records}, indent=2))


if __name__ == "__main__":
    main()
