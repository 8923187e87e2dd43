"""evaluate_quality: one call, every metric, scalars/curves/table consistent with the single metrics."""

from __future__ import annotations

import pytest
import torch
from _quality_models import same_state, state_of, tiny_resnet

from lit_xai.explainers import LRP, GradCAM
from lit_xai.metrics import evaluate_quality, infidelity, pixel_flipping


@pytest.fixture(scope="module")
def report_and_inputs():
    net = tiny_resnet(seed=1, size=32)
    x = torch.randn(3, 3, 32, 32)
    t = torch.tensor([0, 1, 0])
    state = state_of(net)
    report = evaluate_quality(
        net,
        x,
        t,
        ["lrp", "gradcam"],
        patch=8,
        steps=8,
        fraction=1.0,
        sensitivity_samples=2,
        infidelity_samples=4,
        randomization_steps=2,
        transforms=["blur", "rotate90"],
        seed=3,
    )
    assert same_state(net, state)
    return report, net, x, t


def test_report_matches_single_metrics(report_and_inputs):
    report, net, x, t = report_and_inputs
    heat = LRP()(net, x, t)
    curve, aopc = pixel_flipping(net, x, t, heat, patch=8, steps=8, seed=3)
    torch.testing.assert_close(report.curves["lrp"], curve)
    torch.testing.assert_close(report.aopc["lrp"], aopc)
    torch.testing.assert_close(report.infidelity["gradcam"], infidelity(net, x, t, GradCAM()(net, x, t), 4, seed=3))
    assert report.curves["random"].shape == (3, 9) and report.fraction.shape == (9,)


def test_scalars_table_and_curves(report_and_inputs):
    report, *_ = report_and_inputs
    s = report.scalars("q")
    for key in (
        "q/aopc/lrp",
        "q/aopc/random",
        "q/aopc_gain/gradcam",
        "q/sensitivity/lrp",
        "q/infidelity/gradcam",
        "q/randomization/lrp/spearman_top",
        "q/stability/gradcam/ssim",
        "q/time_s",
    ):
        assert key in s and isinstance(s[key], float)
    assert s["q/aopc_gain/lrp"] == pytest.approx(s["q/aopc/lrp"] - s["q/aopc/random"], abs=1e-5)
    curves = report.mean_curves()
    assert set(curves) == {"lrp", "gradcam", "random"} and all(c[0] == 0.0 for c in curves.values())
    header, rows = report.stability_table(["benign", "melanoma"], probe_ids=[5, 6, 7])
    assert header[:4] == ["augmentation", "probe 5", "probe 6", "probe 7"] and "lrp SSIM" in header
    assert [r[0] for r in rows] == ["original", "blur", "rotate90"] and all(len(r) == len(header) for r in rows)
    md = report.stability_markdown(["benign", "melanoma"])
    assert md.count("\n") == len(rows) + 1 and "| rotate90 |" in md


def test_metric_subset_and_errors():
    net = tiny_resnet(size=32)
    x = torch.randn(2, 3, 32, 32)
    r = evaluate_quality(net, x, 0, {"cam": GradCAM()}, metrics=["infidelity"], infidelity_samples=2)
    assert list(r.infidelity) == ["cam"] and not r.aopc and not r.stability
    with pytest.raises(ValueError, match="unknown metrics"):
        evaluate_quality(net, x, 0, ["lrp"], metrics=["aopc"])
    with pytest.raises(ValueError, match="unknown explainer"):
        evaluate_quality(net, x, 0, ["shap"])


def test_fraction_limits_the_flipped_share():
    net = tiny_resnet(seed=2, size=32)
    x = torch.randn(2, 3, 32, 32)
    r = evaluate_quality(net, x, 0, ["gradcam"], metrics=["pixel_flipping"], patch=8, steps=16, fraction=0.25)
    heat = GradCAM()(net, x, 0)
    curve, aopc = pixel_flipping(net, x, 0, heat, patch=8, steps=4, fraction=0.25)  # 16 regions: 4 flipped
    torch.testing.assert_close(r.curves["gradcam"], curve)
    torch.testing.assert_close(r.aopc["gradcam"], aopc)
    assert r.fraction.tolist() == [0.0, 0.0625, 0.125, 0.1875, 0.25]
