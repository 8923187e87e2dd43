"""ShortcutCorrection: adds exactly lambda * the RR-ClArC gradient (also with gradient accumulation and bf16-mixed),
lowers reliance on a planted artifact in a foreign LightningModule, and leaves no trace."""

from __future__ import annotations

import copy

import pytest
import torch
from _correction_data import CORNER_NORMALIZATION, DictData, Foreign, accuracy, fit, loader, planted, reliance
from lightning.pytorch import Callback, LightningModule
from torch import nn
from torch.utils.data import DataLoader

from lit_xai.callbacks import ShortcutCorrection
from lit_xai.correction import rrclarc_penalty

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    """These fits run without a logger: the scalars' CSV fallback (xai_images/) goes to the test's own folder."""
    monkeypatch.chdir(tmp_path)


def correction(**kw) -> ShortcutCorrection:
    args = dict(layer="feat", module_attr="model", weight=1.0, max_samples=64)
    args.update(kw)
    return ShortcutCorrection(**args)


def no_hooks(module: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in module.modules())


class FirstGrads(Callback):
    """The (unscaled, accumulated) gradients the optimizer sees at its first step."""

    def __init__(self) -> None:
        self.grads: dict[str, torch.Tensor] = {}

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if not self.grads:
            self.grads = {n: p.grad.detach().clone() for n, p in pl_module.named_parameters()}


def test_no_trace_with_zero_weight():
    """All the machinery (CAV refits with sampling, hooks on every step, the extra gradient) but lambda = 0: the
    weights and the global RNG end bit-identical to a run without the callback."""

    def run(callbacks):
        torch.manual_seed(5)
        module = Foreign()
        fit(module, callbacks, loader(), max_epochs=2)
        return {k: v.clone() for k, v in module.state_dict().items()}, torch.rand(3), module

    plain, rng_plain, _ = run([])
    cb = correction(weight=0.0)
    corrected, rng_corrected, module = run([cb])
    assert plain.keys() == corrected.keys()
    for k in plain:
        assert torch.equal(plain[k], corrected[k]), f"{k} differs: the callback changed training"
    assert torch.equal(rng_plain, rng_corrected)
    assert no_hooks(module) and all(p.requires_grad for p in module.parameters()) and module.training
    assert [h["epoch"] for h in cb.history] == [0.0, 1.0]
    assert {"correction/lambda", "correction/penalty", "correction/cav_auc"} <= set(cb.history[0])
    assert cb.history[0]["correction/cav_auc"] > 0.9  # the corner square is easy to find at this layer


def _reference_grads(initial: LightningModule, cb: ShortcutCorrection, data: DataLoader, accumulate: int, weight):
    """Gradients of sum over the window of (CE + weight * penalty) / accumulate, by hand."""
    module = copy.deepcopy(initial)
    module.zero_grad()
    direction = cb.cav.direction * cb.cav.shift
    captured: dict[str, torch.Tensor] = {}
    for b, batch in enumerate(data):
        if b == accumulate:
            break
        handle = module.model.feat.register_forward_hook(lambda _m, _i, out: captured.update(h=out))
        logits = module.model(batch["image"])
        handle.remove()
        loss = nn.functional.cross_entropy(logits, batch["target"])
        if weight:
            loss = loss + weight * rrclarc_penalty(captured["h"], logits, direction, "flatten", "all")
        (loss / accumulate).backward()
    return {n: p.grad.detach().clone() for n, p in module.named_parameters()}


def test_adds_lambda_times_the_penalty_gradient_with_accumulation():
    torch.manual_seed(0)
    initial = Foreign(optimizer="sgd")
    grads, cb = FirstGrads(), correction(weight=2.0)
    data = loader(batch_size=16)
    fit(copy.deepcopy(initial), [cb, grads], data, max_steps=1, accumulate_grad_batches=2)
    reference = _reference_grads(initial, cb, data, accumulate=2, weight=2.0)
    without = _reference_grads(initial, cb, data, accumulate=2, weight=0.0)
    for n, g in reference.items():
        assert torch.allclose(grads.grads[n], g, rtol=1e-4, atol=1e-6), n
    assert any((reference[n] - without[n]).abs().max() > 1e-4 for n in reference)  # the penalty did contribute


def test_bf16_mixed_adds_the_same_penalty_gradient():
    torch.manual_seed(0)
    initial = Foreign(optimizer="sgd")
    data = loader(batch_size=16)
    runs = {}
    for weight in (0.0, 2.0):
        grads, cb = FirstGrads(), correction(weight=weight)
        fit(copy.deepcopy(initial), [cb, grads], data, max_steps=1, accumulate_grad_batches=2, precision="bf16-mixed")
        runs[weight] = (grads.grads, cb)
    added = torch.cat([(runs[2.0][0][n] - runs[0.0][0][n]).flatten() for n in runs[0.0][0]])
    cb = runs[2.0][1]
    with_penalty, without = _reference_grads(initial, cb, data, 2, 2.0), _reference_grads(initial, cb, data, 2, 0.0)
    expected = torch.cat([(with_penalty[n] - without[n]).flatten() for n in without])
    cosine = float(torch.nn.functional.cosine_similarity(added, expected, dim=0))
    assert cosine > 0.95, cosine
    assert 0.7 < float(added.norm() / expected.norm()) < 1.3
    assert all(torch.isfinite(torch.tensor(h["correction/penalty"])) for h in cb.history)


def test_lowers_reliance_on_a_planted_artifact_in_a_foreign_module():
    test = planted(200, seed=2)
    models = {}
    for weight in (0.0, 1.0):
        torch.manual_seed(0)
        module = Foreign()
        fit(module, [correction(weight=weight, max_samples=128)], loader(), max_epochs=4)
        models[weight] = module.model
    assert reliance(models[0.0], test) > 0.2
    assert reliance(models[1.0], test) < 0.5 * reliance(models[0.0], test)
    assert accuracy(models[1.0], planted(200, seed=2, artifact_rate=0.0)) > 0.8


def test_rrr_method_uses_the_batch_masks():
    torch.manual_seed(0)
    module = Foreign()
    cb = correction(method="rrr", weight=10.0)
    fit(module, [cb], loader(), max_epochs=1)
    assert cb.history[0]["correction/penalty"] > 0 and no_hooks(module)


def test_errors_name_the_fix():
    with pytest.raises(ValueError, match="feat.0"):
        fit(Foreign(), [correction(layer="layer3")], loader(n=32))

    class Manual(Foreign):
        def __init__(self) -> None:
            super().__init__()
            self.automatic_optimization = False

    with pytest.raises(ValueError, match="manual optimisation"):
        fit(Manual(), [correction()], loader(n=32))


def test_state_round_trip():
    torch.manual_seed(0)
    cb = correction()
    fit(Foreign(), [cb], loader(n=64), max_epochs=1)
    restored = correction()
    restored.load_state_dict(cb.state_dict())
    assert torch.equal(restored.cav.direction, cb.cav.direction) and restored.history == cb.history


# ----------------------------------------------------------------------------------------- A-ClArC
#: model inputs x <-> images y in [0, 1]: x = (y - 0.25) / 0.25, so the planted data (about -0.1 ... 1.5) is not clipped


def _insert_corner01(images01: torch.Tensor, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The planted corner square in [0, 1] space (1.5 in model space)."""
    out = images01.clone()
    out[:, :, :4, :4] = (1.5 - (-1.0)) * 0.25  # from01^-1(1.5) = 1.5 * 0.25 + 0.25
    masks = torch.zeros(images01.shape[0], *images01.shape[-2:], dtype=torch.bool)
    masks[:, :4, :4] = True
    return out, masks


@pytest.fixture
def corner_artifact():
    from lit_xai.artifacts import ARTIFACTS, register_artifact

    register_artifact("test_corner", detect=lambda x: (x[:, :, :4, :4].mean((1, 2, 3)), x.mean(1) > 0.6),
                      threshold=0.6, insert=_insert_corner01)
    try:
        yield "test_corner"
    finally:
        ARTIFACTS.pop("test_corner", None)


def aclarc(**kw) -> ShortcutCorrection:
    args = dict(method="aclarc", artifact="test_corner", normalization=CORNER_NORMALIZATION, max_samples=128)
    args.update(kw)
    return correction(**args)


def test_aclarc_lowers_reliance_on_a_planted_artifact(corner_artifact):
    """Every class-1 training image carries the corner, no class-0 image does: A-ClArC draws it into the class-0
    images (rates 0 and 1 -> insertion probabilities 1 and 0), so it stops predicting the label."""
    test = planted(200, seed=2)
    models, callbacks = {}, {}
    for method in ("none", "aclarc"):
        torch.manual_seed(0)
        module = Foreign()
        callbacks[method] = [aclarc()] if method == "aclarc" else []
        fit(module, callbacks[method], loader(), max_epochs=4)
        models[method] = module.model
    assert reliance(models["none"], test) > 0.2
    assert abs(reliance(models["aclarc"], test)) < 0.25 * reliance(models["none"], test)
    assert accuracy(models["aclarc"], planted(200, seed=2, artifact_rate=0.0)) > 0.8
    cb = callbacks["aclarc"][0]
    assert cb.rates.tolist() == [0.0, 1.0] and cb.probabilities.tolist() == [1.0, 0.0]
    assert all(abs(h["correction/inserted"] - 0.5) < 1e-6 for h in cb.history)  # every class-0 image, nothing else


def test_aclarc_inserts_only_into_artifact_free_images_and_leaves_no_trace(corner_artifact):
    """The step sees the corner in exactly the chosen images (the others bit-identical); the global RNG, hooks and
    modes are as without the callback."""
    seen: list[dict[str, torch.Tensor]] = []

    class Recorder(Foreign):
        def training_step(self, batch, batch_idx):
            seen.append({k: v.clone() for k, v in batch.items()})
            return super().training_step(batch, batch_idx)

    data = planted(64, seed=1, artifact_rate=0.5)
    cb = aclarc(target_rate=0.75)
    torch.manual_seed(0)
    module = Recorder()
    fit(module, [cb], DataLoader(DictData(data), batch_size=16), max_epochs=1)
    rng_after = torch.rand(3)
    torch.manual_seed(0)
    fit(Recorder(), [], DataLoader(DictData(data), batch_size=16), max_epochs=1)
    assert torch.equal(rng_after, torch.rand(3))
    images = torch.cat([b["image"] for b in seen[:4]])
    flags = torch.cat([b["artifact"] for b in seen[:4]])
    changed = (images != data["image"]).flatten(1).any(1)
    assert changed.any() and not (changed & data["artifact"]).any()  # the carriers stay as they were
    assert torch.equal(flags, data["artifact"] | changed)  # the batch's flags follow the insertions
    assert torch.allclose(images[changed][:, :, :4, :4], torch.tensor(1.5))  # the corner, in model space
    assert torch.equal(images[changed][:, :, 4:], data["image"][changed][:, :, 4:])  # nothing else touched
    assert no_hooks(module) and module.training
    r1 = float(data["artifact"][data["target"] == 1].float().mean())  # about half of class 1 carries it
    assert torch.allclose(cb.probabilities, torch.tensor([0.75, (0.75 - r1) / (1 - r1)]))


def test_aclarc_needs_an_inserter_and_a_value_range(corner_artifact):
    from lit_xai.artifacts import ARTIFACTS, register_artifact

    register_artifact("test_no_insert", detect=ARTIFACTS["test_corner"].detect, threshold=0.6)
    try:
        with pytest.raises(ValueError, match="inserter"):
            fit(Foreign(), [aclarc(artifact="test_no_insert")], loader(n=32))
    finally:
        ARTIFACTS.pop("test_no_insert", None)
    with pytest.raises(ValueError, match="normalization"):
        fit(Foreign(), [aclarc(normalization=None)], loader(n=32))


def test_rrclarc_subspace_penalises_the_sum_over_its_directions(corner_artifact):
    """subspace=2: the CAV gets a 2-d paired basis and the penalty is the sum of the squared derivatives along it."""
    torch.manual_seed(0)
    module = Foreign()
    cb = correction(subspace=2, artifact="test_corner", normalization=CORNER_NORMALIZATION)
    fit(module, [cb], loader(n=64), max_epochs=1)
    basis = cb.cav.basis
    assert basis.shape == (2, cb.cav.direction.numel()) and no_hooks(module)
    assert torch.allclose(basis @ basis.T, torch.eye(2), atol=1e-5)
    h = torch.randn(4, 8, 8, 8, requires_grad=True)
    logits = module.model.head(h)
    both = rrclarc_penalty(h, logits, basis)
    parts = sum(rrclarc_penalty(h, logits, basis[i]) for i in range(2))
    assert torch.allclose(both, parts, rtol=1e-5)
