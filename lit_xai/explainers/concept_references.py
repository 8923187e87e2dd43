"""Reference images per concept by relevance maximization (RelMax, Achtibat et al., 2023).

For a concept (channel ``c`` of a layer) the reference samples are the pool images in which ``c`` receives the
most relevance for the given targets — *not* the highest activation (ActMax), which also picks images where the
channel fires but does not matter for the decision. Each reference comes with its conditional CRP heatmap
(initialised at the target logit, so it cannot be inverted the way activation-initialised localisation can, see
zennit-crp issue #11) and a crop box around the concept's relevance peak.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ._core import as_targets, explanation_model
from .crp import CRP

__all__ = ["ConceptReferences", "concept_references", "peak_box"]


@dataclass
class ConceptReferences:
    """Reference samples of ``K`` concepts, ``R`` references each (most relevant first).

    Attributes:
        layer: concept layer name (as given or as taken from the registry).
        channels: ``(K,)`` channel ids.
        indices: ``(K, R)`` indices into the pool.
        relevances: ``(K, R)`` relevance of the channel for each reference (its RelMax score).
        heatmaps: ``(K, R, H, W)`` conditional heatmaps of the channel on each reference image.
        boxes: ``(K, R, 4)`` crop boxes ``(top, left, bottom, right)`` in pixels, bottom/right exclusive.
    """

    layer: str
    channels: torch.Tensor
    indices: torch.Tensor
    relevances: torch.Tensor
    heatmaps: torch.Tensor
    boxes: torch.Tensor

    def crops(self, pool_images: torch.Tensor, size: int | None = None) -> torch.Tensor:
        """Crops of the reference images, ``(K, R, C, size, size)`` (bilinear resize; default: the box side)."""
        side = int((self.boxes[..., 2] - self.boxes[..., 0]).max())
        size = size or side
        out = []
        for idx, box in zip(self.indices.reshape(-1).tolist(), self.boxes.reshape(-1, 4).tolist()):
            top, left, bottom, right = (int(v) for v in box)
            crop = pool_images[idx : idx + 1, :, top:bottom, left:right]
            out.append(F.interpolate(crop.float(), size=(size, size), mode="bilinear", align_corners=False))
        k, r = self.indices.shape
        return torch.cat(out).reshape(k, r, pool_images.shape[1], size, size)


def peak_box(heatmaps: torch.Tensor, side: int, smooth: int | None = None) -> torch.Tensor:
    """Square boxes ``(N, 4)`` = ``(top, left, bottom, right)`` of ``side`` px around each map's relevance peak.

    The peak is the maximum of the *positive* relevance after a box filter of width ``smooth`` (default
    ``side // 4``), so a single noisy pixel does not move the box; boxes are shifted to stay inside the image.
    """
    n, h, w = heatmaps.shape
    side = max(1, min(side, h, w))
    smooth = max(1, smooth if smooth is not None else side // 4)
    pos = heatmaps.detach().float().clamp_min(0)[:, None]
    # odd window with 'same' padding keeps the argmax in input coordinates
    win = smooth | 1
    smoothed = F.avg_pool2d(pos, win, stride=1, padding=win // 2, count_include_pad=False)[:, 0]
    flat = smoothed.reshape(n, -1).argmax(1)
    cy, cx = flat // w, flat % w
    top = (cy - side // 2).clamp(0, h - side)
    left = (cx - side // 2).clamp(0, w - side)
    return torch.stack([top, left, top + side, left + side], dim=1)


def concept_references(
    model: nn.Module,
    pool_images: torch.Tensor,
    pool_targets: torch.Tensor,
    layer: str | None = None,
    channels: Sequence[int] | torch.Tensor | None = None,
    n_ref: int = 4,
    crp: CRP | None = None,
    crop_fraction: float = 0.5,
) -> ConceptReferences:
    """Relevance-maximization reference samples of concepts, with conditional heatmaps and crop boxes.

    Args:
        model: classifier (or a LightningModule holding it); a deep copy is explained.
        pool_images: ``(P, C, H, W)`` candidate images (normalized model input).
        pool_targets: ``(P,)`` class index per image whose logit starts the relevance (e.g. the true labels).
        layer: concept layer; ``None`` takes ``crp.layer`` or the registry default.
        channels: channel ids to find references for; ``None`` takes the ``crp.top_k`` channels with the highest
            total relevance over the pool.
        n_ref: references per channel (at most ``P``).
        crp: a configured :class:`~lit_xai.explainers.CRP` (composite, canonizers, batch size); default ``CRP()``.
        crop_fraction: box side as a fraction of the image side.

    Example:
        >>> import torch
        >>> from lit_xai.models.architectures import build_architecture
        >>> net = build_architecture("tiny_resnet", num_classes=2)
        >>> refs = concept_references(net, torch.rand(6, 3, 32, 32), torch.zeros(6, dtype=torch.long),
        ...                           layer="layer3", channels=[0, 5], n_ref=2)
        >>> refs.indices.shape, refs.heatmaps.shape, refs.boxes.shape
        (torch.Size([2, 2]), torch.Size([2, 2, 32, 32]), torch.Size([2, 2, 4]))
    """
    crp = crp or CRP()
    if not 0 < crop_fraction <= 1:
        raise ValueError(f"crop_fraction must lie in (0, 1], got {crop_fraction}")
    pool_targets = as_targets(pool_targets, pool_images.shape[0], torch.device("cpu"))
    n_ref = min(n_ref, pool_images.shape[0])
    if n_ref < 1:
        raise ValueError("need at least one pool image and n_ref >= 1")
    with explanation_model(model, crp.copy_model) as net:
        name = layer if layer is not None else crp.layer_for(net)
        rel = crp.relevances_on(net, pool_images, pool_targets, name)  # (P, C)
        if channels is None:
            ids = rel.sum(0).topk(min(crp.top_k, rel.shape[1])).indices.cpu()
        else:
            ids = torch.as_tensor(channels).long().reshape(-1).cpu()
            if ids.numel() == 0 or int(ids.min()) < 0 or int(ids.max()) >= rel.shape[1]:
                raise ValueError(f"channels must lie in [0, {rel.shape[1]}) for layer {name!r}, got {ids.tolist()}")
        scores, indices = rel[:, ids].T.topk(n_ref, dim=1)  # (K, R): RelMax ranking per channel
        flat_idx = indices.reshape(-1).cpu()
        heat, _ = crp.heatmaps_on(
            net, pool_images[flat_idx.to(pool_images.device)], pool_targets[flat_idx], name,
            ids.repeat_interleave(n_ref)[:, None],
        )  # fmt: skip
    heat = heat[:, 0]
    side = max(1, round(crop_fraction * min(heat.shape[-2:])))
    boxes = peak_box(heat, side)
    k = ids.numel()
    return ConceptReferences(
        layer=name,
        channels=ids,
        indices=indices.cpu(),
        relevances=scores.cpu(),
        heatmaps=heat.reshape(k, n_ref, *heat.shape[-2:]).cpu(),
        boxes=boxes.reshape(k, n_ref, 4).cpu(),
    )
