"""``ExplanationMonitor()`` with no arguments in a foreign LightningModule around each supported backbone family."""

from __future__ import annotations

import pytest
import torch
from _backbones import BACKBONES
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

lightning = pytest.importorskip("lightning.pytorch")

pytestmark = pytest.mark.usefixtures("single_thread")


class Foreign(lightning.LightningModule):
    """A user's module: the backbone under a name lit_xai does not know, plain cross-entropy."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", F.cross_entropy(self(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=1e-3)


@pytest.mark.parametrize(
    "name",
    [
        "timm_convnext",
        "torchvision_convnext",
        "timm_vit",
        "torchvision_vit",
        "efficientnet_v2",
        "mobilenet_v3",
        "monai_densenet",
        "plain_cnn",
    ],
)
def test_monitor_at_defaults_on_a_foreign_module(name: str, tmp_path) -> None:
    from lit_xai.callbacks import ExplanationMonitor

    torch.manual_seed(0)
    module = Foreign(BACKBONES[name][0]())
    data = TensorDataset(torch.randn(8, 3, 32, 32), torch.arange(8) % 3)
    monitor = ExplanationMonitor()
    trainer = lightning.Trainer(
        max_epochs=1,
        accelerator="cpu",
        callbacks=[monitor],
        default_root_dir=str(tmp_path),
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_train_batches=1,
        limit_val_batches=1,
        logger=False,
    )
    trainer.fit(module, DataLoader(data, batch_size=4), DataLoader(data, batch_size=8))
    assert monitor.history, "the monitor explained nothing"
    labels = [e.label for e in monitor.explainers]
    assert ("crp" not in labels) == name.endswith("vit"), labels  # CRP left out (with a warning) on ViTs only
    assert all(v == 1.0 for k, v in monitor.history[-1].items() if k.endswith("/conserved")), monitor.history[-1]
