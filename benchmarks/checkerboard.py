"""Checkerboard artifacts in LRP heatmaps, per composite.

Strided convolutions and poolings give input pixels an uneven number of "parents" (a 3x3 kernel with stride 2 covers
every other row/column twice), so relevance maps can carry a grid pattern at the stride frequencies. We measure the
share of a heatmap's spectral energy (DC excluded) in the 2-D FFT bins at multiples of ``H/p`` and ``W/p`` for the
periods ``p`` in ``periods`` (default 2 and 4: the Nyquist frequency ``H/2`` and ``H/4``, ``3H/4``), including the
bins where one axis is 0 (stripes). A pure checkerboard scores 1, a smooth map about 0, and white noise the fraction
of bins counted (:func:`stride_fraction`); ``enrichment`` = score / that fraction (1 = no preference for the stride
frequencies). Because a noisier map lowers that share without having fewer artifacts, we also report the
``peak contrast`` (:func:`stride_peak_contrast`): mean power at the stride bins over the mean power of their
8-neighbour bins, from the batch-averaged spectrum (about 1 for noise or smooth content, >> 1 for a grid pattern).

Inputs are smooth random images (bicubic-upsampled noise, no energy of their own at the stride frequencies); networks
are random-init with batch-norm statistics taken from one batch, so what is measured is the architecture's and the
rules' contribution, not learned features.

Run:
    OMP_NUM_THREADS=1 python -m benchmarks checkerboard                     # tiny_resnet (and small nets), 32 px
    OMP_NUM_THREADS=1 python -m benchmarks checkerboard --arch resnet50 --side 112 --n 4
    # the trained demo model on its own validation images: grid contrast and relevance on the ring per composite
    OMP_NUM_THREADS=1 python -m benchmarks checkerboard --checkpoint lightning_logs/demo/version_0/checkpoints/last.ckpt
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import torch
from torch import nn

from lit_xai.explainers import COMPOSITES, lrp_relevance
from lit_xai.models.architectures import build_architecture
from lit_xai.models.batchnorm import calibrate_batch_norm

__all__ = [
    "composite_scores",
    "smooth_images",
    "stride_energy",
    "stride_fraction",
    "stride_mask",
    "stride_peak_contrast",
]


def stride_mask(height: int, width: int, periods: Sequence[int] = (2, 4)) -> torch.Tensor:
    """Boolean ``(H, W)`` mask of the FFT bins at multiples of ``H/p`` (rows) and ``W/p`` (columns), DC excluded."""
    rows = sorted({k * height // p for p in periods if height % p == 0 for k in range(p)})
    cols = sorted({k * width // p for p in periods if width % p == 0 for k in range(p)})
    mask = torch.zeros(height, width, dtype=torch.bool)
    mask[torch.tensor(rows)[:, None], torch.tensor(cols)[None, :]] = True
    mask[0, 0] = False
    return mask


def stride_fraction(height: int, width: int, periods: Sequence[int] = (2, 4)) -> float:
    """Fraction of non-DC bins counted by :func:`stride_mask` (the expected score of white noise)."""
    return stride_mask(height, width, periods).sum().item() / (height * width - 1)


def stride_energy(heatmaps: torch.Tensor, periods: Sequence[int] = (2, 4)) -> torch.Tensor:
    """Share ``(N,)`` of each ``(N, H, W)`` heatmap's non-DC spectral energy at the stride frequencies.

    Example:
        >>> board = (torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2
        >>> round(stride_energy(board[None].float()).item(), 6)
        1.0
    """
    maps = heatmaps.double()
    maps = maps - maps.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fft2(maps).abs() ** 2
    mask = stride_mask(maps.shape[-2], maps.shape[-1], periods).to(power.device)
    total = power.sum(dim=(-2, -1)).clamp_min(1e-300)
    return (power * mask).sum(dim=(-2, -1)) / total


def stride_peak_contrast(heatmaps: torch.Tensor, periods: Sequence[int] = (2, 4)) -> float:
    """Mean power at the stride bins over the mean power of their 8-neighbour (non-stride, non-DC) bins, from the
    spectrum averaged over the ``(N, H, W)`` batch: about 1 without a grid pattern, large with one.

    Example:
        >>> 0.7 < stride_peak_contrast(torch.randn(16, 32, 32, generator=torch.Generator().manual_seed(0))) < 1.3
        True
    """
    maps = heatmaps.double()
    maps = maps - maps.mean(dim=(-2, -1), keepdim=True)
    power = (torch.fft.fft2(maps).abs() ** 2).mean(0)
    mask = stride_mask(maps.shape[-2], maps.shape[-1], periods)
    neighbours = torch.zeros_like(mask)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            neighbours |= torch.roll(mask, (dy, dx), (0, 1))
    neighbours &= ~mask
    neighbours[0, 0] = False
    return (power[mask].mean() / power[neighbours].mean().clamp_min(1e-300)).item()


def smooth_images(n: int, side: int, seed: int = 0) -> torch.Tensor:
    """``(n, 3, side, side)`` unit-variance images: 8x8 noise upsampled bicubically (low-pass, natural-ish)."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.randn(n, 3, 8, 8, generator=generator)
    images = nn.functional.interpolate(coarse, size=(side, side), mode="bicubic", align_corners=False)
    return (images - images.mean()) / images.std()


def composite_scores(
    arch: str, composites: Sequence[str] | None = None, n: int = 8, side: int = 32, seed: int = 0
) -> dict[str, tuple[float, float]]:
    """``{composite: (mean stride energy, peak contrast)}`` of LRP heatmaps of ``arch`` (random-init network, BN
    statistics of one batch of smooth images, argmax class).

    Example:
        >>> energy, contrast = composite_scores("tiny_resnet", ["epsilon_plus_flat"], n=2)["epsilon_plus_flat"]
        >>> 0.0 <= energy <= 1.0 and contrast > 0.0
        True
    """
    torch.manual_seed(seed)
    net = build_architecture(arch, num_classes=10)
    calibrate_batch_norm(net, smooth_images(16, side, seed + 1))
    images = smooth_images(n, side, seed + 2)
    with torch.no_grad():
        targets = net(images).argmax(1)
    scores = {}
    for name in composites or list(COMPOSITES):
        heatmaps = lrp_relevance(net, images, targets, composite=name).sum(1)
        scores[name] = (stride_energy(heatmaps).mean().item(), stride_peak_contrast(heatmaps))
    return scores


def trained_scores(
    checkpoint: str, composites: Sequence[str] | None = None, n: int = 16, side: int = 96
) -> dict[str, tuple[float, float, float]]:
    """``{composite: (benign peak contrast, ringed peak contrast, relevance ratio on the ring)}`` of the demo's
    trained model (``ImageClassifier`` checkpoint) on the demo's validation images: ``n`` benign images explained
    for their class, ``n`` ringed melanomas explained for melanoma (ratio > 1: relevance concentrates on the ring).
    """
    from lit_xai.artifacts.reliance import relevance_in_mask
    from lit_xai.datamodules import SyntheticShortcutDataModule
    from lit_xai.models import ImageClassifier

    net = ImageClassifier.load_from_checkpoint(checkpoint, map_location="cpu").net.eval()
    dm = SyntheticShortcutDataModule(num_train=16, num_val=400, num_test=0, image_size=side, augment=False)
    data = dm.dataset("val")
    items = [data[i] for i in range(len(data))]
    benign = [it for it in items if int(it["target"]) == 0][:n]
    ringed = [it for it in items if int(it["target"]) == 1 and bool(it["artifact_mask"].any())][:n]
    scores = {}
    for name in composites or list(COMPOSITES):
        out = []
        for group, cls in ((benign, 0), (ringed, 1)):
            images = torch.stack([it["image"] for it in group])
            heat = lrp_relevance(net, images, torch.full((len(group),), cls), composite=name).sum(1)
            out.append((stride_peak_contrast(heat), heat))
        masks = torch.stack([it["artifact_mask"] for it in ringed]).bool()
        ratio = relevance_in_mask(out[1][1], masks).nanmean().item()
        scores[name] = (out[0][0], out[1][0], ratio)
    return scores


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--arch",
        nargs="+",
        default=["tiny_resnet", "tiny_resnet_attention", "tiny_densenet", "tiny_efficientnet_relu", "tiny_vgg"],
    )
    parser.add_argument("--side", type=int, default=32)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--checkpoint", help="measure this trained ImageClassifier (the demo's) instead")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.checkpoint:
        print(f"{'composite':28s} {'benign contrast':>16s} {'ringed contrast':>16s} {'ring relevance ratio':>21s}")
        scores = trained_scores(args.checkpoint, n=args.n, side=96 if args.side == 32 else args.side)
        for name, (benign, ringed, ratio) in sorted(scores.items(), key=lambda kv: kv[1][0]):
            print(f"{name:28s} {benign:16.2f} {ringed:16.2f} {ratio:21.2f}", flush=True)
        return
    fraction = stride_fraction(args.side, args.side)
    baseline = stride_energy(smooth_images(args.n, args.side, 2).sum(1)).mean().item()
    print(f"{args.side}px, {args.n} images; white-noise share {fraction:.4f}; input images' own share {baseline:.2e}")
    print(f"{'architecture':24s} {'composite':28s} {'stride energy':>14s} {'enrichment':>11s} {'peak contrast':>14s}")
    for arch in args.arch:
        scores = composite_scores(arch, n=args.n, side=args.side)
        for name, (energy, contrast) in sorted(scores.items(), key=lambda kv: kv[1][1]):
            print(f"{arch:24s} {name:28s} {energy:14.4f} {energy / fraction:11.1f} {contrast:14.1f}", flush=True)


if __name__ == "__main__":
    main()
