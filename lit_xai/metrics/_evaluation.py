"""Shared plumbing of the quality metrics: side-effect-free model scores, explainer calls, seeded generators."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Union

import torch
from torch import nn

from ..contracts import check_logits
from ..explainers._core import as_targets, explanation_model

__all__ = ["Explainer", "Score", "check_batch", "device_of", "explain", "generator", "predict", "target_scores"]

#: an explainer: ``(model, images (N, C, H, W), targets (N,)) -> heatmaps (N, H, W)``
Explainer = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
#: what "the model's output for the explained class" means: the raw logit or the softmax probability
Score = Literal["logit", "probability"]


def device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def check_batch(
    model: nn.Module, images: torch.Tensor, targets: torch.Tensor | int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images as a float ``(N, C, H, W)`` tensor on the model's device and targets as ``(N,)`` long on it."""
    if images.ndim != 4:
        raise ValueError(f"images must be a (N, C, H, W) batch, got shape {tuple(images.shape)}")
    device = device_of(model)
    x = images.detach().to(device=device, dtype=torch.float32).clone()  # clone: may be an inference tensor
    return x, as_targets(targets, x.shape[0], device)


def generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed`` (noise is drawn on the CPU, then moved, so values match on any device)."""
    return torch.Generator(device="cpu").manual_seed(int(seed))


def target_scores(
    model: nn.Module, images: torch.Tensor, targets: torch.Tensor, score: Score = "logit", batch_size: int = 256
) -> torch.Tensor:
    """Score of class ``targets[i]`` for every image ``(M,)``, on an eval-mode copy of ``model`` under ``no_grad``.

    ``images`` ``(M, C, H, W)`` and ``targets`` ``(M,)`` must already be on the model's device.
    """
    if score not in ("logit", "probability"):
        raise ValueError(f"score must be 'logit' or 'probability', got {score!r}")
    out = []
    with explanation_model(model) as net, torch.no_grad():
        for i in range(0, images.shape[0], batch_size):
            logits = check_logits(net(images[i : i + batch_size])).float()
            values = logits.softmax(1) if score == "probability" else logits
            out.append(values.gather(1, targets[i : i + batch_size, None].to(values.device))[:, 0])
    return torch.cat(out) if out else torch.zeros(0, device=images.device)


def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Softmax probabilities ``(M, K)`` on an eval-mode copy of ``model`` under ``no_grad``."""
    out = []
    with explanation_model(model) as net, torch.no_grad():
        for i in range(0, images.shape[0], batch_size):
            out.append(net(images[i : i + batch_size]).float().softmax(1))
    return torch.cat(out)


def explain(explainer: Explainer, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Call ``explainer`` and check that it returned one ``(H, W)`` map per image; float32 on the images' device."""
    maps = explainer(model, images, targets)
    if not isinstance(maps, torch.Tensor) or maps.ndim != 3 or maps.shape[0] != images.shape[0]:
        shape: Union[tuple, str] = tuple(maps.shape) if isinstance(maps, torch.Tensor) else type(maps).__name__
        raise ValueError(
            f"explainer {explainer!r} must return heatmaps of shape (N, H, W) = ({images.shape[0]}, H, W), got "
            f"{shape}; wrap concept explainers (CRP) in a callable that returns one map per image"
        )
    return maps.detach().float().to(images.device)
