"""Cascading model-parameter randomisation test (Adebayo et al. 2018, "Sanity Checks for Saliency Maps").

The layers of a **copy** of the model are re-initialised one after another, from the output layer down to the
input (cascading, "top_down" in Quantus' ``MPRT``); after each step the heatmaps of the partly randomised copy are
compared with the trained model's (Spearman, Spearman of absolute values, SSIM). An explanation that depends on the
learned parameters must become dissimilar; one that stays similar is explaining the input, not the model.

Re-initialisation calls each module's own ``reset_parameters()`` (its default init, as Quantus), which for batch
norms means the identity (weight 1, bias 0, running statistics reset). It runs under a forked, seeded RNG, so the
randomised weights are reproducible and the caller's global RNG is untouched.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from ._evaluation import Explainer, check_batch, explain
from .drift import spearman, ssim

__all__ = ["RandomizationResult", "cascade_layers", "randomization_check"]


@dataclass
class RandomizationResult:
    """Similarity of the heatmaps after each cascading step to the trained model's (tensors on the CPU).

    Attributes:
        layers: names of the randomised units, in the order they were randomised (output side first); step ``j``
            has randomised ``layers[: j + 1]``.
        spearman, spearman_abs, ssim: ``(L, N)`` similarity per step and probe.
    """

    layers: list[str]
    spearman: torch.Tensor
    spearman_abs: torch.Tensor
    ssim: torch.Tensor


def _resettable(module: nn.Module) -> bool:
    return any(True for _ in module.parameters()) and any(
        callable(getattr(m, "reset_parameters", None)) and any(True for _ in m.parameters(recurse=False))
        for m in module.modules()
    )


def cascade_layers(model: nn.Module, granularity: str = "block") -> list[str]:
    """Names of the units to randomise, output side first.

    Args:
        model: the classifier (or a LightningModule holding a registry network).
        granularity: ``"block"`` = the children of the network that hold parameters (e.g. ``fc``, ``layer4``, ...,
            ``conv1`` of a ResNet: few, cheap steps) or ``"layer"`` = every module with its own parameters and a
            ``reset_parameters`` method (Adebayo's per-layer cascade; 25 steps for ``tiny_resnet``).
    """
    # descend through wrappers (a LightningModule holding the network, Sequential(net)) to the network itself: the
    # first module that holds parameters itself or spreads them over several children
    prefix, net = "", model
    while not any(True for _ in net.parameters(recurse=False)):
        holders = [(n, m) for n, m in net.named_children() if any(True for _ in m.parameters())]
        if len(holders) != 1:
            break
        name, net = holders[0]
        prefix = f"{prefix}.{name}" if prefix else name
    join = lambda n: f"{prefix}.{n}" if prefix else n  # noqa: E731
    if granularity == "block":
        names = [join(n) for n, m in net.named_children() if _resettable(m)]
    elif granularity == "layer":
        names = [
            join(n)
            for n, m in net.named_modules()
            if n and callable(getattr(m, "reset_parameters", None)) and any(True for _ in m.parameters(recurse=False))
        ]
    else:
        raise ValueError(f"granularity must be 'block' or 'layer', got {granularity!r}")
    if not names:
        raise ValueError(f"{type(model).__name__} has no parameterised layers to randomise")
    return names[::-1]


def _reset(module: nn.Module) -> None:
    for m in module.modules():
        if callable(getattr(m, "reset_parameters", None)) and any(True for _ in m.parameters(recurse=False)):
            m.reset_parameters()
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()


def randomization_check(
    explainer: Explainer,
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor | int,
    layers: Optional[Sequence[str]] = None,
    granularity: str = "block",
    max_steps: Optional[int] = None,
    seed: int = 0,
    heatmaps: Optional[torch.Tensor] = None,
) -> RandomizationResult:
    """Cascading randomisation, output layer first; similarity of the maps per step to the trained maps.

    Args:
        explainer: ``(model, images, targets) -> (N, H, W)``.
        model: trained classifier; only a deep copy is randomised.
        images: ``(N, C, H, W)`` probes.
        targets: explained class per probe (the same class after every step).
        layers: module names to randomise in this order; default :func:`cascade_layers` (output side first).
        granularity: see :func:`cascade_layers` (ignored when ``layers`` is given).
        max_steps: stop after this many steps (the top of the network), to bound cost.
        seed: seeds the re-initialisation.
        heatmaps: the trained model's maps if already computed.

    Example:
        >>> from lit_xai.models.architectures import build_architecture
        >>> from lit_xai.explainers import LRP
        >>> net = build_architecture("tiny_resnet", num_classes=2)
        >>> res = randomization_check(LRP(), net, torch.rand(2, 3, 32, 32), 0, max_steps=2)
        >>> res.layers, tuple(res.spearman.shape)
        (['fc', 'layer4'], (2, 2))
    """
    x, t = check_batch(model, images, targets)
    names = list(layers) if layers is not None else cascade_layers(model, granularity)
    if max_steps is not None:
        names = names[: max(0, int(max_steps))]
    modules = dict(model.named_modules())
    missing = [n for n in names if n not in modules]
    if missing:
        raise ValueError(f"layers {missing} not found in {type(model).__name__}; see cascade_layers(model)")
    base = explain(explainer, model, x, t) if heatmaps is None else heatmaps.detach().float().to(x.device)
    with torch.inference_mode(False):
        rand = copy.deepcopy(model)
    rand_modules = dict(rand.named_modules())
    device = next(rand.parameters()).device
    fork_devices = [device.index or 0] if device.type == "cuda" else []
    sp, sp_abs, ss = [], [], []
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(seed)
        for name in names:
            with torch.no_grad():
                _reset(rand_modules[name])
            maps = explain(explainer, rand, x, t).cpu()
            ref = base.cpu()
            sp.append(spearman(maps, ref))
            sp_abs.append(spearman(maps.abs(), ref.abs()))
            ss.append(ssim(maps, ref))
    del rand
    empty = torch.zeros(0, x.shape[0])
    return RandomizationResult(
        layers=names,
        spearman=torch.stack(sp) if sp else empty,
        spearman_abs=torch.stack(sp_abs) if sp_abs else empty,
        ssim=torch.stack(ss) if ss else empty,
    )
