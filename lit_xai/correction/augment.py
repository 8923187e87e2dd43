"""A-ClArC in input space: insert the artifact into training images so that it stops predicting the label.

Augmentative ClArC (Anders et al. 2022, "Finding and removing Clever Hans") fine-tunes the model on data where the
artifact occurs in *every* class, so it carries no information about the label and the model has no reason to use it.
The paper adds the artifact through a linear model in a layer's activations (move along the CAV to the artifact
images' mean); here the artifact is known and has a registered inserter (:func:`lit_xai.artifacts.get_artifact`), so
it is drawn into the images themselves: every variation the inserter produces (radius, darkness, offset of the ring)
is seen by the network, not one direction of it.

How many images get it: :func:`equalising_probabilities` chooses, per class ``c`` with artifact rate ``r_c``, the
probability ``q_c = (r* - r_c) / (1 - r_c)`` of inserting it into an artifact-free image, so every class ends with the
same rate ``r* = max_c r_c`` (or a given ``target_rate``): ``P(artifact | class)`` no longer depends on the class.

Example:
    >>> import torch
    >>> q = equalising_probabilities(torch.tensor([0.0, 0.3]))
    >>> [round(v, 3) for v in q.tolist()]
    [0.3, 0.0]
    >>> skin = torch.full((4, 3, 32, 32), 0.7)
    >>> out, inserted = insert_artifact(
    ...     skin, torch.tensor([0, 0, 1, 1]), torch.tensor([False, False, True, False]), torch.tensor([1.0, 0.0]),
    ...     generator=torch.Generator().manual_seed(0))
    >>> inserted.tolist(), bool((out[2:] == skin[2:]).all()), bool((out[:2] < skin[:2]).any())
    ([True, True, False, False], True, True)
"""

from __future__ import annotations

from typing import Optional

import torch

from ..artifacts import get_artifact

__all__ = ["equalising_probabilities", "insert_artifact"]


def equalising_probabilities(rates: torch.Tensor, target_rate: Optional[float] = None) -> torch.Tensor:
    """``(K,)`` probability of inserting the artifact into an artifact-free image of each class.

    Args:
        rates: ``(K,)`` the artifact's rate in each class (fraction of the class's images that carry it).
        target_rate: the rate every class should reach (default: the highest class rate, the least augmentation
            that makes the artifact independent of the class). Classes already above it get nothing.

    Returns:
        ``q_c = clip((target - r_c) / (1 - r_c), 0, 1)``.
    """
    r = torch.as_tensor(rates, dtype=torch.float32).clamp(0.0, 1.0)
    if r.ndim != 1 or r.numel() == 0:
        raise ValueError(f"rates must be a non-empty (K,) tensor of per-class artifact rates, got {tuple(r.shape)}")
    target = float(r.max()) if target_rate is None else float(target_rate)
    if not 0.0 <= target <= 1.0:
        raise ValueError(f"target_rate must be in [0, 1], got {target_rate}")
    return ((target - r) / (1.0 - r).clamp_min(1e-6)).clamp(0.0, 1.0)


def insert_artifact(
    images01: torch.Tensor,
    targets: torch.Tensor,
    has_artifact: torch.Tensor,
    probabilities: torch.Tensor,
    artifact: str = "ring",
    generator: Optional[torch.Generator] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Insert the registered ``artifact`` into artifact-free images, each with its class's probability.

    Args:
        images01: ``(N, C, H, W)`` images in [0, 1].
        targets: ``(N,)`` class indices (indices of ``probabilities``).
        has_artifact: ``(N,)`` bool, the images that already carry the artifact (left as they are).
        probabilities: ``(K,)`` per-class insertion probability (:func:`equalising_probabilities`).
        artifact: a registered artifact with an inserter.
        generator: CPU generator of the choice and of the inserter's variations (the global RNG is not used).

    Returns:
        ``(images01 with the insertions, (N,) bool inserted)``; the input is not modified.
    """
    art = get_artifact(artifact)
    if art.insert is None:
        raise ValueError(f"artifact {artifact!r} has no registered inserter; A-ClArC needs one (register_artifact)")
    if images01.ndim != 4:
        raise ValueError(f"images01 must be (N, C, H, W), got {tuple(images01.shape)}")
    t = targets.detach().long().view(-1).cpu()
    q = torch.as_tensor(probabilities, dtype=torch.float32).cpu()
    if t.numel() != images01.shape[0] or (t.numel() and (t.min() < 0 or t.max() >= q.numel())):
        raise ValueError(f"targets must be {images01.shape[0]} class indices in [0, {q.numel()})")
    draw = torch.rand(t.numel(), generator=generator)
    chosen = (draw < q[t]) & ~has_artifact.detach().view(-1).cpu().bool()
    out = images01.clone()
    if chosen.any():
        index = chosen.nonzero().view(-1).to(images01.device)
        inserted, _ = art.insert(images01[index], generator=generator)
        out[index] = inserted.to(out.dtype)
    return out, chosen
