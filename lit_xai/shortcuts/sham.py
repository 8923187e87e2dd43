"""Sham edits: the controls of the causal reliance tests.

A counterfactual edit (insert a ring, inpaint it away) changes a model's output for two reasons: the model may rely
on the artifact, or *any* edit of that size and kind moves the output (out-of-distribution pixels, a smoothed
border). A sham edit has the size, place and kind of the real one but not the artifact's identity, so
``real - sham`` isolates the first reason:

* :func:`sham_insert` — the control of the insertion test, on the same images as the real insertion. Two kinds:
  ``"mean"`` paints the artifact's region with the image's own mean colour (same shape, same area, neutral
  content); ``"shuffle"`` applies the artifact's own pixel changes with their patches permuted over the image (same
  amount of darkening or colour, no shape).
* :func:`sham_masks` — the control of the removal test: artifact-shaped regions at a random place (a random flip /
  transpose of a real artifact mask, so a border ring stays at the border and a marker moves to another border)
  on images *without* the artifact, inpainted by the same remover as the real removal.

Example:
    >>> import torch
    >>> images = torch.full((2, 3, 16, 16), 0.8)
    >>> masks = torch.zeros(2, 16, 16, dtype=torch.bool); masks[:, :4] = True
    >>> real = torch.where(masks[:, None], 0.1, images)
    >>> sham = sham_insert(images, real, masks, kind="mean")
    >>> bool(torch.allclose(sham, images))  # a flat image: the neutral colour is the image's own
    True
    >>> sham_masks(masks, 3, torch.Generator().manual_seed(0)).sum((1, 2)).tolist()  # same area, moved
    [64, 64, 64]
"""

from __future__ import annotations

from typing import Literal

import torch

__all__ = ["SHAM_KINDS", "sham_insert", "sham_masks"]

#: the sham insertion kinds (see :func:`sham_insert`)
SHAM_KINDS: tuple[str, ...] = ("mean", "shuffle")


def sham_insert(
    images01: torch.Tensor,
    edited01: torch.Tensor,
    masks: torch.Tensor | None,
    kind: Literal["mean", "shuffle"] = "mean",
    generator: torch.Generator | None = None,
    patch: int | None = None,
) -> torch.Tensor:
    """The sham control of an insertion: a neutral edit of the same area and place as ``images01 -> edited01``.

    Args:
        images01: ``(N, C, H, W)`` clean images in [0, 1].
        edited01: the same images with the artifact inserted.
        masks: ``(N, H, W)`` bool regions the inserter reported; ``None`` takes the pixels it changed.
        kind: ``"mean"``: the region painted with the image's mean colour outside it (same shape, neutral content);
            ``"shuffle"``: the real edit's pixel changes cut into ``patch`` x ``patch`` tiles whose places are
            permuted over the whole image (same intensities, no shape).
        generator: randomness of ``"shuffle"``.
        patch: tile side for ``"shuffle"`` (default: an eighth of the shorter side, at least 2).

    Returns:
        ``(N, C, H, W)`` sham-edited images in [0, 1].

    Example:
        >>> import torch
        >>> images = 0.5 + 0.5 * torch.rand(2, 3, 16, 16)
        >>> edited = images * 0.5
        >>> sham = sham_insert(images, edited, None, kind="shuffle", generator=torch.Generator().manual_seed(0))
        >>> bool(torch.isclose((sham - images).sum(), (edited - images).sum(), rtol=1e-4))  # same total change
        True
    """
    if images01.shape != edited01.shape or images01.ndim != 4:
        raise ValueError(
            f"images01 and edited01 must be the same (N, C, H, W) batch, got {tuple(images01.shape)} and "
            f"{tuple(edited01.shape)}"
        )
    n, c, h, w = images01.shape
    if masks is None:
        masks = (edited01 - images01).abs().amax(1) > 1e-6
    masks = masks.to(images01.device).bool()
    if masks.shape != (n, h, w):
        raise ValueError(f"masks must be (N, H, W) = {(n, h, w)}, got {tuple(masks.shape)}")
    if kind == "mean":
        keep = (~masks).unsqueeze(1).to(images01.dtype)
        count = keep.sum((2, 3)).clamp_min(1.0)
        mean = (images01 * keep).sum((2, 3)) / count  # (N, C): the colour of the image outside the region
        mean = torch.where(keep.sum((1, 2, 3))[:, None] > 0, mean, images01.mean((2, 3)))
        return torch.where(masks.unsqueeze(1), mean[:, :, None, None], images01)
    if kind == "shuffle":
        side = patch if patch is not None else max(2, min(h, w) // 8)
        gh, gw = -(-h // side), -(-w // side)
        delta = torch.zeros(n, c, gh * side, gw * side, dtype=images01.dtype, device=images01.device)
        delta[:, :, :h, :w] = edited01 - images01
        tiles = delta.reshape(n, c, gh, side, gw, side).permute(0, 2, 4, 1, 3, 5).reshape(n, gh * gw, c, side, side)
        out = torch.empty_like(tiles)
        for i in range(n):
            out[i] = tiles[i, torch.randperm(gh * gw, generator=generator)]
        moved = out.reshape(n, gh, gw, c, side, side).permute(0, 3, 1, 4, 2, 5).reshape(n, c, gh * side, gw * side)
        return (images01 + moved[:, :, :h, :w]).clamp(0.0, 1.0)
    raise ValueError(f"unknown sham kind {kind!r}; choose one of {SHAM_KINDS}")


def sham_masks(masks: torch.Tensor, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` artifact-shaped regions at random places: real masks (cycled), each randomly flipped / transposed.

    A flip or transpose keeps a region's shape, area and distance to the border, so a border ring stays a border
    ring and a marker near one border lands near another; the regions are then inpainted on images *without* the
    artifact, with the same remover as the real removal.

    Args:
        masks: ``(M, H, W)`` bool masks of real artifacts (``M >= 1``).
        n: number of sham masks.
        generator: randomness of the transforms.

    Returns:
        ``(n, H, W)`` bool masks (transposes only for square images).
    """
    if masks.ndim != 3 or len(masks) == 0:
        raise ValueError(f"masks must be a non-empty (M, H, W) batch, got {tuple(masks.shape)}")
    square = masks.shape[1] == masks.shape[2]
    out = []
    for i in range(n):
        m = masks[i % len(masks)].bool()
        code = int(torch.randint(8 if square else 4, (), generator=generator))
        if code & 1:
            m = m.flip(0)
        if code & 2:
            m = m.flip(1)
        if code & 4:
            m = m.t()
        out.append(m)
    return torch.stack(out) if out else masks.new_zeros((0, *masks.shape[1:]), dtype=torch.bool)
