"""Issue 32, item 0: a saturated shortcut, tried as a new user would (foreign Lightning project, monitor defaults).

    python -m benchmarks saturation                    # ResNet-18 at 64 px, 4 epochs, ~3-5 min on one busy core
    python -m benchmarks saturation --seeds 0,1 --json sat.json

A plain LightningModule around torchvision's ResNet-18 (random init, 2 classes), its own LightningDataModule of
in-memory tensors in [0, 1] (images drawn with lit_xai's synthetic skin-lesion generator, no lit_xai datamodule), a
dark ring in 40 % of one class only, ``ShortcutMonitor`` with its defaults (only ``ModelSpec(input_range=(0, 1))``,
which a foreign project must give). Per epoch it prints what the rule read: each causal test's probability before
the edit, its shift, its sham-corrected effect and interval (probability units), its effect on the log-odds, whether
the test could show an effect (``informative``), and the rule's decision. ``--control`` draws the ring in 40 % of
both classes instead (no shortcut to find).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torchvision
from lightning.pytorch import LightningDataModule, LightningModule, Trainer, seed_everything
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lit_xai.callbacks import ModelSpec, ShortcutMonitor  # noqa: E402
from lit_xai.datamodules.synthetic import ShortcutImageGenerator  # noqa: E402


def draw(n: int, size: int, split: str, seed: int, ring0: float, ring1: float) -> tuple[torch.Tensor, torch.Tensor]:
    gen = ShortcutImageGenerator(image_size=size, seed=seed, ring_fraction_benign=ring0, ring_fraction_melanoma=ring1)
    idx = np.arange(n)
    labels, _ = gen.plan(split, idx)
    images, _ = gen.render(split, idx)
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0, torch.from_numpy(labels).long()


class TensorData(LightningDataModule):
    """The user's own datamodule: tensors in memory, nothing of lit_xai."""

    def __init__(self, train: tuple, val: tuple, batch_size: int = 32) -> None:
        super().__init__()
        self.train, self.val, self.batch_size = TensorDataset(*train), TensorDataset(*val), batch_size

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val, batch_size=64)


class Net(LightningModule):
    def __init__(self, lr: float = 1e-3) -> None:
        super().__init__()
        self.net = torchvision.models.resnet18(num_classes=2)
        self.lr = lr

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, _):
        x, y = batch
        return torch.nn.functional.cross_entropy(self(x), y)

    def validation_step(self, batch, _):
        x, y = batch
        self.log("val_acc", (self(x).argmax(1) == y).float().mean(), prog_bar=False)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def run(seed: int, args: argparse.Namespace) -> dict:
    seed_everything(seed)
    ring0 = args.ring if args.control else 0.0
    train = draw(args.train, args.size, "train", seed, ring0, args.ring)
    val = draw(args.val, args.size, "val", seed, ring0, args.ring)
    mon = ShortcutMonitor(model=ModelSpec(input_range=(0, 1)), verbose=False)
    trainer = Trainer(
        max_epochs=args.epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        callbacks=[mon],
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=args.root,
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(Net(), TensorData(train, val))
    rows = []
    for h in mon.history:
        if h.get("artifact") != "ring":
            continue
        row = {
            "epoch": h["epoch"],
            "class": h["class"],
            "rule_met": h.get("rule_met"),
            "informative": h.get("informative"),
        }
        for key in ("counterfactual", "removal"):
            t = h.get(key)
            if isinstance(t, dict):
                row[key] = {k: t.get(k) for k in (
                    "p_before", "mean_shift", "sham_shift", "effect", "interval", "logit_effect", "logit_interval",
                    "reach", "informative", "n", "n_sham")}  # fmt: skip
        rows.append(row)
    alerts = [a["epoch"] for a in mon.alerts if a["artifact"] == "ring"]
    return {"seed": seed, "rows": rows, "alerts": alerts, "seconds": time.perf_counter() - start}


def show(result: dict) -> None:
    print(f"seed {result['seed']}: alert epochs {result['alerts'] or 'none'} ({result['seconds']:.0f} s)")
    for row in result["rows"]:
        parts = [f"  epoch {row['epoch']} '{row['class']}' met={row['rule_met']} informative={row['informative']}"]
        for key, name in (("counterfactual", "ins"), ("removal", "rem")):
            t = row.get(key)
            if not t:
                continue
            lo, hi = t["interval"]
            logit = t.get("logit_effect")
            text = f"{name}: p0={t['p_before']:.3f} shift={t['mean_shift']:+.3f} sham={t['sham_shift']:+.3f} "
            text += f"effect={t['effect']:+.3f} [{lo:+.3f},{hi:+.3f}]"
            if logit is not None:
                llo, lhi = t["logit_interval"]
                text += f" logit={logit:+.2f} [{llo:+.2f},{lhi:+.2f}] reach={t['reach']:.3f} inf={t['informative']}"
            parts.append(text)
        print("\n      ".join(parts))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--train", type=int, default=800)
    parser.add_argument("--val", type=int, default=256)
    parser.add_argument("--ring", type=float, default=0.4)
    parser.add_argument("--control", action="store_true", help="the ring in both classes (no shortcut)")
    parser.add_argument("--root", default="/tmp/lit_xai_saturation")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    results = []
    for seed in (int(s) for s in args.seeds.split(",")):
        results.append(run(seed, args))
        show(results[-1])
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=float))


if __name__ == "__main__":
    main()
