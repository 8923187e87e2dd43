"""Tiny seeded models and data shared by the quality-metric tests."""

from __future__ import annotations

import torch
from torch import nn

from lit_xai.models.architectures import build_architecture
from lit_xai.models.batchnorm import calibrate_batch_norm


def small_cnn(seed: int = 0, num_classes: int = 3) -> nn.Module:
    """A plain conv/ReLU/linear net (no BatchNorm), eval mode, seeded."""
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(32, num_classes),
    )
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return net.eval()


def tiny_resnet(seed: int = 0, num_classes: int = 2, size: int = 32) -> nn.Module:
    """``tiny_resnet`` with seeded weights and batch-norm statistics calibrated on random images."""
    torch.manual_seed(seed)
    net = build_architecture("tiny_resnet", num_classes=num_classes)
    calibrate_batch_norm(net, torch.randn(16, 3, size, size))
    return net.eval()


def state_of(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_state(model: nn.Module, state: dict[str, torch.Tensor]) -> bool:
    now = model.state_dict()
    return now.keys() == state.keys() and all(torch.equal(now[k], state[k]) for k in state)


def synthetic_tensors(split: str, n: int, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised images and labels of the synthetic shortcut dataset (no augmentation)."""
    from lit_xai.datamodules import SyntheticShortcutDataModule

    dm = SyntheticShortcutDataModule(
        num_train=n, num_val=n, num_test=n, image_size=size, augment=False, seed=seed, difficulty=0.0
    )
    ds = dm.dataset(split)
    items = [ds[i] for i in range(len(ds))]
    return torch.stack([it["image"] for it in items]).float(), torch.stack([it["target"] for it in items]).long()


def trained_synthetic_model(size: int = 32, n: int = 320, epochs: int = 6, seed: int = 0) -> tuple[nn.Module, float]:
    """``tiny_resnet`` trained for a few seconds on the synthetic lesions; returns (eval model, val accuracy)."""
    x, y = synthetic_tensors("train", n, size, seed)
    xv, yv = synthetic_tensors("val", 128, size, seed)
    torch.manual_seed(seed)
    net = build_architecture("tiny_resnet", num_classes=2)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), 32):
            idx = perm[i : i + 32]
            loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        acc = float((net(xv).argmax(1) == yv).float().mean())
    return net, acc
