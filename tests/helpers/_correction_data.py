"""The planted-corner data, the small network and the foreign LightningModule that the correction tests share
(tests/correction/, tests/callbacks/test_correction_callback.py)."""

from __future__ import annotations

import torch
from lightning.pytorch import LightningModule, Trainer
from torch import nn
from torch.utils.data import DataLoader, Dataset

SIZE = 16


# ----------------------------------------------------------------------------------------- planted-artifact data
def planted(n: int, seed: int, artifact_rate: float = 1.0) -> dict[str, torch.Tensor]:
    """Class 1 has a vertical bar, class 0 a horizontal one (faint, noisy); ``artifact_rate`` of class 1 also carry
    a bright corner square (the shortcut, never in class 0)."""
    g = torch.Generator().manual_seed(seed)
    targets = torch.arange(n) % 2
    images = 0.5 + 0.15 * torch.randn(n, 3, SIZE, SIZE, generator=g)
    c = SIZE // 2
    images[targets == 1, :, c - 4 : c + 4, c - 1 : c + 1] += 0.5
    images[targets == 0, :, c - 1 : c + 1, c - 4 : c + 4] += 0.5
    artifact = (targets == 1) & (torch.rand(n, generator=g) < artifact_rate)
    images[artifact] = add_corner(images[artifact])
    masks = torch.zeros(n, SIZE, SIZE, dtype=torch.bool)
    masks[artifact, :4, :4] = True
    return {"image": images, "target": targets, "artifact": artifact, "artifact_mask": masks}


def add_corner(images: torch.Tensor) -> torch.Tensor:
    out = images.clone()
    out[:, :, :4, :4] = 1.5
    return out


class SmallNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.feat = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, stride=2), nn.ReLU())
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(8 * (SIZE // 2) ** 2, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.feat(torch.relu(self.conv1(x))))


def reliance(model: nn.Module, data: dict[str, torch.Tensor]) -> float:
    """Mean rise of P(class 1) when the corner is added to class-0 images."""
    clean = data["image"][data["target"] == 0]
    with torch.no_grad():
        before = model.eval()(clean).softmax(1)[:, 1]
        after = model(add_corner(clean)).softmax(1)[:, 1]
    return float((after - before).mean())


def accuracy(model: nn.Module, data: dict[str, torch.Tensor]) -> float:
    with torch.no_grad():
        return float((model.eval()(data["image"]).argmax(1) == data["target"]).float().mean())


class DictData(Dataset):
    def __init__(self, data: dict[str, torch.Tensor]) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data["target"])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[i] for k, v in self.data.items()}


class Foreign(LightningModule):
    """Not an ImageClassifier: the network sits in ``self.model``."""

    def __init__(self, lr: float = 3e-3, optimizer: str = "adam") -> None:
        super().__init__()
        self.model = SmallNet()
        self.lr, self.optimizer = lr, optimizer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch, batch_idx):
        return nn.functional.cross_entropy(self.model(batch["image"]), batch["target"])

    def configure_optimizers(self):
        if self.optimizer == "sgd":
            return torch.optim.SGD(self.parameters(), lr=self.lr)
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def loader(n: int = 256, batch_size: int = 32) -> DataLoader:
    return DataLoader(DictData(planted(n, seed=1)), batch_size=batch_size, shuffle=False)


def fit(module: LightningModule, callbacks: list, data: DataLoader, **kw) -> Trainer:
    args = dict(
        max_epochs=1,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True,
    )
    args.update(kw)
    trainer = Trainer(callbacks=callbacks, **args)
    trainer.fit(module, data)
    return trainer


#: the normalisation the corner tests' images are shown with (mean, std per channel)
CORNER_NORMALIZATION = ((0.25, 0.25, 0.25), (0.25, 0.25, 0.25))
