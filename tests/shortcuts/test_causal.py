"""Sham-controlled causal reliance tests, bootstrap intervals and the alert rule built on them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _artifact_images import skin_images
from _tolerance import reduction_atol
from torch import nn

from lit_xai.artifacts import (
    AlertRule,
    ReliancePool,
    bootstrap_effect,
    insert_ring,
    insertion_test,
    measure_reliance,
    removal_test,
    sham_insert,
    sham_masks,
)
from lit_xai.artifacts.registry import ARTIFACTS, get_artifact, register_artifact

SIZE = 48


# small tensors: one thread is faster, and two threads crawl when the cores are shared (measured 10x)
pytestmark = pytest.mark.usefixtures("single_thread")


def _radius(size: int = SIZE) -> torch.Tensor:
    ax = (torch.arange(size) - (size - 1) / 2) / (size / 2)
    return torch.sqrt(ax[:, None] ** 2 + ax[None, :] ** 2)


def region_net(region: torch.Tensor, scale: float = 10.0, offset: float = 0.6) -> nn.Sequential:
    """Two logits; ``logit_1 = scale * (mean darkness in region - offset)``, darkness = 1 - mean(RGB)."""
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
    # "reliant" reads only the corners (always inside the ring), "lesion" only the centre (never touched by it)
    return {"reliant": region_net(r > 1.12), "lesion": region_net(r < 0.4, offset=0.45)}


@pytest.fixture(scope="module")
def clean() -> torch.Tensor:
    return skin_images(40, size=SIZE, seed=21)


@pytest.fixture(scope="module")
def ringed(clean) -> tuple[torch.Tensor, torch.Tensor]:
    return insert_ring(clean[:20], torch.Generator().manual_seed(4))


# ------------------------------------------------------------------------------------------------------- shams
def test_sham_insert_keeps_area_and_place_but_not_the_artifact(clean) -> None:
    real, masks = insert_ring(clean[:8], torch.Generator().manual_seed(0))
    sham = sham_insert(clean[:8], real, masks, "mean")
    changed = (sham - clean[:8]).abs().amax(1) > 0
    assert not (changed & ~masks).any()  # only the artifact's region is edited
    # the region takes the image's mean colour (skin and lesion): the ring's near-black is gone
    darkness = lambda x: 1 - x.mean(1)  # noqa: E731
    assert (darkness(real)[masks] > 0.8).float().mean() > 0.9
    assert darkness(sham)[masks].mean() < darkness(clean[:8]).mean() + 0.05 < 0.5
    shuffled = sham_insert(clean[:8], real, masks, "shuffle", torch.Generator().manual_seed(1))
    assert shuffled.shape == clean[:8].shape and 0 <= float(shuffled.min()) and float(shuffled.max()) <= 1
    with pytest.raises(ValueError, match="unknown sham kind"):
        sham_insert(clean[:2], real[:2], masks[:2], "blur")


def test_sham_masks_are_moved_copies_of_the_same_area() -> None:
    masks = torch.zeros(2, 16, 16, dtype=torch.bool)
    masks[0, 1:4, 2:5] = True
    masks[1, 10:12, 0:6] = True
    out = sham_masks(masks, 10, torch.Generator().manual_seed(0))
    areas = out.flatten(1).sum(1).tolist()
    assert areas == [9, 12] * 5  # cycled, area kept
    assert any(not torch.equal(out[i], masks[i % 2]) for i in range(10))  # moved
    with pytest.raises(ValueError, match="non-empty"):
        sham_masks(masks[:0], 3)


# --------------------------------------------------------------------------------------------------- bootstrap
def test_bootstrap_is_seeded_oriented_and_paired() -> None:
    g = torch.Generator().manual_seed(0)
    real = 0.3 + 0.1 * torch.randn(30, generator=g)
    sham = real - 0.3 + 0.01 * torch.randn(30, generator=g)  # shared per-image noise: pairing removes it
    paired = bootstrap_effect(real, sham, paired=True, seed=1)
    assert paired == bootstrap_effect(real, sham, paired=True, seed=1)
    tol = reduction_atol(real - sham)  # a float32 mean of 30 terms, summed in any order
    assert paired["effect"] == pytest.approx(float((real - sham).mean()), rel=0, abs=tol)
    assert paired["interval"][0] < paired["effect"] < paired["interval"][1]
    unpaired = bootstrap_effect(real, sham, paired=False, seed=1)
    assert unpaired["effect"] == pytest.approx(paired["effect"], rel=0, abs=tol)
    width = lambda d: d["interval"][1] - d["interval"][0]  # noqa: E731
    assert width(paired) < width(unpaired) / 5
    flipped = bootstrap_effect(real, sham, paired=True, sign=-1.0, seed=1)
    assert flipped["effect"] == pytest.approx(-paired["effect"], rel=0, abs=tol)
    assert flipped["interval"] == pytest.approx([-paired["interval"][1], -paired["interval"][0]], rel=0, abs=tol)
    assert math.isnan(bootstrap_effect(real[:1], sham[:1])["effect"])
    with pytest.raises(ValueError, match="same images"):
        bootstrap_effect(real, sham[:5], paired=True)


@pytest.mark.parametrize("paired", [True, False])
def test_bootstrap_interval_coverage(paired: bool) -> None:
    """95 % intervals cover the true effect in about 95 % of repeated experiments (percentile bootstrap, n = 30)."""
    rng = np.random.default_rng(0)
    true, reps, hits = 0.2, 300, 0
    for rep in range(reps):
        real = true + rng.normal(0, 0.3, 30)
        sham = rng.normal(0, 0.3, 30 if paired else 40)
        low, high = bootstrap_effect(real, sham, paired=paired, resamples=500, seed=rep)["interval"]
        hits += low <= true <= high
    # measured: 0.93 (paired) / 0.94 (unpaired); a binomial 99 % band around 0.95 with 300 repeats is 0.92-0.98,
    # the percentile bootstrap at n = 30 runs slightly narrow
    assert 0.89 <= hits / reps <= 0.985


# ---------------------------------------------------------------------------------------------- causal tests
def test_insertion_test_detects_the_reliant_model_and_not_the_irrelevant_one(models, clean) -> None:
    reliant = insertion_test(models["reliant"], clean, 1, seed=3)
    # measured: real shift +0.92, sham +0.00, effect +0.92 with a tight interval
    assert reliant["n"] == 40 and reliant["split"] == "val" and reliant["test"] == "insertion"
    assert abs(reliant["sham_shift"]) < 0.05  # the neutral object of the same area does nothing
    assert reliant["effect"] > 0.6 and reliant["interval"][0] > 0.5
    # the statistics are float64 (numpy): these bounds are float64 rounding, not float32's
    assert reliant["effect"] == pytest.approx(reliant["mean_shift"] - reliant["sham_shift"], abs=1e-6)  # float64
    lesion = insertion_test(models["lesion"], clean, 1, seed=3)
    assert lesion["effect"] == pytest.approx(0.0, abs=1e-6) and lesion["interval"][0] <= 0.0 + 1e-9  # float64
    # an untrained CNN moves with any edit a little; real and sham alike, so the rule's threshold is not reached
    torch.manual_seed(0)
    random_cnn = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))
    untrained = insertion_test(random_cnn, clean, 1, seed=3)
    assert untrained["interval"][0] < AlertRule().min_effect


def test_removal_test_detects_the_reliant_model_and_not_the_irrelevant_one(models, clean, ringed) -> None:
    images, masks = ringed
    out = removal_test(models["reliant"], images, clean[20:], 1, masks=masks, split="train")
    # measured: P(class 1) 0.97 -> 0.05 on ringed images, the sham inpainting of ring-shaped regions moves nothing
    assert out["n"] == 20 and out["n_sham"] == 20 and out["split"] == "train" and not out["paired"]
    assert out["mean_shift"] < -0.6 and abs(out["sham_shift"]) < 0.05
    assert out["effect"] > 0.6 and out["interval"][0] > 0.5  # positive = P drops because of the removal
    lesion = removal_test(models["lesion"], images, clean[20:], 1, masks=masks)
    assert abs(lesion["effect"]) < 1e-6


# ------------------------------------------------------------------------------------------------- the pool
def _pool(images01: torch.Tensor, labels: torch.Tensor, split: str = "val") -> ReliancePool:
    return ReliancePool(images01, images01, labels, list(range(len(labels))), split=split)


def test_measure_reliance_edits_once_and_agrees_with_the_public_tests(models, clean, ringed) -> None:
    ring = get_artifact("ring")
    calls = {"insert": 0, "remove": 0}

    def insert(images, generator):
        calls["insert"] += 1
        return ring.insert(images, generator)

    def remove(images, masks):
        calls["remove"] += 1
        return ring.remove(images, masks)

    images01 = torch.cat([ringed[0], clean[20:], clean[:20]])
    labels = torch.tensor([1] * 20 + [1] * 20 + [0] * 20)
    register_artifact("counted_ring2", detect=ring.detect, threshold=ring.threshold, insert=insert, remove=remove)
    try:
        pool = _pool(images01, labels)
        pool.detect("counted_ring2")
        model = models["reliant"]
        kw = dict(num_probes=0, num_counterfactual=16, seed=5)
        first = measure_reliance(model, pool, "counted_ring2", 1, lambda x: x, **kw)
        second = measure_reliance(model, pool, "counted_ring2", 1, lambda x: x, **kw)
        assert calls == {"insert": 1, "remove": 2}  # the real and the sham removal, once each
        assert first["counterfactual"] == second["counterfactual"]
        flags = pool.flags["counted_ring2"]
        other = ((~flags) & (labels != 1)).nonzero().flatten()[:16]
        flagged = (flags & (labels == 1)).nonzero().flatten()[:16]
        without = ((~flags) & (labels == 1)).nonzero().flatten()[:16]
        ins = insertion_test(model, images01[other], 1, ring.insert, seed=5)
        rem = removal_test(
            model, images01[flagged], images01[without], 1, pool.masks["counted_ring2"][flagged], ring.remove, seed=5
        )
        for key in ("effect", "mean_shift", "sham_shift", "n", "n_sham"):
            assert second["counterfactual"][key] == pytest.approx(ins[key], abs=1e-6)
            assert second["removal"][key] == pytest.approx(rem[key], abs=1e-6)
        assert second["counterfactual"]["interval"] == pytest.approx(ins["interval"], abs=1e-6)
        assert second["removal"]["interval"] == pytest.approx(rem["interval"], abs=1e-6)
    finally:
        ARTIFACTS.pop("counted_ring2", None)


def test_removal_moves_to_the_training_pool_when_validation_has_too_few(models, clean, ringed) -> None:
    val = _pool(torch.cat([ringed[0][:3], clean[20:30], clean[:10]]), torch.tensor([1] * 13 + [0] * 10))
    val.detect("ring")
    train = _pool(torch.cat([ringed[0], clean[20:]]), torch.tensor([1] * 40), split="train")
    kw = dict(num_probes=0, min_removal_images=8)
    out = measure_reliance(models["reliant"], val, "ring", 1, lambda x: x, removal_pool=train, **kw)
    assert out["removal"]["split"] == "train" and out["removal"]["n"] == 20
    assert out["exposure"] == {"images": 20, "split": "train", "of": 40}
    assert out["counterfactual"]["split"] == "val"
    alone = measure_reliance(models["reliant"], val, "ring", 1, lambda x: x, **kw)
    assert alone["removal"]["split"] == "val" and alone["removal"]["n"] == 3  # recorded, too few for the rule
    assert not AlertRule(min_images=8).passing({"removal": alone["removal"]})
    nothing = _pool(clean[:10], torch.zeros(10, dtype=torch.long))
    nothing.detect("ring")
    skipped = measure_reliance(models["reliant"], nothing, "ring", 1, lambda x: x, **kw)
    assert "removal" not in skipped and "0 images of class 1 with the ring" in skipped["removal_skipped"]


# -------------------------------------------------------------------------------------------------- the rule
def _test(effect: float, low: float, high: float, n: int = 30, name: str = "removal", **extra) -> dict:
    return {"test": name, "effect": effect, "interval": [low, high], "confidence": 0.95, "n": n, "n_sham": n, **extra}


def test_rule_needs_a_causal_effect_whose_interval_clears_min_effect() -> None:
    rule = AlertRule(min_effect=0.1, patience=1)
    assert rule.passing({"removal": _test(0.4, 0.3, 0.5)}) == ["removal"]
    insertion = _test(0.4, 0.3, 0.5, name="insertion")
    assert rule.passing({"counterfactual": insertion, "exposure": {"images": 30}}) == ["insertion"]
    # an artifact (nearly) absent from the class's images cannot be a learned shortcut: insertion alone does not count
    assert rule.passing({"counterfactual": insertion, "exposure": {"images": 3}}) == []
    assert AlertRule(min_exposure=0).passing({"counterfactual": insertion}) == ["insertion"]
    assert not rule.met({"removal": _test(0.15, 0.05, 0.25)}, False)  # interval includes min_effect
    assert not rule.met({"removal": _test(-0.4, -0.5, -0.3)}, False)  # removal *raises* P: no reliance
    assert not rule.met({"removal": _test(0.4, 0.3, 0.5, n=5)}, False)  # too few images
    # relevance concentration, SpRAy and the audit never alert on their own
    support = {"relevance_ratio": 9.0, "spray": {"flagged": True}, "removal": _test(0.0, -0.1, 0.1)}
    assert not rule.met(support, audit_flagged=True)
    with pytest.raises(ValueError, match="confidence=0.99"):
        AlertRule(confidence=0.99).met({"removal": _test(0.4, 0.3, 0.5)}, False)
    bad_arguments = (dict(patience=0), dict(min_effect=1.0), dict(confidence=1.0), dict(min_images=1))
    for bad in (*bad_arguments, dict(min_exposure=-1)):
        with pytest.raises(ValueError):
            AlertRule(**bad)


def test_rule_patience_and_resume() -> None:
    rule = AlertRule(patience=2)
    assert [rule.update("k", m) for m in (True, False, True, True, True)] == [False, False, False, True, False]
    restored = AlertRule(patience=2)
    restored.load_state_dict(rule.state_dict())
    assert not restored.update("k", True)  # fires once per key, also after a resume
    assert AlertRule(patience=3).criteria()["patience"] == 3


def test_message_carries_effect_sham_interval_images_and_split() -> None:
    evidence = {
        "counterfactual": _test(0.07, 0.04, 0.1, n=64, name="insertion", split="val", sham="mean", mean_shift=0.08,
                                sham_shift=0.01),
        "removal": _test(0.43, 0.35, 0.51, n=38, name="removal", split="train", mean_shift=-0.45, sham_shift=-0.02),
        "relevance_ratio": 1.2,
        "exposure": {"images": 38, "of": 120, "split": "train"},
        "tests": ["insertion", "removal"],
    }
    text = AlertRule.message("ring", "melanoma", evidence, True, passing=AlertRule().passing(evidence))
    assert "38 'melanoma' images" in text and "train split" in text and "-0.45" in text and "-0.02" in text
    assert "+0.43 (95 % CI +0.35 to +0.51)" in text and "64 clean images" in text and "val split" in text
    assert text.count("[meets the rule]") == 1  # removal passes; insertion's +0.04 lower bound does not clear 0.05
    assert "the ring is on 38 of 120 'melanoma' images in the train pool" in text
    assert "supporting evidence (not required for the alert)" in text and "label-predictive" in text


# ------------------------------------------------------------------------------------- saturation (issue 32, item 0)
def _epoch(net: nn.Module, clean: torch.Tensor, ringed: tuple[torch.Tensor, torch.Tensor]) -> dict:
    flagged, masks = ringed
    return {
        "counterfactual": insertion_test(net, clean[20:], 1),
        "removal": removal_test(net, flagged, clean[20:], 1, masks=masks),
        "exposure": {"images": len(flagged)},
    }


def test_a_saturated_shortcut_meets_the_rule_on_the_log_odds(clean, ringed) -> None:
    # other-class images already at P(1) ~ 0.93 and ringed images at P ~ 1.0: inserting the ring can move P by < 0.07
    # and removing it leaves P near 0.9, so neither test clears min_effect = 0.15 in probability units
    net = region_net(_radius() > 1.12, offset=0.03)
    evidence = _epoch(net, clean, ringed)
    ins, rem = evidence["counterfactual"], evidence["removal"]
    assert ins["p_before"] > 0.9 and rem["p_before"] > 0.999
    assert ins["interval"][1] < 0.15 and rem["interval"][1] < 0.15  # P cannot show it
    assert ins["reach"] < 0.15 and rem["reach"] < 0.01  # saturated: one unit of log-odds barely moves P there
    # logit_1 = 10 * darkness: the ring darkens the corners by ~0.6, so the log-odds move by ~6 (sham: ~0)
    assert ins["logit_interval"][0] > 5 and rem["logit_interval"][0] > 5
    rule = AlertRule()
    assert rule.decide(evidence) == (True, "met by insertion, removal")
    legacy = {k: {f: x for f, x in v.items() if f != "reach"} for k, v in evidence.items()}
    assert rule.decide(legacy)[0] is False  # the rule before issue 32 missed it
    # the old fields keep their meaning (probability units): effect = sham-corrected mean shift of P(1)
    tol = reduction_atol(torch.full((len(clean[20:]),), 1.0))
    assert ins["effect"] == pytest.approx(ins["mean_shift"] - ins["sham_shift"], rel=0, abs=tol)


def test_a_saturated_model_that_ignores_the_ring_never_alerts(clean, ringed) -> None:
    # the lesion model reads only the centre, which the ring never touches; its P(1) is saturated as well
    net = region_net(_radius() < 0.4, offset=0.25)
    evidence = _epoch(net, clean, ringed)
    rule = AlertRule(patience=1)
    decision, reason = rule.decide(evidence)
    assert decision is None and reason.startswith("not informative: P saturated")  # could not show an effect
    assert not any(rule.update("ring/1", rule.decide(evidence)[0]) for _ in range(5))
    # not saturated (P ~ 0.5): the same model is read in probability units and clears nothing -- a reset
    fair = _epoch(region_net(_radius() < 0.4, offset=0.45), clean, ringed)
    assert fair["counterfactual"]["reach"] > 0.15
    assert rule.decide(fair)[0] is False


def test_an_uninformative_measurement_neither_meets_nor_resets_the_streak() -> None:
    met = {"removal": _test(0.4, 0.3, 0.5)}
    blind = {"removal": {**_test(0.01, 0.0, 0.02), "reach": 0.001, "logit_interval": [-0.5, 0.5]}}
    clear = {"removal": {**_test(0.01, 0.0, 0.02), "reach": 0.2, "logit_interval": [-0.5, 0.5]}}
    rule = AlertRule(min_effect=0.1, patience=2)
    assert rule.decide(blind)[0] is None and rule.decide(clear)[0] is False and rule.decide(met)[0] is True
    fired = [rule.update("k", rule.decide(e)[0]) for e in (met, blind, blind, met)]
    assert fired == [False, False, False, True]  # met, (kept), (kept), met: two in a row among informative epochs
    rule = AlertRule(min_effect=0.1, patience=2)
    assert [rule.update("k", rule.decide(e)[0]) for e in (met, clear, met)] == [False, False, False]  # a reset
    # too few images is no blindness: such a test still resets, as before
    few = {"removal": {**blind["removal"], "n": 3}}
    assert rule.decide(few)[0] is False
    with pytest.raises(ValueError, match="min_logit_effect"):
        AlertRule(min_logit_effect=0.0)
