import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from lit_xai.metrics import cosine, drift_scores, spearman, ssim, topk_iou


def test_identical_maps_score_one():
    a = torch.randn(3, 20, 20)
    for name, values in drift_scores(a, a.clone()).items():
        assert torch.allclose(values, torch.ones(3), atol=1e-5), name


def test_spearman_matches_scipy_including_ties():
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 5, (4, 10, 10), generator=g).float()  # many ties
    b = a + torch.rand(4, 10, 10, generator=g) * 3
    ours = spearman(a, b)
    ref = [spearmanr(a[i].flatten().numpy(), b[i].flatten().numpy())[0] for i in range(4)]
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-5)


def test_measures_drop_for_unrelated_maps_and_are_scale_invariant():
    g = torch.Generator().manual_seed(1)
    a = torch.rand(8, 32, 32, generator=g)
    b = torch.rand(8, 32, 32, generator=g)
    assert spearman(a, b).abs().mean() < 0.1
    assert topk_iou(a, b, 0.1).mean() < 0.15  # chance level ~ 0.1 / (2 - 0.1)
    assert ssim(a, b).mean() < 0.2
    # relevance magnitude grows during training: similarity of patterns must not depend on it
    assert torch.allclose(ssim(a, 10 * a), torch.ones(8), atol=1e-4)
    assert torch.allclose(spearman(a, 10 * a), torch.ones(8), atol=1e-5)


def test_topk_iou_counts_overlap_exactly():
    a = torch.zeros(1, 10, 10)
    b = torch.zeros(1, 10, 10)
    a[0, 0, :10] = torch.arange(1, 11).float()  # top-10 = first row
    b[0, 0, :5] = torch.arange(1, 6).float()
    b[0, 1, :5] = 10 + torch.arange(1, 6).float()  # top-10 = half of row 0, half of row 1
    assert topk_iou(a, b, 0.1).item() == pytest.approx(5 / 15)


def test_sign_flip_is_detected():
    a = torch.randn(2, 16, 16)
    assert (cosine(a, -a) < -0.99).all()
    assert (spearman(a, -a) < -0.99).all()


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="equal shapes"):
        drift_scores(torch.rand(2, 8, 8), torch.rand(2, 8, 9))
    with pytest.raises(ValueError, match="unknown drift measure"):
        drift_scores(torch.rand(2, 8, 8), torch.rand(2, 8, 8), measures=("nope",))
