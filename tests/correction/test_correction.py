"""Pure correction core: the signal-pattern CAV, the exact P-ClArC projection, the right-reason penalties, and the
penalty lowering reliance on a planted artifact."""

from __future__ import annotations

import pytest
import torch
from _correction_data import SIZE, SmallNet, accuracy, planted, reliance
from _tolerance import reduction_atol
from torch import nn

from lit_xai.correction import (
    ActivationProjection,
    ProjectedModel,
    collect_activations,
    fit_cav,
    pool,
    project,
    projection_hook,
    resolve_layer,
    rrclarc_penalty,
    rrr_penalty,
)


# ----------------------------------------------------------------------------------------- CAV
def test_pattern_cav_is_the_normalised_covariance_and_ignores_distractors():
    g = torch.Generator().manual_seed(0)
    n = 400
    t = torch.arange(n) % 2 == 0
    signal = torch.tensor([1.0, 1.0, 0.0]) / 2**0.5
    distractor = torch.randn(n, generator=g)
    acts = 2.0 * t[:, None].float() * signal + distractor[:, None] * torch.tensor([0.0, 1.0, 0.0])
    cav = fit_cav(acts, t, layer="x", pooling="flatten")
    reference = acts[t].mean(0) - acts[~t].mean(0)
    # float32 means over 200 rows, summed in whatever order fit_cav's kernels take: the summation bound
    tol = reduction_atol(acts, terms=int(t.sum()))
    assert torch.allclose(cav.direction, reference / reference.norm(), rtol=0, atol=tol / float(reference.norm()))
    assert torch.isclose(cav.direction.norm(), torch.tensor(1.0))
    assert torch.allclose(cav.clean_mean, acts[~t].mean(0), rtol=0, atol=tol)
    assert cav.separability > 0.9 and cav.counts == (200, 200)  # the distractor blurs the scores a little
    assert cav.shift == pytest.approx(float(reference.norm()), rel=1e-5)
    # the artifact's true direction (not a classifier's filter, which would cancel the distractor on axis 1)
    assert float(cav.direction @ signal) > 0.99


def test_cav_needs_both_groups():
    with pytest.raises(ValueError, match="2 artifact and >= 2 clean"):
        fit_cav(torch.randn(5, 3), torch.tensor([True, False, False, False, False]))


def test_layer_errors_list_valid_names():
    with pytest.raises(ValueError, match="conv1, feat, feat.0"):
        resolve_layer(SmallNet(), "layer3")


def test_collect_activations_leaves_no_trace():
    model = SmallNet().train()
    model.feat.eval()
    acts = collect_activations(model, "feat", torch.rand(5, 3, SIZE, SIZE), pooling="mean")
    assert acts.shape == (5, 8)
    assert model.training and not model.feat.training and model.conv1.training
    assert all(not m._forward_hooks for m in model.modules())


# ----------------------------------------------------------------------------------------- projection
@pytest.mark.parametrize("pooling", ["flatten", "mean"])
def test_projection_removes_the_cav_component_exactly(pooling):
    g = torch.Generator().manual_seed(1)
    h = torch.randn(32, 4, 3, 3, generator=g)
    labels = torch.arange(32) % 3 == 0
    h[labels, 1] += 2.0
    cav = fit_cav(pool(h, pooling), labels, pooling=pooling)
    out = project(h, cav.direction, cav.clean_mean, pooling)
    v, m = cav.direction.double(), cav.clean_mean.double()
    if pooling == "flatten":
        comp = (out.flatten(1).double() - m) @ v
        delta = (out - h).flatten(1).double()
        parallel = delta - ((delta @ v)[:, None] * v)
    else:  # every position's channel vector, hence also the mean-pooled one
        comp = ((out.double() - m[None, :, None, None]) * v[None, :, None, None]).sum(1)
        pooled = (pool(out, "mean").double() - m) @ v
        assert pooled.abs().max() < 1e-5
        delta = (out - h).double()
        parallel = delta - (delta * v[None, :, None, None]).sum(1, keepdim=True) * v[None, :, None, None]
    assert comp.abs().max() < 1e-5  # zero component along v relative to the clean mean
    assert parallel.abs().max() < 1e-5  # nothing orthogonal to v changed
    assert (out - h).abs().max() > 0.1


@pytest.mark.parametrize("pooling", ["flatten", "mean"])
def test_subspace_projection_removes_every_component_exactly(pooling):
    """A (k, D) basis: no component left in the subspace (relative to the clean mean), nothing outside it changed."""
    g = torch.Generator().manual_seed(2)
    h = torch.randn(16, 6, 3, 3, generator=g)
    d = 6 if pooling == "mean" else 6 * 9
    basis = torch.linalg.qr(torch.randn(d, 3, generator=g, dtype=torch.float64))[0].T.float()  # (3, D) orthonormal
    m = torch.randn(d, generator=g)
    out = project(h, basis, m, pooling)
    V, mean = basis.double(), m.double()
    if pooling == "flatten":
        comp = (out.flatten(1).double() - mean) @ V.T
        delta = (out - h).flatten(1).double()
    else:  # per position: the channel vectors
        comp = torch.einsum("nchw,kc->nkhw", out.double() - mean[None, :, None, None], V)
        delta = (out - h).double().permute(0, 2, 3, 1).reshape(-1, d)
    outside = delta - (delta @ V.T) @ V
    assert comp.abs().max() < 1e-5 and outside.abs().max() < 1e-5 and delta.abs().max() > 0.1
    one = project(h, basis[0], m, pooling)  # k = 1 as a (D,) vector and as a (1, D) basis agree
    assert torch.allclose(one, project(h, basis[:1], m, pooling), atol=reduction_atol(h, terms=basis.shape[1]))


def test_paired_basis_spans_the_artifact_moves_and_projects_them_out():
    """The artifact moves each image along one of two directions (a varying artifact): the 2-d basis spans both, and
    projecting it removes every paired move while one direction leaves some; the class features in the CAV (every
    artifact image of the fit is class 1) stay out of the basis."""
    from lit_xai.correction import paired_basis

    g = torch.Generator().manual_seed(3)
    clean = torch.randn(64, 8, generator=g)
    moves = torch.zeros(64, 8)
    moves[::2, 0], moves[1::2, 1] = 3.0, 3.0
    inserted = clean + moves
    class_feature = torch.zeros(64, 8)
    class_feature[:, 5] = 2.0  # the artifact images of the CAV fit also differ by a class feature
    cav = fit_cav(torch.cat([clean, inserted + class_feature]), torch.arange(128) >= 64, layer="fc")
    assert cav.direction[5].abs() > 0.3
    wide = paired_basis(cav, clean, inserted, 2)
    assert wide.basis.shape == (2, 8) and torch.equal(wide.direction, cav.direction)
    assert wide.basis[:, 5].abs().max() < 1e-6 and (wide.basis @ moves.mean(0) > 0).all()
    assert torch.allclose(wide.basis @ wide.basis.T, torch.eye(2), atol=1e-5)
    assert torch.allclose(wide.basis[:, :2].norm(dim=0), torch.ones(2), atol=1e-4)  # spans axes 0 and 1
    for k, left in ((1, True), (2, False)):
        basis = paired_basis(cav, clean, inserted, k).directions
        gap = project(inserted, basis, cav.clean_mean) - project(clean, basis, cav.clean_mean)
        assert bool(gap.abs().max() > 1.0) is left
    restored = type(cav).from_dict(wide.to_dict())
    assert torch.equal(restored.basis, wide.basis)
    with pytest.raises(ValueError, match="same"):
        paired_basis(cav, clean, inserted[:3], 2)


def test_projection_hook_is_removed_also_on_error_and_gates():
    model = SmallNet()
    x = torch.rand(6, 3, SIZE, SIZE)
    cav = fit_cav(collect_activations(model, "feat", x), torch.tensor([1, 1, 1, 0, 0, 0]).bool(), layer="feat")
    plain = model(x)
    gate = torch.tensor([True, False, True, False, True, False])
    with projection_hook(model, cav, gate=lambda inputs: gate):
        gated = model(x)
    assert torch.equal(gated[~gate], plain[~gate]) and not torch.allclose(gated[gate], plain[gate])
    with pytest.raises(RuntimeError, match="boom"), projection_hook(model, cav):
        raise RuntimeError("boom")
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert torch.equal(model(x), plain)


def test_projected_model_saves_and_loads_and_leaves_the_inner_model_alone():
    model = SmallNet()
    x = torch.rand(6, 3, SIZE, SIZE)
    cav = fit_cav(collect_activations(model, "feat", x), torch.tensor([1, 1, 1, 0, 0, 0]).bool(), layer="feat")
    wrapped = ProjectedModel(model, cav)
    expected = wrapped(x)
    with projection_hook(model, cav):
        assert torch.allclose(model(x), expected)
    fresh = ProjectedModel(SmallNet(), cav)
    fresh.projection.direction.zero_()
    fresh.load_state_dict(wrapped.state_dict())
    assert torch.allclose(fresh(x), expected)
    assert not torch.allclose(model(x), expected)  # the wrapped model on its own is the original
    assert isinstance(wrapped.projection, ActivationProjection)


# ----------------------------------------------------------------------------------------- penalties
@pytest.mark.parametrize("pooling", ["flatten", "mean"])
def test_rrclarc_penalty_matches_finite_differences(pooling):
    torch.manual_seed(0)
    model = SmallNet().double()
    x = torch.rand(4, 3, SIZE, SIZE, dtype=torch.double)
    h = model.feat(torch.relu(model.conv1(x)))
    v = torch.randn(8 if pooling == "mean" else h[0].numel(), dtype=torch.double)
    v = v / v.norm()
    hv = h.detach().requires_grad_(True)
    penalty = rrclarc_penalty(hv, model.head(hv), v, pooling, output="all")
    step = v[None, :, None, None].expand_as(h) if pooling == "mean" else v.view(1, *h.shape[1:])
    eps = 1e-5
    with torch.no_grad():
        fd = (model.head(h + eps * step) - model.head(h - eps * step)) / (2 * eps)  # (N, K) directional derivatives
    assert float(penalty.detach()) == pytest.approx(float(fd.pow(2).mean(0).mean()), rel=1e-6)  # float64 model
    targets = torch.tensor([0, 1, 1, 0])
    true = rrclarc_penalty(hv, model.head(hv), v, pooling, output="true", targets=targets)
    assert float(true) == pytest.approx(float(fd.gather(1, targets[:, None]).pow(2).mean()), rel=1e-6)  # float64


def test_rrr_penalty_is_the_masked_input_gradient():
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
    x = torch.rand(3, 3, 4, 4, requires_grad=True)
    masks = torch.zeros(3, 4, 4, dtype=torch.bool)
    masks[:, 0, 0] = True
    penalty = rrr_penalty(x, lin(x), masks)
    (grad,) = torch.autograd.grad(torch.log_softmax(lin(x), 1).sum(), x)
    rel = x.numel() * torch.finfo(x.dtype).eps  # a float32 sum of squares over every entry, in another order
    assert float(penalty) == pytest.approx(float((grad * masks[:, None]).pow(2).flatten(1).sum(1).mean()), rel=rel)
    assert float(rrr_penalty(x, lin(x), torch.zeros_like(masks))) == 0.0
    with pytest.raises(ValueError, match="requires_grad"):
        rrr_penalty(x.detach(), lin(x), masks)


def _train(penalty_weight: float, method: str = "rrclarc", epochs: int = 4, seed: int = 0) -> SmallNet:
    torch.manual_seed(seed)
    model = SmallNet()
    data = planted(256, seed=1)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    captured: dict[str, torch.Tensor] = {}
    for _ in range(epochs):
        cav = fit_cav(collect_activations(model, "feat", data["image"]), data["artifact"], layer="feat")
        for i in range(0, 256, 32):
            x, y = data["image"][i : i + 32], data["target"][i : i + 32]
            if method == "rrr":
                x = x.clone().requires_grad_(True)
            handle = model.feat.register_forward_hook(lambda _m, _i, out: captured.update(h=out))
            logits = model.train()(x)
            handle.remove()
            loss = nn.functional.cross_entropy(logits, y)
            if penalty_weight:
                if method == "rrr":
                    penalty = rrr_penalty(x, logits, data["artifact_mask"][i : i + 32])
                else:
                    penalty = rrclarc_penalty(captured["h"], logits, cav.direction * cav.shift, "flatten")
                loss = loss + penalty_weight * penalty
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model


@pytest.mark.parametrize("method,weight", [("rrclarc", 1.0), ("rrr", 10.0)])
def test_penalty_lowers_reliance_on_a_planted_artifact(method, weight):
    test = planted(200, seed=2)
    plain, corrected = _train(0.0), _train(weight, method)
    assert reliance(plain, test) > 0.2  # the shortcut was learned without the penalty
    assert reliance(corrected, test) < 0.5 * reliance(plain, test)
    assert accuracy(corrected, planted(200, seed=2, artifact_rate=0.0)) > 0.8  # and the real cue instead


def test_sample_labeled_sources_and_within_class():
    from lit_xai.correction import sample_labeled

    data = planted(40, seed=3, artifact_rate=0.5)
    items = [{k: v[i] for k, v in data.items()} for i in range(40)]
    images, labels, idx = sample_labeled(items, 12, "field", generator=torch.Generator().manual_seed(0))
    assert len(idx) == 12 and torch.equal(labels, data["artifact"][idx]) and torch.equal(images, data["image"][idx])
    _, labels, idx = sample_labeled(items, 10, "field", generator=torch.Generator().manual_seed(0), within_class=1)
    assert (data["target"][idx] == 1).all() and torch.equal(labels, data["artifact"][idx])
    marked = torch.nonzero(data["artifact"]).flatten().tolist()
    _, labels, idx = sample_labeled(items, 8, marked, generator=torch.Generator().manual_seed(0))
    assert labels.sum() == 4 and torch.equal(labels, data["artifact"][idx])  # half the sample from the marked items
    with pytest.raises(ValueError, match="no 'artifact' field"):
        sample_labeled([{"image": torch.zeros(3, 4, 4), "target": 0}], 1, "field")
