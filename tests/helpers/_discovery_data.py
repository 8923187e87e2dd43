"""A tiny shapes dataset with an artifact no registered detector knows, a tiny CNN trained on it in seconds, and
its LRP maps: the data of the label-free discovery tests and of ``benchmarks/discovery.py``."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lit_xai.artifacts.tags import insert_burnt_text, insert_square_tag

TAGS = {"square": insert_square_tag, "text": insert_burnt_text}


def shapes_dataset(
    n_per_class: int = 96,
    size: int = 32,
    tag: str | None = "square",
    tagged_class: int = 1,
    fraction: float = 0.35,
    num_classes: int = 3,
    seed: int = 0,
    class_sizes: tuple[int, ...] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images in [0, 1] ``(N, 3, size, size)`` of a disc (class 0), a square (1) or a cross (2) on textured
    background, labels, the ground-truth tag flags and tag masks ``(N, size, size)``. ``tag=None`` renders the same
    images without the tag (flags still say which images would carry it).

    ``class_sizes`` overrides ``n_per_class`` per class (class imbalance).
    """
    g = torch.Generator().manual_seed(seed)
    sizes = class_sizes or (n_per_class,) * num_classes
    labels = torch.cat([torch.full((n,), c, dtype=torch.long) for c, n in enumerate(sizes)])
    n = len(labels)
    ax = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    tone = 0.35 + 0.3 * torch.rand(n, 1, 1, 1, generator=g)
    tint = 0.06 * torch.randn(n, 3, 1, 1, generator=g)
    smooth = F.interpolate(torch.randn(n, 1, 6, 6, generator=g), size=size, mode="bilinear", align_corners=False)
    images = tone + tint + 0.06 * smooth + 0.03 * torch.randn(n, 3, size, size, generator=g)
    for i in range(n):
        cy, cx = ((torch.rand(2, generator=g) - 0.5) * 0.5).tolist()
        r = 0.28 + 0.16 * float(torch.rand((), generator=g))
        y, x = yy - cy, xx - cx
        c = int(labels[i])
        if c == 0:
            shape = (y**2 + x**2) <= r**2
        elif c == 1:
            angle = 0.3 * float(torch.randn((), generator=g))
            u, v = x * math.cos(angle) + y * math.sin(angle), -x * math.sin(angle) + y * math.cos(angle)
            shape = (u.abs() <= 0.85 * r) & (v.abs() <= 0.85 * r)
        else:
            arm = 0.35 * r
            shape = ((x.abs() <= arm) & (y.abs() <= r)) | ((y.abs() <= arm) & (x.abs() <= r))
        colour = 0.05 + 0.2 * torch.rand(3, generator=g)
        images[i][:, shape] = colour[:, None] + 0.03 * torch.randn(3, int(shape.sum()), generator=g)
    images = images.clamp(0, 1)
    flags = torch.zeros(n, dtype=torch.bool)
    members = (labels == tagged_class).nonzero().flatten()
    chosen = members[torch.randperm(len(members), generator=g)[: round(fraction * len(members))]]
    flags[chosen] = True
    masks = torch.zeros(n, size, size, dtype=torch.bool)
    if tag is not None and len(chosen):
        if tag not in TAGS:
            raise ValueError(f"tag must be one of {sorted(TAGS)} or None, got {tag!r}")
        images[chosen], masks[chosen] = TAGS[tag](images[chosen], torch.Generator().manual_seed(seed + 1))
    return images, labels, flags, masks


def tiny_cnn(num_classes: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
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
        nn.Linear(32, num_classes),
    )


def train_tiny(images01: torch.Tensor, labels: torch.Tensor, epochs: int = 30, seed: int = 0) -> nn.Module:
    """A :func:`tiny_cnn` trained on ``images01 - 0.5`` (plain torch loop, a few seconds on one core)."""
    net = tiny_cnn(int(labels.max()) + 1, seed)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    x = images01 - 0.5
    net.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), 32):
            idx = perm[i : i + 32]
            loss = F.cross_entropy(net(x[idx]), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


def lrp_maps(net: nn.Module, images01: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """LRP (EpsilonPlusFlat) maps ``(N, H, W)`` of each image's true class."""
    from lit_xai.explainers import LRP

    lrp = LRP("epsilon_plus_flat", canonizers=[])
    return torch.cat([lrp(net, images01[i : i + 64] - 0.5, labels[i : i + 64]) for i in range(0, len(labels), 64)])


def concept_relevances(net: nn.Module, images01: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Positive CRP concept relevances ``(N, C)`` of the network's profile concept layer, as the monitor clusters."""
    from lit_xai.explainers import CRP

    return CRP().concept_relevances(net, images01 - 0.5, labels).clamp_min(0)


def accuracy(net: nn.Module, images01: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        return float((net(images01 - 0.5).argmax(1) == labels).float().mean())


def demo_discovery(ring_fraction_melanoma: float, root: str, max_epochs: int = 8, seed: int = 42) -> dict:
    """The demo (``configs/demo.yaml``: ``tiny_resnet`` on the 96 px synthetic data, ``seed``) with its
    ``ShortcutMonitor`` and default discovery, the ring in ``ring_fraction_melanoma`` of the melanomas; then the
    monitor's candidates scored with the ground-truth ring flags (used only here).

    Returns ``{"epochs": {epoch: {...}}, "clean_max": ..., "seconds": [...]}``: per discovery epoch the melanoma
    candidates' ``(rank, purity, recall, score)``, the best ring candidate (the first with purity >= 0.8 and recall
    >= 0.6 of the pool's ring melanomas) and the largest score of any candidate; ``seconds`` per measurement.
    """
    from lightning.pytorch import Trainer, seed_everything
    from lightning.pytorch.loggers import TensorBoardLogger

    from lit_xai.callbacks import ShortcutBudget, ShortcutMonitor
    from lit_xai.datamodules import SyntheticShortcutDataModule
    from lit_xai.explainers import LRP
    from lit_xai.models import ImageClassifier

    seed_everything(seed)
    dm = SyntheticShortcutDataModule(
        num_train=1600, num_val=400, num_test=400, image_size=96, batch_size=64, ring_fraction_benign=0.0,
        ring_fraction_melanoma=ring_fraction_melanoma,
    )  # fmt: skip
    model = ImageClassifier(
        "tiny_resnet", num_classes=2, class_names=list(dm.class_names), lr=3e-3, optimizer="adamw", scheduler="cosine"
    )
    monitor = ShortcutMonitor(
        detectors=["ring"],
        explainer=LRP(composite="epsilon_gamma_box"),  # the demo's composite (configs/demo.yaml)
        budget=ShortcutBudget(audit_max_samples=800, pool_size=256),
    )
    trainer = Trainer(
        max_epochs=max_epochs, accelerator="cpu", devices=1, log_every_n_steps=10, enable_model_summary=False,
        enable_progress_bar=False, logger=TensorBoardLogger(root, name="demo"), default_root_dir=root,
        callbacks=[monitor],
    )  # fmt: skip
    seconds: list[float] = []
    discover = monitor.watch.discover  # the monitor's policy object (lit_xai.shortcuts.ShortcutWatch)

    def timed(module: nn.Module) -> dict:
        found = discover(module)
        seconds.append(found["seconds"])
        return found

    monitor.watch.discover = timed  # type: ignore[method-assign]
    trainer.fit(model, dm)
    pool = monitor._pool
    ring = {int(i): bool(dm.dataset("val")[int(i)]["artifact"]) for i in pool.ids}
    melanoma = dm.class_names[1]
    ring_ids = {i for i, lab in zip(pool.ids, pool.labels.tolist()) if lab == 1 and ring[int(i)]}
    out: dict = {"epochs": {}, "ring_images": len(ring_ids)}
    for c in monitor.candidates:
        e = out["epochs"].setdefault(c["epoch"], {"melanoma": [], "max_score": 0.0})
        e["max_score"] = max(e["max_score"], c["score"])
        if c["class"] == melanoma:
            hits = sum(int(m) in ring_ids for m in c["members"])
            e["melanoma"].append((c["rank"], hits / c["size"], hits / max(1, len(ring_ids)), c["score"]))
    for e in out["epochs"].values():
        found = [m for m in e["melanoma"] if m[1] >= 0.8 and m[2] >= 0.6]
        e["ring"] = found[0] if found else None
    out["max_score"] = max((e["max_score"] for e in out["epochs"].values()), default=0.0)
    out["seconds"] = seconds
    out["candidates"] = list(monitor.candidates)
    out["ring_ids"] = sorted(int(i) for i in ring_ids)
    out["clustered"] = monitor.candidates[0]["clustered"] if monitor.candidates else ""
    return out
