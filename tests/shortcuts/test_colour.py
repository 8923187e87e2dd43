"""Colour casts as discovered artifacts (lit_xai.shortcuts.colour): the group is found from the images alone, its
artifact adds / removes the group's colour, and its own sham controls for a colour change of the same size."""

from __future__ import annotations

import torch
from torch import nn

from lit_xai.artifacts import ARTIFACTS
from lit_xai.shortcuts import AlertRule, ReliancePool, measure_reliance
from lit_xai.shortcuts.colour import colour_candidates, colour_cast

CAST = torch.tensor([0.25, 0.05, -0.06])  # a hue shift and a brightening (+0.08)
#: the edits are a few float32 additions and 3-channel sums of values below 1: a few units of float32 rounding
TOL = 8 * torch.finfo(torch.float32).eps


def _images(n: int = 240, cast_rows: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes of textured images with random tone and tint; the first ``cast_rows`` of class 0 carry CAST."""
    g = torch.Generator().manual_seed(seed)
    tone = 0.35 + 0.3 * torch.rand(n, 1, 1, 1, generator=g)
    tint = 0.03 * torch.randn(n, 3, 1, 1, generator=g)
    x = (tone + tint + 0.03 * torch.randn(n, 3, 16, 16, generator=g)).clamp(0, 1)
    labels = torch.arange(n) % 2
    rows = (labels == 0).nonzero().flatten()[:cast_rows]
    x[rows] = (x[rows] + CAST[:, None, None]).clamp(0, 1)
    return x, labels


class Redness(nn.Module):
    """Class 0's logit grows with the images' red minus blue (a model that learned the cast), class 1's is 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean((2, 3))
        return torch.stack([30.0 * (m[:, 0] - m[:, 2]) - 1.0, torch.zeros(len(x))], 1)


class Brightness(nn.Module):
    """Class 0's logit grows with brightness only: a colour edit of the cast's size but no hue preference."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([30.0 * (x.mean((1, 2, 3)) - 0.5), torch.zeros(len(x))], 1)


def test_a_cast_group_is_found_and_clean_data_gives_none() -> None:
    x, labels = _images()
    found = colour_candidates(x, labels, list(range(100, 100 + len(x))))
    hits = [c for c in found if c.suspicious]
    cast_ids = [100 + int(r) for r in (labels == 0).nonzero().flatten()[:10]]
    assert len(hits) == 1 and hits[0].class_index == 0 and sorted(hits[0].members) == cast_ids, found
    clean, labels = _images(cast_rows=0)
    assert not any(c.suspicious for c in colour_candidates(clean, labels, list(range(len(clean)))))
    assert colour_candidates(clean[:, :1], labels, list(range(len(clean)))) == []  # grayscale: no hue


def test_the_cast_artifact_adds_removes_and_shams_a_colour_of_the_same_size() -> None:
    x, labels = _images()
    cand = next(c for c in colour_candidates(x, labels, list(range(len(x)))) if c.suspicious)
    cast = colour_cast(cand, x, labels=labels)
    # the members' colour from the rest's: its hue is the cast's, to 3 x the noise of 10 images' mean tint (0.03 /
    # sqrt(10)); its brightness part also holds the members' mean tone, which is random (0.087 per image)
    hue = cast.offset - cast.offset.mean()
    assert torch.allclose(hue, CAST - CAST.mean(), atol=3 * 0.03 / 10**0.5), cast.offset
    scores, masks = cast.detect(x)
    member = torch.zeros(len(x), dtype=torch.bool)
    member[cand.rows] = True
    assert bool(masks.all()) and cast.detector_j == 1.0
    assert bool((scores[member] >= cast.threshold).all()) and not bool((scores[labels == 1] >= cast.threshold).any())
    base = torch.full((4, 3, 8, 8), 0.5)
    inserted, masks = cast.insert(base)
    assert torch.allclose(inserted - base, cast.offset[None, :, None, None].expand_as(base), atol=TOL)
    assert torch.allclose(cast.remove(inserted, masks)[0], base, atol=TOL)
    sham = cast.sham(base, inserted, masks) - base
    real = inserted - base
    hue_real, hue_sham = real - real.mean(1, keepdim=True), sham - sham.mean(1, keepdim=True)
    # the same brightness change, a hue change of the same size, at right angles to the cast's
    assert torch.allclose(sham.mean(1), real.mean(1), atol=TOL)
    assert torch.allclose(hue_sham.norm(dim=1), hue_real.norm(dim=1), atol=TOL)
    assert float((hue_sham * hue_real).sum(1).abs().max()) < TOL


def _pool(x: torch.Tensor, labels: torch.Tensor) -> ReliancePool:
    return ReliancePool(x, x, labels, list(range(len(x))))


def test_the_insertion_test_uses_the_casts_own_sham() -> None:
    x, labels = _images()
    cand = next(c for c in colour_candidates(x, labels, list(range(len(x)))) if c.suspicious)
    cast = colour_cast(cand, x, labels=labels)
    before = set(ARTIFACTS)
    effects = {}
    for model in (Redness(), Brightness()):
        pool = _pool(x, labels)
        with cast.registered("_test_cast"):
            pool.detect("_test_cast")
            cast.flag_pool(pool, "_test_cast")
            evidence = measure_reliance(model, pool, "_test_cast", 0, lambda v: v, num_probes=0, seed=0)
        assert evidence["counterfactual"]["sham"] == "own"
        effects[type(model).__name__] = evidence["counterfactual"]
    assert set(ARTIFACTS) == before  # registered for the measurement only
    # a model that reads the hue relies on the cast; one that reads brightness only moves alike for cast and sham
    assert effects["Redness"]["interval"][0] > AlertRule().min_effect, effects["Redness"]
    assert abs(effects["Brightness"]["effect"]) < 0.05 and effects["Brightness"]["mean_shift"] > 0.05, effects


def test_the_watch_verifies_a_colour_group_as_an_unnamed_colour_cast() -> None:
    from lit_xai.contracts import ModelContract, ValueRange
    from lit_xai.shortcuts import ShortcutWatch

    x, labels = _images()
    watch = ShortcutWatch(("ring",))
    watch.pool = _pool(x, labels)
    watch.pool.detect("ring")
    contract = ModelContract(None, 2, "multiclass", ["a", "b"], ValueRange(lambda v: v, lambda v: v, "test"))
    rows = torch.arange(len(x))
    found = colour_candidates(x, labels, rows.tolist())
    verified = watch.verify_colour(contract, Redness(), found, rows, labels)
    assert [v["label"] for v in verified] == ["unnamed colour cast 1 of class 'a'"]
    decision, _ = AlertRule().decide(verified[0]["evidence"])
    assert decision and verified[0]["mask_share"] == 1.0 and verified[0]["key"] == "colour_1"
    brightness = watch.verify_colour(contract, Brightness(), found, rows, labels)[0]["evidence"]
    assert not AlertRule().decide(brightness)[0]  # the sham moves it alike: no reliance on the cast's hue
