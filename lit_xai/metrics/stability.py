"""Augmentation stability: does the prediction and the explanation survive blur, sharpening, rotation and scaling?

For every probe and every augmentation ``T`` (albumentations, deterministic parameters) this reports the predicted
class and its probability on ``T(x)``, and the similarity (SSIM, Spearman; :mod:`lit_xai.metrics.drift`) between the
heatmap of ``T(x)`` and the *equally transformed* heatmap of ``x``, ``T(Phi(x))``, for the same explained class.

* **Alignment.** Geometric transforms are applied to the heatmap with the very same albumentations call (as a float
  mask with bilinear interpolation); pixel-level transforms (blur, sharpen) leave the heatmap unchanged. So a heatmap
  that follows the image content scores 1 (up to interpolation).
* **Outside the image.** Rotation by an angle and zooming out move content off the canvas and leave corners with no
  original content. The image's borders are filled by reflection (no artificial black corners, which a model
  trained with dark-corner shortcuts would react to); the comparison is made **only on the largest centred square
  whose pixels all come from inside the original image** (found by transforming an all-ones image with a constant 0
  border). Its side is reported as ``crop`` (fraction of the image side).
* **Normalised input.** Images arrive normalised; each is mapped to [0, 1] by its own min/max (an exact affine map),
  augmented in HWC float32 as albumentations expects, and mapped back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Optional, Union

import albumentations as A
import cv2
import numpy as np
import torch
from torch import nn

from ._evaluation import Explainer, check_batch, explain, predict
from .drift import spearman, ssim

__all__ = ["STABILITY_TRANSFORMS", "StabilityResult", "augmentation_stability", "apply_transform"]


def _affine(rotate: float = 0.0, scale: float = 1.0) -> Callable[[int], A.BasicTransform]:
    def make(border_mode: int) -> A.BasicTransform:
        return A.Affine(
            rotate=(rotate, rotate),
            scale=(scale, scale),
            border_mode=border_mode,
            fill=0,
            fill_mask=0,
            interpolation=cv2.INTER_LINEAR,
            mask_interpolation=cv2.INTER_LINEAR,  # the heatmap is a float map, not a label mask
            p=1.0,
        )

    return make


#: name -> factory(border_mode) of a deterministic albumentations transform; rotations are counter-clockwise
STABILITY_TRANSFORMS: dict[str, Callable[[int], A.BasicTransform]] = {
    "blur": lambda _: A.GaussianBlur(blur_limit=(5, 5), sigma_limit=(1.0, 1.0), p=1.0),
    "sharpen": lambda _: A.Sharpen(alpha=(0.5, 0.5), lightness=(1.0, 1.0), p=1.0),
    "rotate90": _affine(rotate=90.0),
    "rotate+12": _affine(rotate=12.0),
    "rotate-12": _affine(rotate=-12.0),
    "scale66": _affine(scale=0.66),
    "scale80": _affine(scale=0.80),
}


@dataclass
class StabilityResult:
    """Per transform x probe results of :func:`augmentation_stability` (all tensors on the CPU).

    Attributes:
        transforms: transform names, length ``T``.
        original_label, original_prob: ``(N,)`` prediction and its probability on the untouched images.
        label, prob: ``(T, N)`` predicted class on each augmented image and its probability.
        target_prob: ``(T, N)`` probability of the explained class on each augmented image.
        ssim, spearman: ``(T, N)`` similarity of ``Phi(T(x))`` to ``T(Phi(x))`` on the compared crop.
        crop: ``(T,)`` side of the compared centred square as a fraction of the image side.
    """

    transforms: list[str]
    original_label: torch.Tensor
    original_prob: torch.Tensor
    label: torch.Tensor
    prob: torch.Tensor
    target_prob: torch.Tensor
    ssim: torch.Tensor
    spearman: torch.Tensor
    crop: torch.Tensor
    extra: dict = field(default_factory=dict)

    def label_changes(self) -> torch.Tensor:
        """``(T,)`` number of probes whose predicted class differs from the original prediction."""
        return (self.label != self.original_label[None]).sum(1)


TransformSpec = Union[Sequence[str], Mapping[str, Callable[[int], A.BasicTransform]]]


def _resolve(transforms: TransformSpec) -> dict[str, Callable[[int], A.BasicTransform]]:
    if isinstance(transforms, Mapping):
        return dict(transforms)
    unknown = [t for t in transforms if t not in STABILITY_TRANSFORMS]
    if unknown:
        raise ValueError(f"unknown transforms {unknown}; choose from {list(STABILITY_TRANSFORMS)} or pass a mapping")
    return {t: STABILITY_TRANSFORMS[t] for t in transforms}


def apply_transform(
    factory: Callable[[int], A.BasicTransform], images: torch.Tensor, heatmaps: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Apply one transform to normalised ``images`` ``(N, C, H, W)`` and heatmaps ``(N, H, W)``.

    Returns the transformed images (same normalisation), transformed heatmaps and the ``(H, W)`` bool mask of
    pixels whose content comes from inside the original image.
    """
    x = images.detach().float().cpu()
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    span = (x.amax(dim=(1, 2, 3), keepdim=True) - lo).clamp_min(1e-12)
    x01 = ((x - lo) / span).permute(0, 2, 3, 1).numpy()
    heat = heatmaps.detach().float().cpu().numpy()
    reflect = A.Compose([factory(cv2.BORDER_REFLECT_101)])
    out_x, out_h = [], []
    for i in range(x.shape[0]):
        res = reflect(image=np.ascontiguousarray(x01[i]), mask=np.ascontiguousarray(heat[i]))
        out_x.append(torch.from_numpy(np.ascontiguousarray(res["image"])).float())
        out_h.append(torch.from_numpy(np.ascontiguousarray(res["mask"])).float())
    h, w = x.shape[2:]
    ones = np.ones((h, w, 1), dtype=np.float32)
    constant = A.Compose([factory(cv2.BORDER_CONSTANT)])
    valid = constant(image=ones, mask=np.ones((h, w), dtype=np.float32))["mask"]
    valid_mask = torch.from_numpy(np.ascontiguousarray(valid)) > 0.999  # any blend with the fill is outside
    images_t = torch.stack(out_x).permute(0, 3, 1, 2) * span + lo
    return images_t.to(images.device), torch.stack(out_h), valid_mask


def _central_square(valid: torch.Tensor) -> int:
    """Half-side ``r`` of the largest centred square (rows/cols ``c-r .. c+r-1``) inside ``valid``."""
    h, w = valid.shape
    best = 0
    for r in range(1, min(h, w) // 2 + 1):
        top, left = h // 2 - r, w // 2 - r
        if not bool(valid[top : top + 2 * r, left : left + 2 * r].all()):
            break
        best = r
    return best


def augmentation_stability(
    explainer: Explainer,
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor | int,
    transforms: TransformSpec = tuple(STABILITY_TRANSFORMS),
    heatmaps: Optional[torch.Tensor] = None,
) -> StabilityResult:
    """Prediction and explanation stability under augmentations, per probe x transform.

    Args:
        explainer: ``(model, images, targets) -> (N, H, W)``.
        model: classifier (evaluated on eval-mode copies; never changed).
        images: ``(N, C, H, W)`` normalised model input.
        targets: class explained on the original and on every augmented image.
        transforms: names in :data:`STABILITY_TRANSFORMS` or a mapping ``name -> factory(border_mode)`` returning
            a deterministic albumentations transform.
        heatmaps: ``Phi(x)`` if already computed.

    Example:
        >>> from lit_xai.models.architectures import build_architecture
        >>> from lit_xai.explainers import GradCAM
        >>> net = build_architecture("tiny_resnet", num_classes=2)
        >>> res = augmentation_stability(GradCAM(), net, torch.rand(2, 3, 32, 32), 0, transforms=["blur", "rotate90"])
        >>> tuple(res.ssim.shape), res.transforms
        ((2, 2), ['blur', 'rotate90'])
    """
    factories = _resolve(transforms)
    x, t = check_batch(model, images, targets)
    base = explain(explainer, model, x, t) if heatmaps is None else heatmaps.detach().float().to(x.device)
    probs0 = predict(model, x).cpu()
    original_prob, original_label = probs0.max(1)
    labels, probs, tprobs, ssims, spears, crops = [], [], [], [], [], []
    for name, factory in factories.items():
        xt, ht, valid = apply_transform(factory, x, base)
        p = predict(model, xt).cpu()
        prob, label = p.max(1)
        labels.append(label)
        probs.append(prob)
        tprobs.append(p.gather(1, t.cpu()[:, None])[:, 0])
        maps = explain(explainer, model, xt, t).cpu()
        r = _central_square(valid)
        if r < 2:
            raise ValueError(f"transform {name!r} leaves no part of the image inside the canvas to compare")
        h, w = valid.shape
        sl = (slice(None), slice(h // 2 - r, h // 2 + r), slice(w // 2 - r, w // 2 + r))
        ssims.append(ssim(maps[sl], ht[sl]))
        spears.append(spearman(maps[sl], ht[sl]))
        crops.append(2 * r / min(h, w))
    return StabilityResult(
        transforms=list(factories),
        original_label=original_label,
        original_prob=original_prob,
        label=torch.stack(labels),
        prob=torch.stack(probs),
        target_prob=torch.stack(tprobs),
        ssim=torch.stack(ssims),
        spearman=torch.stack(spears),
        crop=torch.tensor(crops),
    )
