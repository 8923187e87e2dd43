"""The lattice index of relevance maps: how much of a map is the checkerboard that strided layers print on it.

Strided convolutions and poolings (stride 2, and stride 4 after two of them) give input pixels an uneven number of
parents, so LRP maps of such networks can carry a grid at the lattice frequencies. The index is the share of a map's
non-DC spectral power in the FFT rows and columns ``k = H/4, H/2, 3H/4`` (and the same for ``W``), each widened by
``± 1`` bin: whole rows and columns of the spectrum, so stripes count as well as the 2-D checkerboard.

* a checkerboard scores 1, a smooth map about 0;
* white noise scores the bins' share of the spectrum (:func:`lattice_share`, about 0.08 at 224 px): a map that scores
  this has no preference for the lattice frequencies.

Example:
    >>> board = ((torch.arange(16)[:, None] + torch.arange(16)[None, :]) % 2).float()
    >>> round(float(lattice_index(board)), 6)
    1.0
"""

from __future__ import annotations

import torch

__all__ = ["lattice_index", "lattice_mask", "lattice_share"]


def _lines(size: int) -> list[int]:
    """The lattice frequencies of one axis (``size/4, size/2, 3 size/4`` rounded, each ± 1), DC left out."""
    centres = {round(size * q / 4) for q in (1, 2, 3)}
    return sorted({(c + d) % size for c in centres for d in (-1, 0, 1)} - {0})


def lattice_mask(height: int, width: int) -> torch.Tensor:
    """Boolean ``(H, W)`` mask of the FFT bins in a lattice row or column (DC excluded).

    >>> lattice_mask(8, 8).sum().item()  # rows and columns 1..7 of an 8 x 8 spectrum: every bin but DC
    63
    """
    if height < 4 or width < 4:
        raise ValueError(f"the lattice index needs maps of at least 4 x 4 pixels, got {height} x {width}")
    mask = torch.zeros(height, width, dtype=torch.bool)
    mask[_lines(height), :] = True
    mask[:, _lines(width)] = True
    mask[0, 0] = False
    return mask


def lattice_share(height: int, width: int) -> float:
    """The share of non-DC bins :func:`lattice_mask` counts: the expected index of white noise.

    >>> round(lattice_share(224, 224), 3)
    0.079
    """
    return lattice_mask(height, width).sum().item() / (height * width - 1)


def lattice_index(maps: torch.Tensor) -> torch.Tensor:
    """The share of each map's non-DC spectral power at the stride-2/4 lattice frequencies.

    Args:
        maps: ``(H, W)`` or ``(..., H, W)`` relevance maps (sum channels first); any real dtype.

    Returns:
        ``()`` or ``(...)`` float64 shares in ``[0, 1]``; NaN for a constant map (no non-DC power).
    """
    x = torch.as_tensor(maps).detach().to(torch.float64)
    if x.ndim < 2:
        raise ValueError(f"maps must be (H, W) or (..., H, W), got shape {tuple(x.shape)}")
    size = x.shape[-2] * x.shape[-1]
    centred = x - x.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fft2(centred).abs().square()
    mask = lattice_mask(x.shape[-2], x.shape[-1]).to(power.device)
    share = (power * mask).sum(dim=(-2, -1)) / power.sum(dim=(-2, -1))
    # a constant map has no non-DC power, so its share is undefined (NaN), not whatever the rounding of its mean
    # leaves: the mean of ``size`` values is off by at most ``size`` float64 epsilons of the largest value
    bound = size * torch.finfo(torch.float64).eps * x.abs().amax(dim=(-2, -1))
    constant = centred.abs().amax(dim=(-2, -1)) <= bound
    return torch.where(constant, torch.full_like(share, float("nan")), share)
