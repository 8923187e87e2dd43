"""The lattice index (issue 31): white noise scores the bins' share, a checkerboard 1, a smooth blob about 0."""

from __future__ import annotations

import math

import pytest
import torch

from lit_xai.metrics import lattice_index, lattice_mask, lattice_share

EPS = torch.finfo(torch.float64).eps


def test_white_noise_scores_the_share_of_the_lattice_bins():
    n, side = 32, 64
    maps = torch.randn(n, side, side, generator=torch.Generator().manual_seed(0))
    share = lattice_share(side, side)
    # each bin's power is exponential; about side^2 / 2 bins are independent (a real map's spectrum is Hermitian),
    # so one map's share has standard deviation sqrt(2 f (1 - f) / side^2); the mean of n maps 1/sqrt(n) of it
    sigma = math.sqrt(2 * share * (1 - share) / side**2 / n)
    assert abs(lattice_index(maps).mean().item() - share) < 6 * sigma


def test_the_mask_is_the_lattice_rows_and_columns_with_their_neighbours():
    mask = lattice_mask(224, 224)
    lines = [55, 56, 57, 111, 112, 113, 167, 168, 169]
    assert mask[lines, 5].all() and mask[5, lines].all() and not mask[5, 5] and not mask[0, 0]
    assert mask.sum().item() == 2 * 9 * 224 - 81
    assert lattice_share(224, 224) == pytest.approx((2 * 9 * 224 - 81) / (224**2 - 1), rel=1e-12)  # float64


@pytest.mark.parametrize("period", [2, 4])
def test_checkerboards_and_stripes_at_the_strides_score_one(period):
    i = torch.arange(32)
    board = torch.cos(2 * math.pi * (i[:, None] + i[None, :]) / period)
    stripes = torch.cos(2 * math.pi * i[:, None] / period).expand(32, 32)
    tolerance = 32 * 32 * EPS * 8  # the FFT's rounding on 32 x 32 float64 values of magnitude 1
    assert lattice_index(board).item() == pytest.approx(1.0, abs=tolerance)
    assert lattice_index(stripes).item() == pytest.approx(1.0, abs=tolerance)


def test_a_smooth_blob_scores_about_zero_and_a_constant_map_nan():
    y, x = torch.meshgrid(torch.arange(224.0), torch.arange(224.0), indexing="ij")
    blob = torch.exp(-((x - 100) ** 2 + (y - 120) ** 2) / (2 * 30.0**2))
    assert lattice_index(blob).item() < 1e-6  # a Gaussian's spectrum at 55 of 224 bins is e^-80 of its peak
    assert math.isnan(lattice_index(torch.full((3, 16, 16), 2.5))[1].item())


def test_a_grid_on_a_smooth_map_raises_the_index_with_its_power():
    y, x = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    blob = torch.exp(-((x - 30) ** 2 + (y - 34) ** 2) / (2 * 8.0**2))
    grid = torch.cos(math.pi * (x + y))
    scores = [lattice_index(blob + a * grid).item() for a in (0.0, 0.01, 0.1, 1.0)]
    assert scores == sorted(scores) and scores[0] < 1e-6 and scores[-1] > 0.9
    with pytest.raises(ValueError, match="at least 4"):
        lattice_index(torch.zeros(2, 3))
