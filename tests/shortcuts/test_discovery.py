"""Label-free discovery: an artifact no detector knows is found from LRP maps alone, the same data without it raises
no candidate above the threshold, the demo ring is found without the ring detector, and a candidate becomes a
testable artifact (template detector, inserter, remover) for the reliance tests."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _discovery_data import accuracy, demo_discovery, lrp_maps, shapes_dataset, train_tiny

from lit_xai.artifacts import (
    ARTIFACTS,
    SUSPICIOUS_THRESHOLD,
    SUSPICIOUS_THRESHOLD_CONCEPTS,
    Candidate,
    ReliancePool,
    candidate_artifact,
    candidate_masks,
    discover_candidates,
    measure_reliance,
    render_candidates,
)
from lit_xai.shortcuts.candidate_artifact import MIN_DETECTOR_J

TAGGED_CLASS = 1


def _purity_recall(cand: Candidate, flags: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    hit = flags[cand.rows]
    return float(hit.float().mean()), float(hit.sum()) / max(1, int((flags & (labels == cand.class_index)).sum()))


@pytest.fixture(scope="module")
def shapes() -> dict[str, tuple]:
    """A tiny CNN trained with and without the square tag (35 % of class 1), and its LRP maps of held-out images."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = {}
        for tag in ("square", None):
            x, y, _, _ = shapes_dataset(tag=tag, seed=0)
            net = train_tiny(x, y, seed=0)
            xt, yt, ft, mt = shapes_dataset(tag=tag, seed=100)
            out[str(tag)] = (net, xt, yt, ft, mt, lrp_maps(net, xt, yt))
        return out
    finally:
        torch.set_num_threads(threads)


def test_unregistered_tag_is_a_top_candidate_and_the_clean_data_has_none(shapes) -> None:
    net, x, y, flags, _, heat = shapes["square"]
    assert accuracy(net, x, y) > 0.6  # the model learned the shapes (measured 0.76), not only the tag
    ids = [1000 + i for i in range(len(y))]
    cands = discover_candidates(heat, y, ids, top_k=3, seed=0)
    assert {c.class_index for c in cands} == {0, 1, 2} and all(c.rank < 3 for c in cands)
    tagged = [c for c in cands if c.class_index == TAGGED_CLASS]
    pr = [_purity_recall(c, flags, y) for c in tagged]
    best = max(range(len(tagged)), key=lambda i: pr[i][0] >= 0.8 and pr[i][1])
    purity, recall = pr[best]
    # measured (seed 0): the class's first candidate, 34 of 34 tagged images, purity 1.0, score 6.7
    assert purity >= 0.8 and recall >= 0.6, pr
    found = tagged[best]
    assert found.suspicious and found.score >= SUSPICIOUS_THRESHOLD
    assert found.members == [ids[r] for r in found.rows] and found.size == len(found.members)
    assert found.terms["specificity"] > 0.8 and found.terms["corners"] > 0.1  # only in class 1; in the corner
    # no candidate of another class is suspicious, and none is as suspicious as the tag
    assert all(c.score < found.score / 2 and not c.suspicious for c in cands if c.class_index != TAGGED_CLASS)

    # the same images without the tag (and a model trained without it): nothing above the threshold it exceeded
    _, xc, yc, _, _, heat_clean = shapes["None"]
    clean = discover_candidates(heat_clean, yc, top_k=3, seed=0)
    assert clean and max(c.score for c in clean) < SUSPICIOUS_THRESHOLD <= found.score  # measured max 0.70
    assert not any(c.suspicious for c in clean)


def test_ring_of_the_demo_is_found_without_the_ring_detector() -> None:
    from _quality_models import trained_synthetic_model

    from lit_xai.datamodules import SyntheticShortcutDataModule

    torch.set_num_threads(1)
    net, acc = trained_synthetic_model(size=32, n=320, epochs=6)
    dm = SyntheticShortcutDataModule(
        num_train=320, num_val=192, num_test=16, image_size=32, augment=False, seed=0, difficulty=0.0
    )
    ds = dm.dataset("val")
    items = [ds[i] for i in range(len(ds))]
    x = torch.stack([it["image"] for it in items]).float()
    y = torch.stack([it["target"] for it in items]).long()
    from lit_xai.explainers import LRP

    heat = LRP()(net, x, y)
    cands = discover_candidates(heat, y, [int(it["index"]) for it in items], top_k=3)
    # the ring flags are used only now, to score what was found
    rings = torch.tensor([bool(it["artifact"]) for it in items])
    melanoma = [c for c in cands if c.class_index == 1]
    pr = [_purity_recall(c, rings, y) for c in melanoma]
    # measured: the first melanoma candidate holds all 30 ring images and 3 others (purity 0.91), score 1.34
    assert melanoma[0].suspicious and pr[0][0] >= 0.8 and pr[0][1] >= 0.6, (pr, [c.score for c in melanoma])
    assert melanoma[0].terms["border"] > 0.2  # its relevance lies on the border, where the ring is
    assert all(not c.suspicious for c in cands if c.class_index == 0), "benign lesions carry no ring"


def test_candidate_becomes_a_testable_artifact(shapes) -> None:
    net, x, y, flags, true_masks, heat = shapes["square"]
    ids = list(range(len(y)))
    cand = next(c for c in discover_candidates(heat, y, ids) if c.class_index == TAGGED_CLASS)
    art = candidate_artifact(cand, x, heat, labels=y)
    # member masks lie on the tag (what sets the group apart), not on the shape
    on_tag = (art.masks & true_masks[cand.rows]).flatten(1).sum(1) / art.masks.flatten(1).sum(1).clamp_min(1)
    assert float(on_tag.median()) > 0.5, on_tag
    # the template detector finds the tag on images it never saw clustered (the other classes', inserted)
    scores, _ = art.detect(x)
    detected = scores >= art.threshold
    assert float(detected[flags].float().mean()) > 0.9 and float(detected[~flags].float().mean()) < 0.1
    assert art.detector_j >= MIN_DETECTOR_J and art.threshold < math.inf  # a selective template: used
    other = (y != TAGGED_CLASS).nonzero().flatten()[:40]
    inserted, masks = art.insert(x[other], torch.Generator().manual_seed(0))
    assert masks.any() and float((art.detect(inserted)[0] >= art.threshold).float().mean()) > 0.9
    # the removal fills the tag from its surroundings
    restored, _ = art.remove(x[flags], true_masks[flags])
    assert float((restored - x[flags]).abs()[:, :, true_masks[flags].any(0)].mean()) > 0.2

    # step 2 of the workflow: register, flag a pool, and run the reliance tests like for any registered artifact
    name = "candidate_test_tag"
    with art.registered(name):
        assert name in ARTIFACTS
        pool = ReliancePool(x, x - 0.5, y, ids)
        pool.detect(name)
        art.flag_pool(pool, name)
        assert bool(pool.flags[name][cand.rows].all())
        evidence = measure_reliance(
            net, pool, name, TAGGED_CLASS, normalize=lambda im: im - 0.5, explainer=lrp_maps_explainer,
            num_probes=8, num_counterfactual=32,
        )  # fmt: skip
        assert set(evidence["tests"]) >= {"relevance_in_mask", "insertion", "removal"}
        # pasting the tag into clean images of other classes raises P(class 1): the model relies on it
        assert evidence["counterfactual"]["mean_shift"] > 0.1, evidence["counterfactual"]
        assert evidence["relevance_ratio"] > 2.0
    assert name not in ARTIFACTS  # the registry is left as it was


def test_a_template_that_cannot_tell_members_apart_flags_nothing_and_the_members_carry_the_artifact() -> None:
    # white marks of a different shape in each member's corner (as burnt-in letters that differ): the members' median
    # there is mostly background, so every image matches the template about as well as a member does. Its flags
    # would be noise -- and they decide the tests' images (flagged images are not inserted into) -- so the detector
    # flags no image, and the pool's artifact images are the members alone
    g = torch.Generator().manual_seed(0)
    x = 0.5 + 0.05 * (torch.rand(40, 3, 32, 32, generator=g) - 0.5)
    heat = torch.zeros(40, 32, 32)
    heat[:, 12:20, 12:20] = 1.0  # the object, where every image looks
    for i in range(10):  # members: class 1, a random white mark in the top-left corner
        mark = torch.rand(8, 8, generator=g) < 0.3
        x[i, :, :8, :8][:, mark] = 1.0
        heat[i, :8, :8] += 3.0 * mark
    labels = torch.tensor([1] * 20 + [0] * 20)
    members, rows = list(range(100, 110)), list(range(10))
    cand = Candidate(class_index=1, members=members, score=3.0, size=10, fraction=0.5, rows=rows)
    art = candidate_artifact(cand, x, heat, labels=labels)
    assert art.detector_j < MIN_DETECTOR_J and art.threshold == math.inf
    scores, _ = art.detect(x)
    assert not bool((scores >= art.threshold).any())
    name = "candidate_test_unselective"
    with art.registered(name):
        pool = ReliancePool(x, x - 0.5, labels, list(range(100, 140)))
        pool.detect(name)
        art.flag_pool(pool, name)
        assert pool.flags[name].nonzero().flatten().tolist() == list(range(10))
    # the same members with one mark they share: the template separates them, and it is used
    shared = x.clone()
    shared[:10, :, :8, :8] = 1.0
    art = candidate_artifact(cand, shared, heat, labels=labels)
    assert art.detector_j >= MIN_DETECTOR_J and art.threshold < math.inf


def test_candidate_detector_reuses_its_last_search_on_the_same_images(shapes, monkeypatch) -> None:
    # the monitor detects on the same pool twice (the threshold, then pool.detect): the second call is the first's
    # result, not a second search; other images are searched afresh; a copy never aliases the cache
    net, x, y, flags, true_masks, heat = shapes["square"]
    cand = next(c for c in discover_candidates(heat, y, list(range(len(y)))) if c.class_index == TAGGED_CLASS)
    art = candidate_artifact(cand, x, heat, labels=y)  # searched once here, for the threshold
    searches = []
    search = art._search
    monkeypatch.setattr(art, "_search", lambda images: searches.append(len(images)) or search(images))
    scores, masks = art.detect(x.clone())
    assert searches == []
    fresh_scores, fresh_masks = search(x.detach().float())
    assert torch.equal(scores, fresh_scores) and torch.equal(masks, fresh_masks)
    scores[:] = -1.0  # the caller's copy
    assert torch.equal(art.detect(x)[0], fresh_scores)
    part = art.detect(x[:10])[0]
    assert searches == [10] and torch.equal(part, fresh_scores[:10])


def lrp_maps_explainer(module: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    from lit_xai.explainers import LRP

    return LRP("epsilon_plus_flat", canonizers=[])(module, inputs, targets)


def test_concept_relevance_features_are_clustered_too() -> None:
    # (N, D) concept relevances (e.g. CRP of a layer): a group of class 0 uses concept 7, nobody else does
    rng = np.random.default_rng(0)
    feats = rng.gamma(2.0, 1.0, (120, 16))
    labels = np.repeat([0, 1], 60)
    feats[:15, 7] += 25.0
    cands = discover_candidates(None, labels, features=torch.from_numpy(feats), top_k=2)
    top = cands[0]
    assert top.class_index == 0 and sorted(top.rows) == list(range(15)) and top.suspicious
    assert "border" not in top.terms and top.focus is None  # no maps: no location terms
    assert all(not c.suspicious for c in cands if c.class_index == 1)


@pytest.mark.parametrize("jitter", [None, 3])
def test_imbalance_guards_cap_and_per_class_rates(shapes, jitter) -> None:
    _, x, y, flags, _, heat = shapes["square"]
    if jitter is not None:
        # the maps another machine computes (other CPU, thread count, BLAS) differ a little; this seed makes a
        # tagged-class candidate overlap another class (out_rate 0.67), where the rates per class must still cancel
        heat = heat * (1 + 0.05 * torch.rand(heat.shape, generator=torch.Generator().manual_seed(jitter)))
    # the other classes 4x larger (duplicates): the tagged class's candidates and their rates do not change. The cap
    # is above every class size here: a capped class is a random subsample, whose rates are estimates (they differ
    # by the sampling error, 0.347 vs 0.344 for the jittered maps at the default cap)
    other = (y != TAGGED_CLASS).nonzero().flatten()
    rows = torch.cat([torch.arange(len(y))] + [other] * 3)
    cap = len(rows)
    base = [c for c in discover_candidates(heat, y, max_per_class=cap) if c.class_index == TAGGED_CLASS]
    heavy = [c for c in discover_candidates(heat[rows], y[rows], max_per_class=cap) if c.class_index == TAGGED_CLASS]
    assert [c.rows for c in base] == [c.rows for c in heavy]
    # the same float64 arithmetic on the same rows (a rate k / n against 4k / 4n): equal but for the rounding of a
    # few float64 operations
    eps = float(np.finfo(np.float64).eps)
    assert [c.score for c in base] == pytest.approx([c.score for c in heavy], rel=64 * eps)
    # clustering is per class: at the default cap, which subsamples the heavy classes, the top candidate (the tag,
    # near no other class) is the same group with the same score
    capped = [c for c in discover_candidates(heat[rows], y[rows]) if c.class_index == TAGGED_CLASS]
    assert capped[0].rows == base[0].rows and capped[0].score == pytest.approx(base[0].score, rel=64 * eps)
    # the cap bounds what is clustered per class, and the subset is seeded
    capped = discover_candidates(heat[rows], y[rows], max_per_class=40, seed=3)
    again = discover_candidates(heat[rows], y[rows], max_per_class=40, seed=3)
    assert all(c.size <= 0.5 * 40 for c in capped)
    assert [(c.class_index, c.members, c.score) for c in capped] == [(c.class_index, c.members, c.score) for c in again]
    tagged = [c for c in capped if c.class_index == TAGGED_CLASS]
    assert max(_purity_recall(c, flags[rows], y[rows])[0] for c in tagged) >= 0.8


def test_to_dict_render_and_validation(shapes) -> None:
    _, x, y, _, _, heat = shapes["square"]
    cands = discover_candidates(heat, y, [10 * i for i in range(len(y))], top_k=2)
    d = cands[0].to_dict()
    assert {"class", "members", "score", "size"} <= set(d) and d["size"] == len(d["members"])
    assert all(isinstance(m, int) for m in d["members"]) and math.isfinite(d["score"])
    one = render_candidates(cands[:1], x, heat, labels=y, per_candidate=4, tile=32)
    three = render_candidates(cands[:3], x, heat, labels=y, per_candidate=4, tile=32, class_names=["o", "s", "+"])
    assert one.dtype == np.uint8 and one.ndim == 3 and one.shape[2] == 3
    assert three.shape[1] == one.shape[1] and three.shape[0] > 2 * one.shape[0] - 200  # one block per candidate
    assert one.std() > 10  # not blank
    with pytest.raises(ValueError, match="ids"):
        discover_candidates(heat, y, [0, 1])
    with pytest.raises(ValueError, match="heatmaps"):
        discover_candidates(heat[:5], y)
    with pytest.raises(ValueError, match="heatmaps .* or features"):
        discover_candidates(None, y)
    with pytest.raises(ValueError, match="no candidates"):
        render_candidates([], x, heat)
    with pytest.raises(ValueError, match="mass"):
        candidate_masks(heat[:2], mass=0.0)


def test_relevance_outside_the_region_of_interest_is_a_location_term() -> None:
    # chest-X-ray-like: the evidence should lie in the lungs (the ROI); 12 images of class 0 look at a marker
    # outside them, at the top right
    g = torch.Generator().manual_seed(0)
    maps = 0.02 * torch.rand(80, 32, 32, generator=g)
    for i in range(80):
        y, x = torch.randint(10, 16, (2,), generator=g).tolist()
        maps[i, y : y + 8, x : x + 8] += 1.0
    maps[:12, 1:5, 26:30] += 3.0
    roi = torch.zeros(80, 32, 32, dtype=torch.bool)
    roi[:, 6:28, 4:28] = True
    labels = torch.tensor([0] * 40 + [1] * 40)
    with_roi = discover_candidates(maps, labels, roi_masks=roi, top_k=1)
    plain = discover_candidates(maps, labels, top_k=1)
    top = with_roi[0]
    assert top.rows == list(range(12)) and top.terms["outside_roi"] > 0.3
    assert top.score > plain[0].score  # being outside the region of interest adds to the suspicion
    assert "outside_roi" not in plain[0].terms
    with pytest.raises(ValueError, match="roi_masks"):
        discover_candidates(None, labels, features=torch.rand(80, 5), roi_masks=roi)


def _border_maps(n: int, g: torch.Generator, border_share: torch.Tensor) -> torch.Tensor:
    """(n, 32, 32) maps: an object blob in the middle and ``border_share`` of the mass spread over the border band."""
    maps = 1e-4 * torch.rand(n, 32, 32, generator=g)
    band = torch.ones(32, 32, dtype=torch.bool)
    band[4:28, 4:28] = False
    for i in range(n):
        y, x = torch.randint(9, 12, (2,), generator=g).tolist()
        obj = torch.zeros(32, 32)
        obj[y : y + 12, x : x + 12] = 1.0
        maps[i] += (1 - border_share[i]) * obj / obj.sum() + border_share[i] * band.float() / band.sum()
    return maps


def test_concepts_beside_the_maps_keep_a_one_class_artifact_specific() -> None:
    # the demo's situation: 30 % of class 1 look at the border (an artifact drawing 40 % of the relevance, less than
    # the object); every image of class 0 looks at the border as well, through another concept (its absence speaks
    # for class 0). The maps alone cannot tell the two apart; the concepts can.
    g = torch.Generator().manual_seed(0)
    n = 60
    artifact = torch.zeros(2 * n, dtype=torch.bool)
    artifact[n : n + 18] = True
    share = torch.where(artifact, 0.4, 0.02)
    share[:n] = 0.4  # class 0: the border too
    maps = _border_maps(2 * n, g, share)
    labels = torch.tensor([0] * n + [1] * n)
    concepts = torch.rand(2 * n, 12, generator=g)
    concepts[:, 0] += 4.0  # the object concept
    concepts[artifact, 5] += 4.0  # the artifact's concept
    concepts[:n, 9] += 4.0  # class 0's border concept
    alone = [c for c in discover_candidates(maps, labels, top_k=3) if c.class_index == 1]
    both = [c for c in discover_candidates(maps, labels, features=concepts, top_k=3) if c.class_index == 1]

    def on_artifact(c: Candidate) -> bool:
        return float(artifact[c.rows].float().mean()) >= 0.8 and int(artifact[c.rows].sum()) >= 0.6 * 18

    # maps alone: the border group of class 1 looks like class 0, so it is no more specific than a coin
    assert not any(on_artifact(c) and c.suspicious for c in alone), [(c.size, c.score) for c in alone]
    top = both[0]
    assert on_artifact(top) and top.suspicious, [(c.size, c.score, c.terms["specificity"]) for c in both]
    assert top.terms["specificity"] > 0.9 and top.terms["border"] > 0.15
    assert all(not c.suspicious for c in both[1:] if not on_artifact(c))


def test_distinct_is_measured_on_the_maps_where_the_group_exceeds_the_rest() -> None:
    # an artifact drawing less relevance than the object (25 % on the border), found through its concept: half of
    # the group's mass is still on the object, where every image looks; the excess on the border sets it apart
    g = torch.Generator().manual_seed(1)
    artifact = torch.zeros(80, dtype=torch.bool)
    artifact[:20] = True
    maps = _border_maps(80, g, torch.where(artifact, 0.25, 0.02))
    concepts = torch.rand(80, 12, generator=g)
    concepts[:, 0] += 4.0
    concepts[artifact, 5] += 4.0
    top = discover_candidates(maps, torch.zeros(80, dtype=torch.long), features=concepts, top_k=1)[0]
    assert sorted(top.rows) == list(range(20)), top.rows
    # reference: the pooled maps' log ratio of the members' mean to the rest's where the members' mean is larger
    from lit_xai.artifacts import spray_features

    pooled = torch.from_numpy(spray_features(maps, (16, 16)))
    mean_s, mean_r = pooled[artifact].mean(0), pooled[~artifact].mean(0)
    excess = mean_s > mean_r
    reference = math.log(float(mean_s[excess].sum() / mean_r[excess].sum()))
    # two sums of <= D non-negative cells in the pooled maps' dtype, in any order: their log ratio within 2 D eps
    tol = 2 * pooled.shape[1] * torch.finfo(pooled.dtype).eps
    assert top.terms["distinct_raw"] == pytest.approx(reference, abs=tol)
    assert reference > math.log(3.0) and top.terms["distinct"] > 0.5


def test_score_is_its_terms_with_location_squared(shapes) -> None:
    # the score the thresholds were measured on (benchmarks/README.md, suites discovery and discovery_recall):
    # max(distinct, 0) * 2 * specificity * (1 + location) ** LOCATION_POWER, location counted twice because it is
    # what sets a small artifact group apart from an object group of the same distinctness
    from lit_xai.shortcuts.discovery import LOCATION_POWER

    _, _, y, flags, _, heat = shapes["square"]
    found = discover_candidates(heat, y, top_k=3)
    assert LOCATION_POWER == 2.0 and len(found) >= 3
    for c in found:
        t = c.terms
        # a product of four float64 factors: within a few float64 eps of the same product recomputed
        expected = max(t["distinct"], 0.0) * 2.0 * t["specificity"] * (1.0 + t["location"]) ** 2
        assert c.score == pytest.approx(expected, rel=8 * np.finfo(np.float64).eps, abs=1e-300)
    # the corner tag sits off the object: its group's location term exceeds that of every other class's candidate
    tag = max(found, key=lambda c: c.score)
    assert tag.class_index == TAGGED_CLASS and _purity_recall(tag, flags, y)[0] >= 0.8
    others = [c.terms["location"] for c in found if c.class_index != TAGGED_CLASS]
    assert tag.terms["location"] > max(others), (tag.terms["location"], others)


@pytest.mark.slow
def test_demo_ring_is_the_top_melanoma_candidate_of_the_monitor(tmp_path) -> None:
    # the demo (configs/demo.yaml's data, model and ShortcutMonitor, default discovery: maps beside concepts, every
    # 2nd epoch) with the ring in 30 % of melanomas, then the same without the ring; the ring flags score the result
    from lit_xai.shortcuts import Discovery

    ring = demo_discovery(0.3, str(tmp_path / "ring"))
    clean = demo_discovery(0.0, str(tmp_path / "clean"))
    assert sorted(ring["epochs"]) == [1, 3, 5, 7] and "CRP" in ring["clustered"]
    for epoch, e in ring["epochs"].items():
        top = e["melanoma"][0]  # (rank, purity, recall, score)
        assert top[1] >= 0.8, (epoch, e)  # the first melanoma candidate is made of ring images at every epoch
        # measured (the demo's data, model and monitor, 2026-12-07, 1 torch thread, the squared-location score):
        # purity 0.92, 1.00, 0.91, 0.95; recall 0.63, 0.58, 0.76, 0.92 (22 of the pool's 38 ring images at epoch
        # 3); score 1.69, 2.09, 2.60, 4.10 at epochs 1, 3, 5, 7 (threshold 2.25). Recall and score depend on the
        # thread count (2 threads: recall >= 0.6 from epoch 3), so from epoch 3 the group holds a majority of the
        # ring images and from epoch 5 at least 0.6 of them; from epoch 5 it scores inside the band where
        # Discovery.persist has it tested (a candidate is judged by the sham-controlled tests,
        # tests/shortcuts/test_candidate_verdict.py), and above the threshold itself by the last epoch
        if epoch >= 3:
            assert top[2] > 0.5, (epoch, e)
        if epoch >= 5:
            assert top[2] >= 0.6, (epoch, e)
        if epoch >= 5:
            assert top[3] >= Discovery().persist * SUSPICIOUS_THRESHOLD_CONCEPTS, (epoch, e)
    assert ring["epochs"][7]["melanoma"][0][3] >= SUSPICIOUS_THRESHOLD_CONCEPTS, ring["epochs"][7]
    assert clean["max_score"] < SUSPICIOUS_THRESHOLD_CONCEPTS, clean["epochs"]  # measured max 0.84 (threshold 2.25)


# ---------------------------------------------------------------------------- candidates verified (issue 32, item 1)
def _watch_verdicts(net, x, y, threshold=None) -> tuple[list[dict], list]:
    """What ShortcutWatch does at a discovery epoch, with its defaults (maps alone: the tiny CNN has no concept
    layer in its profile): discover, then test each suspicious candidate like a registered artifact."""
    from lit_xai.contracts import ModelContract, ValueRange
    from lit_xai.shortcuts import Discovery, ShortcutWatch

    watch = ShortcutWatch(("ring",), discovery=Discovery(concepts=False, threshold=threshold))
    watch.pool = ReliancePool(x, x - 0.5, y, list(range(len(y))))
    watch.pool.detect("ring")
    contract = ModelContract(None, 3, "multiclass", ["disc", "square", "cross"], ValueRange(lambda v: v + 0.5,
                             lambda v: v - 0.5, "test"))  # fmt: skip
    found = watch.discover(net)
    return watch.verify(contract, net, found), found["candidates"]


def test_a_candidate_no_detector_knows_is_verified_and_the_clean_data_is_not(shapes) -> None:
    from lit_xai.shortcuts import AlertRule

    net, x, y, flags, _, _ = shapes["square"]
    before = set(ARTIFACTS)
    verified, cands = _watch_verdicts(net, x, y)
    assert set(ARTIFACTS) == before  # registered for the measurement only
    tag = [v for v in verified if v["class"] == "square"]
    assert tag and tag[0]["label"] == "unnamed artifact 1 of class 'square'", [v["label"] for v in verified]
    evidence = tag[0]["evidence"]
    # the artifact built from the members alone goes through the same sham-controlled tests and rule
    assert {"insertion", "removal"} <= set(evidence["tests"])
    decision, reason = AlertRule().decide(evidence)
    assert decision is True, (reason, evidence["counterfactual"], evidence.get("removal"))
    assert tag[0]["twin"] is None  # the ring detector does not flag the tag's members
    members = torch.tensor(tag[0]["members"])
    assert float(flags[members].float().mean()) >= 0.8  # and they are the tagged images
    # the same images without the tag, a model trained without it: no candidate is tested, none verified
    net_c, xc, yc, _, _, _ = shapes["None"]
    clean, _ = _watch_verdicts(net_c, xc, yc)
    assert not any(AlertRule().decide(v["evidence"])[0] for v in clean)
    assert len(tag) == 1  # the tag split over two clusters (measured) is tested and named once
