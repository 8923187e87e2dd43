"""Explanation quality of the trained demo model (issue 10), and the cost of the quality callback per epoch.

Trains the demo configuration in-process (``configs/demo.yaml``: tiny_resnet on the synthetic shortcut lesions,
64 px, 1600/400 images, 8 epochs, AdamW 3e-3 with cosine schedule, seed 42) or loads a checkpoint of it, then prints

* AOPC of LRP vs Grad-CAM vs a random order (MoRF; LeRF as well), max-sensitivity and infidelity per method;
* the cascading randomisation similarities (Spearman, SSIM) per randomised block;
* the augmentation-stability table (markdown);
* the cost of :class:`~lit_xai.callbacks.quality_monitor.ExplanationQualityMonitor`'s computation at its defaults
  (4 probes), min/median over repeats, next to the time of one training epoch measured in the same run.

Figures (pixel-flipping curves, randomisation curves, stability table) are written as PNGs to ``--out``.

Run:
    python -m benchmarks quality_demo                          # train (about 1 min on 2 quiet cores), evaluate
    python -m benchmarks quality_demo --checkpoint lightning_logs/demo/version_0/checkpoints/last.ckpt
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch import Trainer, seed_everything
from PIL import Image

from lit_xai.datamodules import SyntheticShortcutDataModule
from lit_xai.metrics import evaluate_quality
from lit_xai.models import ImageClassifier
from lit_xai.probes import select_probes
from lit_xai.visualization import line_plot, table_image


def demo_datamodule() -> SyntheticShortcutDataModule:
    return SyntheticShortcutDataModule(
        num_train=1600,
        num_val=400,
        num_test=400,
        image_size=64,
        batch_size=64,
        ring_fraction_benign=0.0,
        ring_fraction_melanoma=0.3,
    )


def demo_model() -> ImageClassifier:
    return ImageClassifier(
        "tiny_resnet",
        num_classes=2,
        task="binary",
        class_names=["benign", "melanoma"],
        lr=0.003,
        optimizer="adamw",
        scheduler="cosine",
    )


def train_demo(epochs: int) -> tuple[ImageClassifier, float]:
    seed_everything(42)
    model = demo_model()
    trainer = Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    start = time.perf_counter()
    trainer.fit(model, demo_datamodule())
    per_epoch = (time.perf_counter() - start) / epochs
    print(
        f"trained {epochs} epochs, val/acc = {float(trainer.callback_metrics.get('val/acc', float('nan'))):.3f}, "
        f"{per_epoch:.1f} s per epoch (train + val)"
    )
    return model, per_epoch


def save(image: torch.Tensor, path: Path) -> None:
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None, help="ImageClassifier checkpoint of the demo (skips training)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--probes", type=int, default=16, help="probes for the reported figures")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the callback-cost measurement")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="/tmp/quality_demo", help="folder for the PNG figures")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    if args.checkpoint and args.checkpoint.endswith(".pt"):  # a state dict written by an earlier run of this script
        model, per_epoch = demo_model(), float("nan")
        model.load_state_dict(torch.load(args.checkpoint, map_location="cpu"))
    elif args.checkpoint:
        model, per_epoch = ImageClassifier.load_from_checkpoint(args.checkpoint, map_location="cpu"), float("nan")
    else:
        model, per_epoch = train_demo(args.epochs)
        torch.save(model.state_dict(), out / "model.pt")
        print(f"model state saved to {out / 'model.pt'} (rerun with --checkpoint {out / 'model.pt'})")
    model.eval()
    dm = demo_datamodule()
    val = dm.dataset("val")
    probes = select_probes(val, args.probes, seed=0, num_artifact=0)
    names = ["benign", "melanoma"]

    # -------- the figures of issue 10, with more probes and samples than the callback's defaults
    report = evaluate_quality(
        model,
        probes.images,
        probes.targets,
        ["lrp", "gradcam"],
        patch=8,
        steps=16,
        random_repeats=5,
        sensitivity_samples=10,
        infidelity_samples=20,
        randomization_steps=None,
        seed=0,
    )
    print(
        f"\n## Faithfulness on {len(probes)} validation probes (patch 8 px, first 25 % of regions in 16 steps, "
        "replacement 0 = dataset mean)"
    )
    print("| method | AOPC MoRF (higher better) | AOPC LeRF (lower better) | max-sensitivity r=0.02 | infidelity |")
    print("|---|---|---|---|---|")
    for m in ("lrp", "gradcam", "random"):

        def fmt(d: dict, m: str = m) -> str:
            return f"{float(d[m].mean()):.3f} ± {float(d[m].std()):.3f}" if m in d else "-"

        print(
            f"| {m} | {fmt(report.aopc)} | {fmt(report.aopc_lerf)} | {fmt(report.sensitivity)} | "
            f"{fmt(report.infidelity)} |"
        )
    for m in ("lrp", "gradcam"):
        wins = int((report.aopc[m] > report.aopc["random"]).sum())
        print(
            f"{m}: AOPC - random = {float((report.aopc[m] - report.aopc['random']).mean()):+.3f} "
            f"(beats random on {wins}/{len(probes)} probes)"
        )
    gap = report.aopc["lrp"] - report.aopc["gradcam"]
    print(f"LRP - Grad-CAM AOPC = {float(gap.mean()):+.3f} (LRP higher on {int((gap > 0).sum())}/{len(probes)} probes)")

    print("\n## AOPC by replacement value and flipped share (MoRF; random = mean of 5 seeded orders)")
    print("| replacement | flipped | lrp | gradcam | random | lrp LeRF | gradcam LeRF |")
    print("|---|---|---|---|---|---|---|")
    for replacement in (0.0, "mean", "blur"):
        for fraction in (0.25, 1.0):
            r = evaluate_quality(
                model,
                probes.images,
                probes.targets,
                ["lrp", "gradcam"],
                metrics=["pixel_flipping"],
                fraction=fraction,
                steps=16,
                replacement=replacement,
                random_repeats=5,
            )
            cells = [f"{float(r.aopc[m].mean()):.3f}" for m in ("lrp", "gradcam", "random")]
            cells += [f"{float(r.aopc_lerf[m].mean()):.3f}" for m in ("lrp", "gradcam")]
            print(f"| {replacement} | {fraction:.0%} | " + " | ".join(cells) + " |")

    print("\n## Cascading randomisation (output block first), mean over probes")
    print("| randomised up to | " + " | ".join(f"{m} Spearman | {m} SSIM" for m in report.randomization) + " |")
    print("|---|" + "---|---|" * len(report.randomization))
    first = next(iter(report.randomization.values()))
    for j, layer in enumerate(first.layers):
        cells = [
            f"{float(r.spearman[j].mean()):.3f} | {float(r.ssim[j].mean()):.3f}" for r in report.randomization.values()
        ]
        print(f"| {layer} | " + " | ".join(cells) + " |")

    print("\n## Augmentation stability (first 8 probes shown)")
    small = evaluate_quality(model, probes.images[:8], probes.targets[:8], ["lrp", "gradcam"], metrics=["stability"])
    print(small.stability_markdown(names, probes.ids[:8]))
    print(
        "(similarity over all probes: "
        + ", ".join(
            f"{m} SSIM {float(s.ssim.mean()):.3f} Spearman {float(s.spearman.mean()):.3f}"
            for m, s in report.stability.items()
        )
        + f"; predictions changed in {float(report.stability['lrp'].label_changes().sum())}/"
        f"{report.stability['lrp'].label.numel()} augmented probes)"
    )

    fraction = [100.0 * float(f) for f in report.fraction]
    save(
        line_plot(
            report.mean_curves(),
            x=fraction,
            title="pixel flipping, most relevant first",
            xlabel="% of regions replaced",
            ylabel="change of target logit",
        ),
        out / "pixel_flipping.png",
    )
    save(
        line_plot(
            {m: [float(v) for v in r.spearman.mean(1)] for m, r in report.randomization.items()},
            x=list(range(1, len(first.layers) + 1)),
            title="cascading randomisation",
            xlabel="blocks randomised: " + ", ".join(first.layers),
            ylabel="Spearman",
        ),
        out / "randomization.png",
    )
    header, rows = small.stability_table(names, probes.ids[:8])
    save(table_image(header, rows, title="augmentation stability"), out / "stability_table.png")
    print(f"\nfigures written to {out}")

    # -------- cost of the callback's computation at its defaults (4 probes)
    cb_probes = select_probes(val, 4, seed=0, num_artifact=0)
    times, parts = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        r = evaluate_quality(model, cb_probes.images, cb_probes.targets, ["lrp", "gradcam"])
        times.append(time.perf_counter() - start)
        parts.append(r.seconds)
    med = statistics.median(times)
    print(
        f"\n## Cost of ExplanationQualityMonitor's computation at its defaults "
        f"(4 probes, 64 px, {args.threads} threads)"
    )
    print(f"min {min(times):.2f} s, median {med:.2f} s over {args.repeats} repeats (shared machine)")
    keys = parts[0].keys()
    print("median per part: " + ", ".join(f"{k} {statistics.median(p[k] for p in parts):.2f} s" for k in keys))
    if np.isfinite(per_epoch):
        print(
            f"one training epoch (train + val) took {per_epoch:.1f} s in this run: ratio {med / per_epoch:.2f} "
            "when run every epoch (default every_n_epochs=2 halves it)"
        )


if __name__ == "__main__":
    main()
