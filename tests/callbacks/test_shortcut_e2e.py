"""ShortcutMonitor end to end on a datamodule of its own (not lit_xai's): a removal-visible shortcut alerts, the same
data with the ring in both classes does not.

The images are drawn here: a skin-coloured background, a brown disc with stripes whose orientation is the class
(horizontal 0, vertical 1). In the shortcut data half of class 1 carries a dark ring
(:func:`lit_xai.artifacts.insert_ring`) and *no* stripes, so for those images the ring is the only evidence; in the
control the ring is on 40 % of both classes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from lightning.pytorch import LightningDataModule, LightningModule, Trainer, seed_everything
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lit_xai.artifacts import AlertRule, insert_ring
from lit_xai.callbacks import ModelSpec, ShortcutMonitor
from lit_xai.explainers.profiles import ExplanationProfile

SIZE = 32
EPOCHS = 4

pytestmark = pytest.mark.usefixtures("single_thread")


def draw(n: int, ring1: float, ring0: float, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    labels = (torch.arange(n) % 2)[torch.randperm(n, generator=g)]
    ringed = torch.rand(n, generator=g) < torch.where(labels == 1, ring1, ring0)
    contrast = 0.15 + 0.15 * torch.rand(n, generator=g)
    if ring0 == 0.0:  # the shortcut: ringed class-1 images have no stripes, the ring alone tells their class
        contrast[ringed] = 0.0
    ax = torch.linspace(-1, 1, SIZE)
    yy, xx = ax[:, None], ax[None, :]
    img = torch.tensor([0.85, 0.70, 0.60])[None, :, None, None] + 0.03 * torch.randn(n, 3, SIZE, SIZE, generator=g)
    disc = (torch.sigmoid((0.5 - (yy**2 + xx**2).sqrt()) / 0.04))[None, None]
    along = torch.where((labels == 1)[:, None, None], xx.expand(n, SIZE, SIZE), yy.expand(n, SIZE, SIZE))
    phase = 6.28 * torch.rand(n, 1, 1, generator=g)
    stripes = 1 + contrast[:, None, None] * torch.sin(10.0 * along + phase)
    lesion = torch.tensor([0.55, 0.38, 0.25])[None, :, None, None] * stripes[:, None]
    img = (img * (1 - disc) + lesion * disc).clamp(0, 1)
    rows = ringed.nonzero().flatten()
    img[rows] = insert_ring(img[rows], g)[0]
    return TensorDataset(img, labels)


class StripesData(LightningDataModule):
    """Another project's datamodule: (image in [0, 1], label) tuples, no class names, no normalization."""

    def __init__(self, ring1: float, ring0: float) -> None:
        super().__init__()
        self.train_set = draw(400, ring1, ring0, seed=1)
        self.val_set = draw(256, ring1, ring0, seed=2)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=32, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=128)


class TinyNet(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(32, 2),
        )
        # a plain conv/ReLU network: tell the explainers it needs no canonizers (the monitor's LRP is supporting
        # evidence only, but it still runs)
        self.net.explanation_profile = ExplanationProfile("plain_cnn")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_acc", (self(x).argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=3e-3)


def fit(tmp_path: Path, ring1: float, ring0: float) -> tuple[ShortcutMonitor, Trainer]:
    seed_everything(0)
    mon = ShortcutMonitor(detectors=["ring"], alert=AlertRule(), model=ModelSpec(input_range=(0, 1)), every_n_epochs=1)
    trainer = Trainer(
        max_epochs=EPOCHS,
        accelerator="cpu",
        logger=False,
        callbacks=[mon],
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        default_root_dir=str(tmp_path),
    )
    trainer.fit(TinyNet(), StripesData(ring1, ring0))
    return mon, trainer


def test_removal_visible_shortcut_alerts_and_balanced_control_does_not(tmp_path: Path) -> None:
    mon, _ = fit(tmp_path / "shortcut", ring1=0.5, ring0=0.0)
    alerts = [a for a in mon.alerts if a["artifact"] == "ring"]
    assert len(alerts) == 1, mon.history
    alert = alerts[0]
    assert alert["class"] == "1" and alert["epoch"] < EPOCHS
    removal = alert["evidence"]["removal"]
    # the removal test carries the verdict: its sham-corrected drop clears min_effect with its whole interval
    assert removal["interval"][0] > AlertRule().min_effect and removal["n"] >= AlertRule().min_images
    assert removal["split"] == "val" and "removal" in AlertRule().passing(alert["evidence"])
    text = alert["message"]
    assert "removal: inpainting the ring away on" in text and "% CI" in text and "the sham" in text
    report = json.loads((Path(mon._log_dir) / "shortcut_report.json").read_text())
    assert len(report["history"]) == EPOCHS  # one entry per measurement
    assert report["alerts"][0]["message"] == text

    control, _ = fit(tmp_path / "control", ring1=0.4, ring0=0.4)
    assert control.alerts == [], [a["message"] for a in control.alerts]
    ring = [h for h in control.history if h["artifact"] == "ring"]
    assert len(ring) == EPOCHS and all("removal" in h and "counterfactual" in h for h in ring)
    for h in ring:  # measured, and no effect clears the rule
        for key in ("counterfactual", "removal"):
            low = h[key]["interval"][0]
            assert low is None or math.isnan(low) or low <= AlertRule().min_effect
