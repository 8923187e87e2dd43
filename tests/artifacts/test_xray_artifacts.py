"""X-ray burnt-in marker detector and inserter (measured on generated X-rays), and relevance outside the ROI."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _xray_images import xray_images

from lit_xai.artifacts import (
    DETECTORS,
    TEXT_MARKER_THRESHOLD,
    audit_dataset,
    detect_text_marker,
    insert_text_marker,
    relevance_outside_roi,
)


def _iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a & b).flatten(1).sum(1).float() / (a | b).flatten(1).sum(1).clamp(min=1).float()


@pytest.mark.parametrize("size", [128, 224])
def test_precision_recall_and_masks_on_generated_xrays(size):
    clean = xray_images(60, size, seed=1, black_bars=True)  # black bars and 1-px borders are not markers
    marked, truth = insert_text_marker(xray_images(60, size, seed=2, black_bars=True), torch.Generator().manual_seed(3))
    images = torch.cat([clean, marked])
    is_marked = torch.arange(120) >= 60
    scores, masks = detect_text_marker(images)
    flagged = scores >= TEXT_MARKER_THRESHOLD
    tp = (flagged & is_marked).sum().item()
    precision, recall = tp / max(1, flagged.sum().item()), tp / 60
    false_positive_rate = (flagged & ~is_marked).float().mean().item() * 2
    # measured (shared 2-core machine, seeds above): precision 1.0, recall 0.87-0.92, FPR 0.0 at 128 and 224 px
    assert precision >= 0.95 and recall >= 0.8 and false_positive_rate <= 0.03, (precision, recall)
    hit = flagged[60:]
    assert _iou(masks[60:][hit], truth[hit]).median() >= 0.9  # the mask is the marker, not the anatomy
    assert not masks[:60][~flagged[:60]].any()  # unflagged images have empty masks


@pytest.mark.parametrize("kind", ["letter", "ruler", "rectangle"])
def test_every_marker_kind_is_found(kind):
    marked, truth = insert_text_marker(xray_images(30, 160, seed=4), torch.Generator().manual_seed(5), kinds=(kind,))
    scores, masks = detect_text_marker(marked)
    assert (scores >= TEXT_MARKER_THRESHOLD).float().mean() >= 0.8
    assert ((masks & truth).flatten(1).any(1) | (scores < TEXT_MARKER_THRESHOLD)).all()


def test_inserter_is_seeded_and_marks_only_its_mask():
    images = xray_images(8, 96, seed=6)
    a, ma = insert_text_marker(images, torch.Generator().manual_seed(7))
    b, mb = insert_text_marker(images, torch.Generator().manual_seed(7))
    assert torch.equal(a, b) and torch.equal(ma, mb)
    changed = (a != images).any(1)
    assert (changed <= ma).all() and ma.flatten(1).any(1).all()
    assert (a[ma[:, None].expand_as(a)] >= 0.9).all()
    gray = torch.full((2, 1, 64, 64), 0.3)  # single-channel images work too
    out, m = insert_text_marker(gray, torch.Generator().manual_seed(0), kinds=("letter",))
    assert out.shape == gray.shape and m.any()
    with pytest.raises(ValueError, match="kinds"):
        insert_text_marker(gray, kinds=("logo",))


def test_registered_so_the_audit_reports_it_per_class():
    assert DETECTORS["text_marker"] is detect_text_marker
    clean = xray_images(40, 128, seed=8)
    marked, _ = insert_text_marker(xray_images(40, 128, seed=9), torch.Generator().manual_seed(10))
    # hospital A (markers) sends most COVID cases: the marker predicts the class
    items = [(img, 0) for img in marked] + [(img, 1) for img in clean]
    report = audit_dataset(items, detectors=["text_marker"], class_names=["COVID-19", "Normal"], task="multiclass")
    association = report.artifacts["text_marker"]
    assert association.prevalence_by_class[0] >= 0.8 and association.prevalence_by_class[1] == 0.0
    assert "COVID-19" in association.predictive_classes


# ------------------------------------------------------------------------------------------ relevance outside roi
def test_relevance_outside_roi_against_a_loop_oracle():
    g = torch.Generator().manual_seed(0)
    heat = torch.randn(6, 9, 11, generator=g)
    roi = torch.rand(6, 9, 11, generator=g) > 0.5
    heat[5] = -heat[5].abs()  # no positive relevance at all
    got = relevance_outside_roi(heat, roi)
    for i in range(5):
        pos = [float(v) for v, r in zip(heat[i].flatten(), roi[i].flatten()) if v > 0 and not r]
        total = [float(v) for v in heat[i].flatten() if v > 0]
        assert got[i].item() == pytest.approx(sum(pos) / sum(total), rel=1e-5)
    assert math.isnan(got[5].item())


def test_relevance_outside_roi_invariants():
    heat = torch.rand(3, 8, 8)
    inside = torch.ones(3, 8, 8, dtype=torch.bool)
    assert torch.equal(relevance_outside_roi(heat, inside), torch.zeros(3))
    assert torch.equal(relevance_outside_roi(heat, ~inside), torch.ones(3))
    roi = torch.rand(3, 8, 8) > 0.3
    share = relevance_outside_roi(heat, roi)
    assert torch.allclose(share + relevance_outside_roi(heat, ~roi), torch.ones(3))  # complementary regions
    assert torch.allclose(relevance_outside_roi(heat * 7.0, roi), share)  # scale-free
    negative_added = heat - 5.0 * (~roi).float()  # negative evidence outside does not hide positive evidence
    assert (relevance_outside_roi(negative_added, roi) <= share).all()
    with pytest.raises(ValueError, match="bool"):
        relevance_outside_roi(heat, roi.float())
    with pytest.raises(ValueError, match="resize"):
        relevance_outside_roi(heat, roi[:, :4])
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        relevance_outside_roi(heat[None], roi[None])


def test_relevance_outside_roi_on_a_dataset_item(tmp_path):
    import _dataset_trees as trees

    from lit_xai.datamodules import CovidQUExDataModule

    dm = CovidQUExDataModule(str(trees.covid_quex(tmp_path)), image_size=32, augment=False)
    item = dm.dataset("train")[0]
    roi = item["roi_mask"][None]
    lungs_only = roi.float() * torch.rand(1, 32, 32)
    border_only = (~roi).float()
    assert relevance_outside_roi(lungs_only, roi).item() == 0.0
    assert relevance_outside_roi(border_only, roi).item() == 1.0
    assert np.isclose(
        relevance_outside_roi(lungs_only + border_only, roi).item(),
        border_only.sum() / (lungs_only + border_only).sum(),
    )
