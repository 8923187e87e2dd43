"""Shortcut correction on the demo, side by side: no correction, RR-ClArC during training, P-ClArC after training.

    python benchmarks/correction.py [--config configs/demo.yaml] [--seed 42] [--weight 1.0] [--json out.json]

Trains the demo's model and data (``configs/demo.yaml``; the monitors are left out so the timing is the callback's
alone) once without and once with :class:`lit_xai.callbacks.ShortcutCorrection`, both from the same seed, and applies
P-ClArC (:class:`lit_xai.correction.ProjectedModel`) to the uncorrected model. All models are the last epoch's.

Figures on the test split (exact counterfactual renders of the synthetic generator: same lesion and background,
ring forced on / off, as ``scripts/shortcut_report.py``):

* ``insertion_shift``: mean change of P(melanoma) on benign images when their ring is drawn (ideal 0);
* ``removal_shift``: mean change of P(melanoma) on melanomas when their ring is removed (ideal 0);
* ``acc_clean``: accuracy with every ring removed; ``acc_test``: accuracy on the split as it is;
* ``acc_benign_ring``: accuracy on benign images with the ring drawn in (the shortcut's victims; ideal = the clean
  benign accuracy);
* ``train_s``: wall time of ``trainer.fit``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lightning.pytorch import Trainer, seed_everything  # noqa: E402

from lit_xai.callbacks import ShortcutCorrection  # noqa: E402
from lit_xai.cli import instantiate_datamodule  # noqa: E402
from lit_xai.correction import ProjectedModel  # noqa: E402
from lit_xai.correction.posthoc import fit_split_cav  # noqa: E402
from lit_xai.models import ImageClassifier  # noqa: E402


def ring_figures(model: torch.nn.Module, dm, split: str = "test") -> dict[str, float]:
    """Counterfactual ring on/off figures of ``model`` (see the module docstring)."""
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
        "insertion_shift": float((probs[True] - probs[False])[benign].mean()),
        "removal_shift": float((probs[False] - probs[True])[ringed_mel].mean()) if ringed_mel.any() else float("nan"),
        "acc_clean": float(((probs[False] > 0.5).long() == labels).float().mean()),
        "acc_test": float(((probs[None] > 0.5).long() == labels).float().mean()),
        "acc_benign_ring": float((probs[True][benign] <= 0.5).float().mean()),
        "acc_benign_clean": float((probs[False][benign] <= 0.5).float().mean()),
    }


def train(config: dict, dm, seed: int, callbacks: list) -> tuple[ImageClassifier, float]:
    seed_everything(seed, workers=True)
    init = dict(config["model"]["init_args"])
    model = ImageClassifier(**init, num_classes=dm.num_classes, class_names=list(dm.class_names))
    trainer_cfg = config["trainer"]
    trainer = Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=trainer_cfg["max_epochs"],
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


def step_overhead(config: dict, dm, layer: str, steps: int, seed: int) -> dict[str, float]:
    """Median time of one training step (forward, backward, AdamW step) on a demo batch, without and with the RR-ClArC
    penalty exactly as the callback adds it; the two kinds alternate, so machine load hits both alike."""
    from lit_xai.correction import collect_activations, fit_cav, resolve_layer, rrclarc_penalty

    torch.manual_seed(seed)
    init = dict(config["model"]["init_args"])
    model = ImageClassifier(**init, num_classes=dm.num_classes).train()
    batch = next(iter(dm.train_dataloader()))
    x, y, flags = batch["image"], batch["target"], batch["artifact"]
    cav = fit_cav(collect_activations(model, layer, x), flags, layer=layer)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    params = [p for p in model.parameters() if p.requires_grad]

    def step(penalised: bool) -> float:
        start = time.perf_counter()
        captured = {}
        handle = resolve_layer(model, layer).register_forward_hook(lambda _m, _i, out: captured.update(h=out))
        logits = model(x)
        handle.remove()
        loss = torch.nn.functional.cross_entropy(logits, y)
        opt.zero_grad()
        if penalised:
            penalty = rrclarc_penalty(captured["h"], logits, cav.direction * cav.shift, "flatten", "all")
            grads = torch.autograd.grad(penalty, params, retain_graph=True, allow_unused=True)
            for p, g in zip(params, grads):
                if g is not None:
                    p.grad = torch.empty_like(p).copy_(g)
        loss.backward()
        opt.step()
        return time.perf_counter() - start

    times: dict[bool, list[float]] = {False: [], True: []}
    for i in range(2 * steps + 2):
        kind = i % 2 == 1
        elapsed = step(kind)
        if i >= 2:  # warm-up
            times[kind].append(elapsed)
    plain, penalised = (sorted(times[k])[len(times[k]) // 2] for k in (False, True))
    return {"step_s_plain": plain, "step_s_rrclarc": penalised, "ratio": penalised / plain, "batch": len(x)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--weight", type=float, default=1.0)
    parser.add_argument("--layer", default="net.layer3")
    parser.add_argument("--pooling", default="flatten", choices=["flatten", "mean"])
    parser.add_argument("--output", default="all", choices=["all", "true", "pred"])
    parser.add_argument("--max_samples", type=int, default=512)
    parser.add_argument("--cav_class", type=int, default=None, help="fit the CAVs within this class (1 = melanoma)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip_rrclarc", action="store_true")
    parser.add_argument("--pclarc_variants", action="store_true", help="P-ClArC with flatten/mean x all/within class")
    parser.add_argument("--skip_baseline", action="store_true", help="only the RR-ClArC run (e.g. another lambda)")
    parser.add_argument("--overhead_steps", type=int, default=10, help="alternating timed steps (0: skip)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with open(args.config) as fh:
        config = yaml.safe_load(fh)
    dm = instantiate_datamodule(args.config)
    dm.setup("fit")
    dm.setup("test")
    rows: dict[str, dict[str, float]] = {}
    overhead = step_overhead(config, dm, args.layer, args.overhead_steps, args.seed) if args.overhead_steps else {}

    if not args.skip_baseline:
        base, base_s = train(config, dm, args.seed, [])
        rows["none"] = {**ring_figures(base, dm), "train_s": base_s}
        train_ds = dm.dataset("train")
        train_ds.transform = dm.transform(train=False)  # the CAV from un-augmented training images
        variants = [(args.pooling, args.cav_class)]
        if args.pclarc_variants:
            variants = [("flatten", None), ("mean", None), ("flatten", 1), ("mean", 1)]
        for pooling, cav_class in variants:
            start = time.perf_counter()
            cav = fit_split_cav(
                base, train_ds, args.layer, "field", pooling=pooling, max_samples=1024, seed=args.seed,
                within_class=cav_class,
            )
            fit_s = time.perf_counter() - start
            name = f"pclarc {pooling}" + (f" class {cav_class}" if cav_class is not None else "")
            rows[name] = {**ring_figures(ProjectedModel(base, cav), dm), "train_s": base_s, "fit_s": fit_s}
            rows[name]["cav_auc"] = cav.separability
        train_ds.transform = dm.transform(train=True)

    if not args.skip_rrclarc:
        cb = ShortcutCorrection(
            layer=args.layer,
            weight=args.weight,
            pooling=args.pooling,
            output=args.output,
            max_samples=args.max_samples,
            cav_class=args.cav_class,
            seed=args.seed,
        )
        corrected, corrected_s = train(config, dm, args.seed, [cb])
        rows[f"rrclarc (lambda={args.weight:g})"] = {
            **ring_figures(corrected, dm),
            "train_s": corrected_s,
            "cav_auc": cb.history[-1].get("correction/cav_auc", float("nan")),
            "penalty_last": cb.history[-1].get("correction/penalty", float("nan")),
        }

    keys = ["insertion_shift", "removal_shift", "acc_clean", "acc_test", "acc_benign_ring", "acc_benign_clean"]
    keys += ["train_s"]
    print(f"seed {args.seed}, {args.config}, layer {args.layer} ({args.pooling}), torch threads {args.threads}")
    print(f"{'model':<24}" + "".join(f"{k:>17}" for k in keys))
    for name, row in rows.items():
        print(f"{name:<24}" + "".join(f"{row.get(k, float('nan')):>17.3f}" for k in keys))
    if overhead:
        print(
            f"one training step (batch {overhead['batch']}): "
            f"{overhead['step_s_plain']:.3f} s plain, {overhead['step_s_rrclarc']:.3f} s with RR-ClArC "
            f"({overhead['ratio']:.2f}x; median of {args.overhead_steps} alternating steps)"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows, "overhead": overhead}, indent=2))


if __name__ == "__main__":
    main()
