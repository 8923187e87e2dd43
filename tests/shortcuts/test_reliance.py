"""Model reliance on an artifact: relevance inside the mask and counterfactual insertion / removal."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from _artifact_images import skin_images
from torch import nn

from lit_xai.artifacts import (
    counterfactual_shift,
    insert_marker,
    insert_ring,
    paired_shift,
    relevance_in_mask,
    removal_shift,
)
from lit_xai.explainers import LRP

SIZE = 48


def _radius(size: int = SIZE) -> torch.Tensor:
    ax = (torch.arange(size) - (size - 1) / 2) / (size / 2)
    return torch.sqrt(ax[:, None] ** 2 + ax[None, :] ** 2)


def region_net(region: torch.Tensor, scale: float = 10.0, offset: float = 0.6) -> nn.Sequential:
    """Two logits; ``logit_1 = scale * (mean darkness in region - offset)``, darkness = 1 - mean(RGB).

    The first 1x1 conv computes darkness (LRP's flat rule keeps it spatial), the linear layer reads only ``region``.
    """
    conv = nn.Conv2d(3, 1, 1)
    lin = nn.Linear(region.numel(), 2)
    with torch.no_grad():
        conv.weight.fill_(-1.0 / 3)
        conv.bias.fill_(1.0)
        lin.weight.zero_()
        lin.weight[1] = scale * region.flatten().float() / region.sum()
        lin.bias.copy_(torch.tensor([0.0, -scale * offset]))
    return nn.Sequential(conv, nn.ReLU(), nn.Flatten(), lin)


@pytest.fixture(scope="module")
def models() -> dict[str, nn.Module]:
    r = _radius()
    # "reliant" looks only at the corners (always inside the ring), "lesion" only at the centre
    return {"reliant": region_net(r > 1.12), "lesion": region_net(r < 0.4, offset=0.45)}


@pytest.fixture(scope="module")
def clean() -> torch.Tensor:
    return skin_images(40, size=SIZE, seed=21)


def test_relevance_in_mask_on_known_maps() -> None:
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[0, :2] = True  # a quarter of the image
    uniform = torch.ones(1, 8, 8)
    inside = mask.float()
    outside = (~mask).float()
    signed = inside - 5.0 * outside  # negative relevance outside is evidence against, ignored
    scores = relevance_in_mask(torch.cat([uniform, inside, outside, signed]), mask.expand(4, 8, 8))
    assert scores.tolist() == pytest.approx([1.0, 4.0, 0.0, 4.0])
    # undefined cases are NaN, not 0 or inf
    empty = relevance_in_mask(torch.ones(1, 8, 8), torch.zeros(1, 8, 8, dtype=torch.bool))
    no_positive = relevance_in_mask(-torch.ones(1, 8, 8), mask)
    assert math.isnan(empty.item()) and math.isnan(no_positive.item())
    # a full mask is exactly "no preference"; channels are summed
    assert relevance_in_mask(torch.rand(2, 3, 8, 8), torch.ones(2, 8, 8, dtype=torch.bool)).tolist() == pytest.approx(
        [1.0, 1.0]
    )
    with pytest.raises(ValueError, match="must match"):
        relevance_in_mask(torch.rand(1, 8, 8), torch.ones(1, 4, 4, dtype=torch.bool))


def test_lrp_relevance_concentrates_on_the_ring_only_for_the_reliant_model(models, clean) -> None:
    ringed, masks = insert_ring(clean[:16], torch.Generator().manual_seed(0))
    explain = LRP(canonizers=[])
    target = torch.ones(16, dtype=torch.long)
    reliant = relevance_in_mask(explain(models["reliant"], ringed, target), masks)
    lesion = relevance_in_mask(explain(models["lesion"], ringed, target), masks)
    area = masks.float().mean((1, 2))
    # measured: reliant mean 3.0, min 2.15 (= 1 / mask area: all positive relevance in the ring), lesion 0.00
    assert reliant.min() > 2.0 and torch.allclose(reliant, 1 / area, rtol=1e-3)
    assert lesion.max() < 0.1


def test_counterfactual_insertion_shifts_only_the_reliant_model(models, clean) -> None:
    out = counterfactual_shift(models["reliant"], clean, target_class=1, seed=3)
    # measured: P(class 1) 0.05 -> 0.97, mean shift 0.92 (sd 0.03), every decision flips, paired t = 230
    assert out["n"] == 40 and out["p_before"] < 0.2 and out["p_after"] > 0.8
    assert out["mean_shift"] > 0.6 and out["flips_to_target"] >= 0.9 and out["flips_from_target"] == 0.0
    assert out["p_value"] < 1e-10 and out["wilcoxon_p"] < 1e-6
    assert out["masks"].shape == (40, SIZE, SIZE) and out["masks"].any()
    again = counterfactual_shift(models["reliant"], clean, target_class=1, seed=3)
    assert torch.equal(out["shifts"], again["shifts"])  # seeded
    control = counterfactual_shift(models["lesion"], clean, target_class=1, seed=3)
    # the ring never reaches the centre: the lesion model's output does not move at all
    assert control["shifts"].abs().max() < 1e-6 and control["flip_rate"] == 0.0
    assert math.isnan(control["p_value"]) and math.isnan(control["wilcoxon_p"])


def test_removal_drops_only_the_reliant_model(models, clean) -> None:
    ringed, masks = insert_ring(clean, torch.Generator().manual_seed(4))
    out = removal_shift(models["reliant"], ringed, target_class=1, masks=masks)
    # measured: P(class 1) 0.97 -> 0.05, mean shift -0.92, every decision flips away from class 1
    assert out["p_before"] > 0.8 and out["mean_shift"] < -0.6 and out["flips_from_target"] >= 0.9
    estimated = removal_shift(models["reliant"], ringed, target_class=1)  # masks from detect_ring
    assert estimated["mean_shift"] < -0.6
    control = removal_shift(models["lesion"], ringed, target_class=1, masks=masks)
    assert abs(control["mean_shift"]) < 1e-6


def test_multilabel_sigmoid_and_normalize(models, clean) -> None:
    mean, std = 0.5, 0.25
    inner = models["reliant"]

    class OnNormalized(nn.Module):  # expects normalized input, like every lit_xai model
        def __init__(self) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x * std + mean)

    model = OnNormalized()
    out = counterfactual_shift(model, clean, 1, normalize=lambda x: (x - mean) / std, seed=3)
    ref = counterfactual_shift(inner, clean, 1, seed=3)
    assert torch.allclose(out["shifts"], ref["shifts"], atol=1e-5)
    multi = counterfactual_shift(inner, clean, 1, task="multilabel", seed=3)
    # sigmoid of logit 1 alone: from sigmoid(-3) = 0.05 to about sigmoid(3.5)
    assert multi["p_before"] < 0.1 and multi["mean_shift"] > 0.6 and multi["flips_to_target"] >= 0.9
    # any inserter works, e.g. the colour marker (which the reliant model ignores unless it hits a corner)
    marker = counterfactual_shift(inner, clean, 1, insert_fn=insert_marker, seed=3)
    assert abs(marker["mean_shift"]) < 0.2


def test_model_state_is_restored(models, clean) -> None:
    model = nn.Sequential(nn.BatchNorm2d(3), nn.Dropout(0.5), *models["reliant"])
    model.train()
    model[2].eval()  # a mixed state must come back exactly
    modes = [m.training for m in model.modules()]
    stats = model[0].running_mean.clone()
    with torch.inference_mode():  # e.g. inside trainer.validate
        out = counterfactual_shift(model, clean[:8], 1, seed=0)
    assert [m.training for m in model.modules()] == modes
    assert torch.equal(model[0].running_mean, stats)  # eval inside: BatchNorm statistics untouched
    assert not out["shifts"].requires_grad

    class Broken(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("boom")

    broken = nn.Sequential(nn.BatchNorm2d(3), Broken())
    broken.train()
    with pytest.raises(RuntimeError, match="boom"):
        counterfactual_shift(broken, clean[:4], 1)
    assert all(m.training for m in broken.modules())
    with pytest.raises(ValueError, match="target_class"):
        paired_shift(models["reliant"], clean[:4], clean[:4], target_class=5)


def test_reliance_on_the_synthetic_datamodule(models) -> None:
    synthetic = pytest.importorskip("lit_xai.datamodules.synthetic")
    dm = synthetic.SyntheticShortcutDataModule(num_train=8, num_val=60, num_test=8, image_size=SIZE)
    ds = dm.dataset("val")
    benign = [i for i in range(len(ds)) if int(ds[i]["target"]) == 0][:20]
    before = torch.stack([ds.render(i, ring=False)[0] for i in benign])
    rendered = [ds.render(i, ring=True) for i in benign]
    after = torch.stack([img for img, _ in rendered])
    masks = torch.stack([m for _, m in rendered])
    shift = paired_shift(models["reliant"], before, after, target_class=1)
    assert shift["mean_shift"] > 0.5 and shift["flips_to_target"] >= 0.8
    assert abs(paired_shift(models["lesion"], before, after, target_class=1)["mean_shift"]) < 0.05
    heat = LRP(canonizers=[])(models["reliant"], after, torch.ones(len(after), dtype=torch.long))
    assert relevance_in_mask(heat, masks).nanmean() > 2.0


def test_measure_reliance_edits_once_and_agrees_with_the_public_tests(models, clean) -> None:
    """The pool makes each counterfactual edit once (real and sham); every epoch's measurement equals
    counterfactual_shift / removal_shift on the same images (the cache changes cost, never a number)."""
    from lit_xai.artifacts import ReliancePool, measure_reliance, register_artifact
    from lit_xai.artifacts.registry import ARTIFACTS, get_artifact

    ring = get_artifact("ring")
    calls = {"insert": 0, "remove": 0}

    def insert(images, generator):
        calls["insert"] += 1
        return ring.insert(images, generator)

    def remove(images, masks):
        calls["remove"] += 1
        return ring.remove(images, masks)

    ringed, _ = insert_ring(clean[:20], torch.Generator().manual_seed(3))
    images01 = torch.cat([ringed, clean[20:]])
    labels = torch.tensor([1] * 20 + [0] * 20)
    register_artifact("counted_ring", detect=ring.detect, threshold=ring.threshold, insert=insert, remove=remove)
    try:
        pool = ReliancePool(images01, images01, labels, list(range(40)))
        pool.detect("counted_ring")
        model = copy.deepcopy(models["reliant"])  # the fixture is shared: change a copy
        lrp = LRP(canonizers=[])
        first = measure_reliance(model, pool, "counted_ring", 1, lambda x: x, lrp, num_counterfactual=16, seed=5)
        model[3].weight.data.mul_(0.5)  # "training" changes the model, not the edits
        second = measure_reliance(model, pool, "counted_ring", 1, lambda x: x, lrp, num_counterfactual=16, seed=5)
        assert calls == {"insert": 1, "remove": 2}  # the real removal and its sham, once each
        flags = pool.flags["counted_ring"]
        clean_other = ((~flags) & (labels != 1)).nonzero().flatten()[:16]
        flagged = (flags & (labels == 1)).nonzero().flatten()[:16]
        cf = counterfactual_shift(model, images01[clean_other], 1, ring.insert, seed=5)
        masks = pool.masks["counted_ring"][flagged]
        rm = removal_shift(model, images01[flagged], 1, masks=masks, remove_fn=ring.remove)
        for key in ("mean_shift", "flip_rate", "p_before", "p_after"):
            assert second["counterfactual"][key] == pytest.approx(cf[key], abs=1e-6)
            assert second["removal"][key] == pytest.approx(rm[key], abs=1e-6)
        assert first["counterfactual"]["mean_shift"] != pytest.approx(second["counterfactual"]["mean_shift"])
    finally:
        ARTIFACTS.pop("counted_ring", None)


@pytest.mark.usefixtures("single_thread")
def test_measure_reliance_reads_maps_already_made(models, clean) -> None:
    """Maps given in ``explained`` (rows, targets, maps) are read, not explained again: the same evidence as a run
    that explains every image (the reference, same run), and only the rows missing there, or explained for another
    class, reach the explainer."""
    from lit_xai.artifacts import ReliancePool, measure_reliance

    ringed, _ = insert_ring(clean[:20], torch.Generator().manual_seed(3))
    images01 = torch.cat([ringed, clean[20:]])
    labels = torch.tensor([1] * 20 + [0] * 20)
    pool = ReliancePool(images01, images01, labels, list(range(40)))
    pool.detect("ring")
    model, lrp = models["reliant"], LRP(canonizers=[])
    seen: list[int] = []

    def counting(module, images, targets):
        seen.append(len(images))
        return lrp(module, images, targets)

    kwargs = {"num_probes": 6, "num_counterfactual": 16, "spray_samples": 16, "seed": 5}
    reference = measure_reliance(model, pool, "ring", 1, lambda x: x, counting, **kwargs)
    assert sum(seen) == 6 + 16
    # discovery-like maps: every pool image for its own class, but rows 2 and 5 missing and row 7 for class 0
    rows = torch.tensor([r for r in range(40) if r not in (2, 5)])
    targets = labels[rows].clone()
    targets[rows == 7] = 0
    explained = (rows, targets, lrp(model, images01[rows], targets))
    seen.clear()
    reused = measure_reliance(model, pool, "ring", 1, lambda x: x, counting, explained=explained, **kwargs)
    probes_missing = len({2, 5, 7} & set(reference["probe_rows"]))
    assert probes_missing > 0  # the test reaches the mixed case
    assert seen == [probes_missing, 3]  # the probes, then the 16 SpRAy images (rows 0-15), that are missing
    # an image's map is the same in any batch up to float32 rounding of the linear layer's sums (2304 inputs)
    ref = reference["heatmaps"]
    tol = torch.finfo(torch.float32).eps * SIZE * SIZE * float(ref.abs().max())
    assert (reused["heatmaps"] - ref).abs().max() <= tol
    assert reused["relevance_ratio"] == pytest.approx(reference["relevance_ratio"], rel=1e-4)
    assert reused["spray"] == reference["spray"]
    assert reused["counterfactual"] == reference["counterfactual"] and reused["removal"] == reference["removal"]
