"""ExplanationMonitor: logs what it promises, never changes training, works in foreign projects and odd modes."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
import torchvision
from lightning.pytorch import Callback, LightningModule, Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.data import DataLoader, TensorDataset

from lit_xai.callbacks import ExplanationMonitor, ModelSpec, Pictures, ShortcutBudget, ShortcutMonitor
from lit_xai.datamodules import SyntheticShortcutDataModule
from lit_xai.explainers import CRP, LRP, CallableExplainer, GradCAM, explain
from lit_xai.models import ImageClassifier
from lit_xai.probes import ProbeSelector, probes_from_tensors, select_probes


def tiny_dm(**kw) -> SyntheticShortcutDataModule:
    args = dict(num_train=64, num_val=32, num_test=16, image_size=32, batch_size=32, seed=0)
    args.update(kw)
    return SyntheticShortcutDataModule(**args)


def tiny_model(**kw) -> ImageClassifier:
    return ImageClassifier("tiny_resnet", num_classes=2, task="binary", class_names=["benign", "melanoma"], **kw)


def trainer_for(tmp_path, callbacks, logger=True, **kw) -> Trainer:
    args = dict(
        max_epochs=2,
        accelerator="cpu",
        devices=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        deterministic=True,
    )
    args.update(kw)
    log = TensorBoardLogger(str(tmp_path), name="run", default_hp_metric=False) if logger is True else logger
    return Trainer(default_root_dir=str(tmp_path), logger=log, callbacks=callbacks, **args)


def monitor(**kw) -> ExplanationMonitor:
    args = dict(explainers=("lrp", CRP(top_k=2), "gradcam"), probes=4, verbose=False, pictures=Pictures(tile=32))
    args.update(kw)
    return ExplanationMonitor(**args)


def events(tmp_path) -> EventAccumulator:
    files = sorted(Path(tmp_path).rglob("events.out.tfevents.*"))
    assert files, "no TensorBoard event file"
    acc = EventAccumulator(str(files[0].parent), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def no_hooks(module: torch.nn.Module) -> bool:
    return all(
        not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks and not m._backward_pre_hooks
        for m in module.modules()
    )


def test_logs_heatmaps_drift_timeline_and_scalars(tmp_path):
    seed_everything(0)
    mon = monitor(targets="both")
    trainer = trainer_for(tmp_path, [mon], max_epochs=3)
    trainer.fit(tiny_model(), tiny_dm())
    acc = events(tmp_path)
    images = acc.Tags()["images"]
    for tag in ("XAI/lrp/true", "XAI/lrp/pred", "XAI/gradcam/true", "XAI/crp/concepts", "XAI/lrp/timeline"):
        assert tag in images, (tag, images)
    # baseline at fit start + 3 epochs -> 4 grids, at increasing global steps (the TensorBoard slider)
    steps = [e.step for e in acc.Images("XAI/lrp/true")]
    assert steps == [0, 1, 2, 3]  # one step per explained epoch: completed epochs (0 = untrained model)
    scalars = acc.Tags()["scalars"]
    for measure in ("ssim", "spearman", "iou"):
        assert f"XAI_drift/lrp/{measure}_prev" in scalars and f"XAI_drift/gradcam/{measure}_first" in scalars
    assert "XAI_drift/time_s" in scalars
    assert not any(t.startswith("XAI_drift_probe/") for t in scalars)  # per-probe drift is off by default
    # epoch 0 is compared with the initial model, epochs 1 and 2 with their predecessors; same steps as the images
    assert [e.step for e in acc.Scalars("XAI_drift/lrp/ssim_prev")] == [1, 2, 3]
    assert [e.step for e in acc.Images("XAI/lrp/timeline")] == [0, 1, 2, 3]
    assert "XAI/probes/text_summary" in acc.Tags()["tensors"]  # the probe table (text plugin)
    assert [h["epoch"] for h in mon.history] == [-1, 0, 1, 2]
    values = [v.value for v in acc.Scalars("XAI_drift/lrp/spearman_first")]
    assert all(-1.0 <= v <= 1.0 for v in values)


def test_probes_are_stratified_reproducible_and_include_artifacts():
    dm = tiny_dm(num_val=64)
    dm.setup("fit")
    ds = dm.dataset("val")
    a = select_probes(ds, num_probes=6, seed=3, num_artifact=2)
    b = select_probes(ds, num_probes=6, seed=3, num_artifact=2)
    assert a.ids == b.ids and torch.equal(a.images, b.images)
    assert sorted(a.targets.tolist()) == [0, 0, 0, 1, 1, 1]
    assert int(a.artifact.sum()) == 2
    assert a.artifact_masks is not None and a.artifact_masks[a.artifact].any()


def test_never_changes_training(tmp_path):
    def final_weights(callbacks, sub):
        seed_everything(123)
        model = tiny_model()
        trainer = trainer_for(tmp_path / sub, callbacks, max_epochs=2)
        trainer.fit(model, tiny_dm())
        return {k: v.clone() for k, v in model.state_dict().items()}, model

    plain, _ = final_weights([], "plain")
    watched, model = final_weights(
        [
            monitor(),
            ShortcutMonitor(
                budget=ShortcutBudget(audit_max_samples=32, pool_size=16, num_counterfactual=8, spray_samples=0),
                verbose=False,
            ),
        ],
        "watched",
    )
    assert plain.keys() == watched.keys()
    for k in plain:
        assert torch.equal(plain[k], watched[k]), f"{k} differs: the monitors changed training"
    assert no_hooks(model)
    assert all(p.requires_grad for p in model.parameters())


def test_restores_modes_flags_and_grads_when_called_directly():
    model = tiny_model()
    model.train()
    model.net.bn1.eval()  # a deliberately frozen BN must stay in eval
    model.net.fc.weight.requires_grad_(False)
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.5)
    modes = {n: m.training for n, m in model.named_modules()}
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    dm = tiny_dm()
    dm.setup("fit")
    probes = select_probes(dm.dataset("val"), 4)
    with torch.inference_mode():  # as under trainer.validate
        out = explain(model, probes, ["lrp", CRP(top_k=2), "gradcam"], task="binary")
    assert out.maps["lrp"]["true"].shape == (4, 32, 32)
    assert out.concepts["crp"].maps.shape == (4, 2, 32, 32)
    assert {n: m.training for n, m in model.named_modules()} == modes
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    for n, p in model.named_parameters():
        assert torch.equal(p, params[n]) and torch.equal(p.grad, torch.full_like(p, 0.5)), n
    assert no_hooks(model)


def test_explain_copies_the_model_once(monkeypatch):
    import copy

    calls = []
    real = copy.deepcopy

    def counting(obj, *a, **kw):
        if isinstance(obj, torch.nn.Module):
            calls.append(type(obj).__name__)
        return real(obj, *a, **kw)

    monkeypatch.setattr(copy, "deepcopy", counting)
    probes = probes_from_tensors(torch.rand(3, 3, 32, 32), torch.tensor([0, 1, 1]))
    explain(tiny_model(), probes, ["lrp", "gradcam", CRP(top_k=2), "lrp_gradcam"], targets="both", task="binary")
    assert calls == ["ImageClassifier"]  # one copy for four explainers and two target kinds


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed", "bf16-true"])
def test_validate_test_and_mixed_precision(tmp_path, precision):
    seed_everything(0)
    mon = monitor(explainers=("lrp", "gradcam"), explain_on_eval=True)
    dm = tiny_dm()
    model = tiny_model()
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=1, monitor="val/acc", mode="max")
    trainer = trainer_for(tmp_path, [mon, ckpt], max_epochs=1, precision=precision)
    trainer.fit(model, dm)
    trainer.validate(model, dm)  # inference mode
    trainer.test(model, dm, ckpt_path="best")
    acc = events(tmp_path)
    assert "XAI/lrp/true/eval" in acc.Tags()["images"] and "XAI/gradcam/true/eval" in acc.Tags()["images"]
    assert [h["epoch"] for h in mon.history] == [-1, 0]  # eval runs do not add drift points
    heat = mon.drift.previous["lrp"]
    assert heat.dtype == torch.float32 and torch.isfinite(heat).all() and heat.abs().sum() > 0


def test_eval_images_are_off_by_default(tmp_path):
    mon = monitor(explainers=("gradcam",))
    dm, model = tiny_dm(), tiny_model()
    trainer = trainer_for(tmp_path, [mon], max_epochs=1)
    trainer.fit(model, dm)
    trainer.test(model, dm)
    assert not [t for t in events(tmp_path).Tags()["images"] if t.endswith("/eval")]


def test_fast_dev_run_and_no_image_logger(tmp_path):
    mon = monitor(explainers=("lrp",))
    trainer = trainer_for(tmp_path, [mon], logger=False, fast_dev_run=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(tiny_model(), tiny_dm())
    assert len([w for w in caught if "fast_dev_run disables loggers" in str(w.message)]) == 1
    assert mon.history and "XAI_drift/time_s" in mon.history[-1]
    # without any logger the grids are written as PNG files (never silently dropped), with one warning
    mon = monitor(explainers=("lrp",))
    trainer = trainer_for(tmp_path / "files", [mon], logger=False, max_epochs=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(tiny_model(), tiny_dm())
    assert len([w for w in caught if "as files under" in str(w.message)]) == 1
    pngs = sorted(p.name for p in (tmp_path / "files" / "xai_images" / "XAI" / "lrp" / "true").glob("*.png"))
    assert pngs == ["step_000000.png", "step_000001.png"]


def test_resume_restores_history_without_duplicates(tmp_path):
    seed_everything(0)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    mon = monitor(explainers=("lrp",))
    trainer_for(tmp_path, [mon, ckpt], max_epochs=2).fit(tiny_model(), tiny_dm())
    first_run = [h["epoch"] for h in mon.history]
    reference = mon.drift.first["lrp"].clone()
    mon2 = monitor(explainers=("lrp",))
    trainer = trainer_for(tmp_path, [mon2, ModelCheckpoint(dirpath=tmp_path / "ckpt2")], max_epochs=3)
    trainer.fit(tiny_model(), tiny_dm(), ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    assert first_run == [-1, 0, 1]
    assert [h["epoch"] for h in mon2.history] == [-1, 0, 1, 2]  # continued: no baseline rerun, no duplicate
    assert torch.equal(mon2.drift.first["lrp"], reference)  # drift vs first still refers to the original first epoch
    assert "XAI_drift/lrp/ssim_first" in mon2.history[-1]


def test_resume_with_changed_explainers_keeps_unchanged_state_and_no_new_baseline(tmp_path):
    seed_everything(0)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    mon = monitor(explainers=("lrp", "gradcam"))
    trainer_for(tmp_path / "a", [mon, ckpt], max_epochs=2).fit(tiny_model(), tiny_dm())
    reference = mon.drift.first["lrp"].clone()
    mon2 = monitor(explainers=("lrp", "lrp_gradcam"))  # gradcam dropped, a new method added
    trainer = trainer_for(tmp_path / "b", [mon2, ModelCheckpoint(dirpath=tmp_path / "ckpt2")], max_epochs=3)
    trainer.fit(tiny_model(), tiny_dm(), ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    assert torch.equal(mon2.drift.first["lrp"], reference)  # the unchanged explainer keeps its reference
    assert "gradcam" not in mon2.drift.first
    assert "XAI_drift/lrp/ssim_first" in mon2.history[-1]
    # the trained model was never logged as the "initial model": no image at step 0 in the resumed run
    steps = [e.step for e in events(tmp_path / "b").Images("XAI/lrp_gradcam/true")]
    assert steps == [3]


def test_two_monitors_coexist(tmp_path):
    a = monitor(explainers=("lrp",), tag="xai")
    b = monitor(explainers=("gradcam",), tag="xai_gc")
    assert a.state_key != b.state_key
    trainer = trainer_for(tmp_path, [a, b], max_epochs=1)
    trainer.fit(tiny_model(), tiny_dm())
    tags = events(tmp_path).Tags()["images"]
    assert "xai/lrp/true" in tags and "xai_gc/gradcam/true" in tags


def test_several_lrp_composites_side_by_side(tmp_path):
    mon = monitor(
        explainers=[LRP(composite="epsilon_plus_flat"), LRP(composite="epsilon_alpha2_beta1"), "gradcam"],
        log_at_fit_start=False,
    )
    trainer_for(tmp_path, [mon], max_epochs=1).fit(tiny_model(), tiny_dm())
    tags = events(tmp_path).Tags()["images"]
    assert {"XAI/lrp_epsilon_plus_flat/true", "XAI/lrp_epsilon_alpha2_beta1/true"} <= set(tags)


def test_outcome_probes_are_picked_from_validation_predictions(tmp_path):
    mon = monitor(explainers=("lrp",), probes=ProbeSelector(num_probes=4, per_outcome=1, outcome_pool=32))
    trainer_for(tmp_path, [mon], max_epochs=1).fit(tiny_model(), tiny_dm())
    assert "XAI/lrp/outcomes" in events(tmp_path).Tags()["images"]


class ForeignModule(LightningModule):
    """A LightningModule from 'another project': plain torchvision ResNet, tuple batches, no lit_xai base class."""

    def __init__(self, num_classes: int = 3):
        super().__init__()
        self.backbone = torchvision.models.resnet18(num_classes=num_classes)

    def forward(self, x):
        return self.backbone(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.cross_entropy(self(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.cross_entropy(self(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def foreign_loaders(scale: float = 1.0):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(24, 3, 32, 32, generator=g) * scale, torch.arange(24) % 3
    ds = TensorDataset(x, y)
    return DataLoader(ds, batch_size=8), DataLoader(ds, batch_size=8)


def test_foreign_project_with_torchvision_model(tmp_path):
    seed_everything(0)
    train, val = foreign_loaders()
    # zero configuration: profile of torchvision ResNet
    mon = ExplanationMonitor(probes=3, verbose=False, pictures=Pictures(tile=32))
    trainer = trainer_for(tmp_path, [mon], max_epochs=1)
    model = ForeignModule()
    trainer.fit(model, train_dataloaders=train, val_dataloaders=val)
    assert sorted(mon.probes.targets.tolist()) == [0, 1, 2]
    tags = events(tmp_path).Tags()["images"]
    assert {"XAI/lrp/true", "XAI/crp/concepts", "XAI/gradcam/true"} <= set(tags)
    assert no_hooks(model)


def test_foreign_project_with_explicit_probes(tmp_path):
    train, val = foreign_loaders()
    probes = probes_from_tensors(torch.rand(2, 3, 32, 32), torch.tensor([0, 2]))
    mon = monitor(explainers=("lrp", "gradcam"), probes=probes, log_at_fit_start=False)
    trainer_for(tmp_path, [mon], max_epochs=1).fit(ForeignModule(), train_dataloaders=train, val_dataloaders=val)
    assert mon.probes.ids == [-1, -2] and len(mon.history) == 1


def test_clear_errors():
    with pytest.raises(ValueError, match="explainers=.*unknown explainer 'shap'"):
        ExplanationMonitor(explainers=("lrp", "shap"))
    with pytest.raises(ValueError, match="labels .* repeat"):
        ExplanationMonitor(explainers=("lrp", LRP()))
    with pytest.raises(ValueError, match="'true', 'predicted' or 'both'"):
        ExplanationMonitor(targets="all")
    with pytest.raises(ValueError, match="unknown task .multi-label.; choose one of"):
        ExplanationMonitor(model=ModelSpec(task="multi-label"))
    with pytest.raises(ValueError, match="tile"):
        ExplanationMonitor(pictures=Pictures(tile=4))
    with pytest.raises(ValueError, match="num_probes"):
        ProbeSelector(num_probes=0)
    with pytest.raises(ValueError, match="top_k"):
        CRP(top_k=0)
    from lit_xai.metrics import DriftTracker

    for bad in (dict(size=1), dict(timeline_length=0), dict(measures=("ssim", "psnr")), dict(top_fraction=0.0)):
        with pytest.raises(ValueError):
            DriftTracker(**bad)


class Opaque(ForeignModule):
    def __init__(self):
        super().__init__()
        # GroupNorm: no known family (a plain conv/ReLU/linear network would get the plain-CNN profile)
        self.backbone = torch.nn.Sequential(
            torch.nn.Conv2d(3, 4, 3),
            torch.nn.GroupNorm(2, 4),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(),
            torch.nn.Linear(4, 3),
        )


class StepCounter(Callback):
    def __init__(self):
        self.batches = 0

    def on_train_batch_end(self, *args, **kwargs):
        self.batches += 1


@pytest.mark.parametrize("log_at_fit_start", [True, False])
def test_unknown_module_fails_before_training_naming_the_knob(tmp_path, log_at_fit_start):
    train, val = foreign_loaders()
    counter = StepCounter()
    mon = monitor(explainers=("gradcam",), probes=3, log_at_fit_start=log_at_fit_start)
    trainer = trainer_for(tmp_path, [mon, counter], max_epochs=1)
    with pytest.raises(ValueError, match=r"ExplanationMonitor\(explainers=\[.*GradCAM.*layer="):
        trainer.fit(Opaque(), train_dataloaders=train, val_dataloaders=val)
    assert counter.batches == 0  # failed at fit start, not after an epoch
    trainer = trainer_for(tmp_path / "b", [monitor(explainers=("lrp",), probes=3)], max_epochs=1)
    with pytest.raises(ValueError, match="canonizers"):
        trainer.fit(Opaque(), train_dataloaders=train, val_dataloaders=val)
    # explicit layers run; LRP without rules for the GroupNorm is refused by the conservation guard, before training
    counter = StepCounter()
    refused = monitor(explainers=[GradCAM(layer="backbone.0"), LRP(canonizers=[])], probes=3)
    with pytest.raises(ValueError, match=r"not conserved.*GroupNorm.*Refusing before training"):
        trainer_for(tmp_path / "c", [refused, counter], max_epochs=1).fit(
            Opaque(), train_dataloaders=train, val_dataloaders=val
        )
    assert counter.batches == 0
    ok = monitor(explainers=[GradCAM(layer="backbone.0")], probes=3)
    trainer_for(tmp_path / "d", [ok], max_epochs=1).fit(Opaque(), train_dataloaders=train, val_dataloaders=val)
    assert len(ok.history) == 2


def test_wrong_layer_name_fails_at_fit_start(tmp_path):
    counter = StepCounter()
    mon = monitor(explainers=[CRP(layer="layer9")], log_at_fit_start=False)
    with pytest.raises(ValueError, match="layer 'layer9' not found.*similar names"):
        trainer_for(tmp_path, [mon, counter], max_epochs=1).fit(tiny_model(), tiny_dm())
    assert counter.batches == 0


class DictOutput(ForeignModule):
    def forward(self, x):
        return {"logits": self.backbone(x)}

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.cross_entropy(self(x)["logits"], y)

    def validation_step(self, batch, batch_idx):
        pass


def test_dict_output_names_module_attr(tmp_path):
    train, val = foreign_loaders()
    with pytest.raises(ValueError, match="module_attr="):
        trainer_for(tmp_path, [monitor(probes=3)], max_epochs=1).fit(
            DictOutput(), train_dataloaders=train, val_dataloaders=val
        )
    ok = monitor(explainers=("lrp",), probes=3, model=ModelSpec(module_attr="backbone"), log_at_fit_start=False)
    trainer_for(tmp_path / "b", [ok], max_epochs=1).fit(DictOutput(), train_dataloaders=train, val_dataloaders=val)
    assert len(ok.history) == 1


class SingleLogit(ForeignModule):
    def __init__(self):
        super().__init__(num_classes=1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.binary_cross_entropy_with_logits(self(x)[:, 0], y.float())

    def validation_step(self, batch, batch_idx):
        pass


def test_single_logit_binary_model_is_explained_as_two_logits(tmp_path):
    g = torch.Generator().manual_seed(0)
    ds = TensorDataset(torch.randn(16, 3, 32, 32, generator=g), torch.arange(16) % 2)
    loader = DataLoader(ds, batch_size=8)
    mon = monitor(explainers=("lrp", "gradcam"), probes=4, log_at_fit_start=False)
    model = SingleLogit()
    trainer_for(tmp_path, [mon], max_epochs=1).fit(model, train_dataloaders=loader, val_dataloaders=loader)
    assert len(mon.history) == 1 and mon.contract.task == "binary"
    from lit_xai.contracts import TwoLogitBinary

    wrapped = TwoLogitBinary(model.backbone).eval()
    x = mon.probes.images
    with torch.no_grad():
        # two float32 formulas of one probability (<= 1): a few ulps apart
        ulps = 8 * torch.finfo(x.dtype).eps
        assert torch.allclose(wrapped(x).softmax(1)[:, 1], torch.sigmoid(model.backbone.eval()(x)[:, 0]), atol=ulps)
    # the two classes' maps mirror each other, and class 1 conserves half the logit (with biases ignored)
    lrp = LRP(composite="epsilon_plus_flat", composite_kwargs={"zero_params": "bias"})
    r1 = lrp.relevance(wrapped, x, torch.ones(4, dtype=torch.long))
    r0 = lrp.relevance(wrapped, x, torch.zeros(4, dtype=torch.long))
    torch.testing.assert_close(r0, -r1, atol=1e-5, rtol=1e-4)


def test_degenerate_maps_give_nan_drift_and_one_warning(tmp_path):
    calls = {"n": 0}

    def broken(net, images, targets):
        calls["n"] += 1
        out = images.sum(1) * (1 + calls["n"])
        out[1] = float("nan")  # the second probe's map is broken
        return out

    mon = monitor(explainers=[CallableExplainer(broken, label="broken")], probes=4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer_for(tmp_path, [mon], max_epochs=2).fit(tiny_model(), tiny_dm())
    msgs = [str(w.message) for w in caught if "NaN/Inf" in str(w.message)]
    assert len(msgs) == 1 and f"#{mon.probes.ids[1]}" in msgs[0]
    last = mon.history[-1]
    assert last["XAI_drift/broken/spearman_prev"] == pytest.approx(1.0, abs=1e-5)  # the others: only a scale change


def test_multilabel_explains_every_positive_class(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(12, 3, 32, 32, generator=g)
    y = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]] * 3, dtype=torch.float32)
    loader = DataLoader(TensorDataset(x, y), batch_size=6)
    mon = monitor(explainers=("lrp", "gradcam"), probes=4, log_at_fit_start=False)
    model = ImageClassifier("tiny_resnet", num_classes=3, task="multilabel")
    trainer_for(tmp_path, [mon], max_epochs=1).fit(model, train_dataloaders=loader, val_dataloaders=loader)
    out = explain(model, mon.probes, ["lrp"], task="multilabel")
    rows = out.rows["true"]
    expected = [(p, c) for p in range(len(mon.probes)) for c in mon.probes.targets[p].nonzero().flatten().tolist()]
    assert list(zip(rows.probe.tolist(), rows.cls.tolist())) == expected  # one row per (probe, positive class)
    assert out.maps["lrp"]["true"].shape == (len(expected), 32, 32)
    assert torch.allclose(out.probs, torch.sigmoid(model.eval()(mon.probes.images)), atol=1e-5)
    assert "XAI/lrp/true" in events(tmp_path).Tags()["images"]


def test_multilabel_probes_cover_every_class_with_a_known_positive():
    # class 3 has a single positive among 200 images, far outside a small stratified draw
    y = torch.zeros(200, 4)
    y[:, 0] = 1
    y[::3, 1] = 1
    y[::7, 2] = 1
    y[137, 3] = 1
    data = [(torch.rand(3, 8, 8), y[i]) for i in range(200)]

    class WithTargets(list):
        targets = y.numpy()

    probes = select_probes(WithTargets(data), num_probes=2, candidates=16)
    covered = (probes.targets > 0.5).any(0)
    assert covered.all(), covered
    assert 137 in probes.ids


def _xai_threads() -> list[str]:
    import threading

    return [t.name for t in threading.enumerate() if t.name.startswith("lit_xai-")]


def test_asynchronous_logs_what_synchronous_logs_and_never_changes_training(tmp_path):
    """asynchronous=True explains weight snapshots on a thread: same steps, same drift values, same final weights,
    no thread left behind; the checkpoint keeps only finished epochs."""

    def fit(sub, asynchronous, watched=True):
        seed_everything(123)
        model = tiny_model()
        callbacks = []
        if watched:
            callbacks = [
                monitor(asynchronous=asynchronous),
                ShortcutMonitor(
                    budget=ShortcutBudget(audit_max_samples=32, pool_size=16, num_counterfactual=8, spray_samples=0),
                    verbose=False,
                    asynchronous=asynchronous,
                ),
            ]
        mine = list(callbacks)  # the Trainer extends the list it is given
        trainer = trainer_for(tmp_path / sub, callbacks, max_epochs=3)
        trainer.fit(model, tiny_dm())
        return {k: v.clone() for k, v in model.state_dict().items()}, mine, model

    plain, _, _ = fit("plain", False, watched=False)
    sync_w, (sync_mon, sync_sc), _ = fit("sync", False)
    async_w, (async_mon, async_sc), model = fit("async", True)
    for k in plain:
        assert torch.equal(plain[k], async_w[k]), f"{k} differs: the background explanation changed training"
    assert no_hooks(model) and all(p.requires_grad for p in model.parameters())
    assert _xai_threads() == []  # teardown ended the worker threads
    assert [h["epoch"] for h in async_mon.history] == [h["epoch"] for h in sync_mon.history] == [-1, 0, 1, 2]
    for a, s in zip(async_mon.history, sync_mon.history):
        for key, value in s.items():
            if "drift/" in key and not key.endswith("time_s"):
                assert a[key] == pytest.approx(value, abs=1e-4), key  # same snapshot weights, same maps
    assert [h["epoch"] for h in async_sc.history] == [h["epoch"] for h in sync_sc.history]
    for a, s in zip(async_sc.history, sync_sc.history):
        assert a["relevance_ratio"] == pytest.approx(s["relevance_ratio"], rel=1e-4, nan_ok=True)
    acc = events(tmp_path / "async")
    assert [e.step for e in acc.Images("XAI/lrp/true")] == [0, 1, 2, 3]
    assert [e.step for e in acc.Scalars("XAI_drift/lrp/ssim_prev")] == [1, 2, 3]
    assert "XAI_shortcut/time_s" in acc.Tags()["scalars"]  # the alerts are text, not a 0/1 scalar (issue 21)


def test_asynchronous_error_surfaces_in_fit_and_leaves_no_thread(tmp_path):
    calls = []

    def fails_after_fit_start(net, images, targets):
        calls.append(1)
        if len(calls) > 2:  # check() and the baseline pass; the first epoch's explanation fails
            raise RuntimeError("broken explainer")
        return images.abs().sum(1)

    mon = monitor(explainers=[CallableExplainer(fails_after_fit_start, label="custom")], asynchronous=True)
    with pytest.raises(RuntimeError, match="broken explainer"):
        trainer_for(tmp_path, [mon], max_epochs=3).fit(tiny_model(), tiny_dm())
    assert _xai_threads() == []


def test_doubling_schedule_explains_epochs_1_2_4_and_the_last(tmp_path):
    from lit_xai.schedule import Schedule

    mon = monitor(explainers=("lrp",), every_n_epochs=Schedule(1, "doubling"))
    assert mon.every_n_epochs == 1 and mon.spacing == "doubling"
    trainer_for(tmp_path, [mon], max_epochs=6).fit(tiny_model(), tiny_dm())
    # the initial model, after the 1st, 2nd and 4th epoch, and after the last (6th)
    assert [h["epoch"] for h in mon.history] == [-1, 0, 1, 3, 5]
    acc = events(tmp_path)
    assert [e.step for e in acc.Images("XAI/lrp/true")] == [0, 1, 2, 4, 6]
    assert [e.step for e in acc.Scalars("XAI_drift/lrp/ssim_prev")] == [1, 2, 4, 6]


def test_images_every_n_epochs_thins_pictures_not_drift(tmp_path):
    mon = monitor(explainers=("lrp",), pictures=Pictures(every_n_epochs=2))
    trainer_for(tmp_path, [mon], max_epochs=5).fit(tiny_model(), tiny_dm())
    acc = events(tmp_path)
    # initial model, after epochs 2 and 4 (every 2nd), and the last epoch (5 = also every 2nd + 1: step 5)
    assert [e.step for e in acc.Images("XAI/lrp/true")] == [0, 2, 4, 5]
    assert [e.step for e in acc.Scalars("XAI_drift/lrp/ssim_prev")] == [1, 2, 3, 4, 5]
    timeline = acc.Images("XAI/lrp/timeline")[-1]
    assert timeline.step == 5 and [h["epoch"] for h in mon.history] == [-1, 0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match=r"Pictures\(every_n_epochs=...\) must be >= 1"):
        monitor(pictures=Pictures(every_n_epochs=0))
