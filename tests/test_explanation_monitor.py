"""ExplanationMonitor: logs what it promises, never changes training, works in foreign projects and odd modes."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
import torchvision
from lightning.pytorch import LightningModule, Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.data import DataLoader, TensorDataset

from lit_xai.callbacks import ExplanationMonitor, ShortcutMonitor, select_probes
from lit_xai.datamodules import SyntheticShortcutDataModule
from lit_xai.models import ImageClassifier


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
    args = dict(
        methods=("lrp", "crp", "gradcam"), num_probes=4, crp_top_k=2, crp_reference_pool=8, verbose=False, tile=32
    )
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
    for tag in ("xai/lrp/true", "xai/lrp/pred", "xai/gradcam/true", "xai/crp/concepts", "xai/lrp/timeline"):
        assert tag in images, (tag, images)
    # baseline at fit start + 3 epochs -> 4 grids, at increasing global steps (the TensorBoard slider)
    steps = [e.step for e in acc.Images("xai/lrp/true")]
    assert len(steps) == 4 and steps == sorted(steps) and steps[0] == 0
    scalars = acc.Tags()["scalars"]
    for measure in ("ssim", "spearman", "iou"):
        assert f"xai/drift/lrp/{measure}_prev" in scalars and f"xai/drift/gradcam/{measure}_first" in scalars
    assert "xai/time_s" in scalars
    assert any(t.startswith("xai/drift_probe/lrp/") for t in scalars)  # per-probe drift
    # epoch 0 is compared with the initial model, epochs 1 and 2 with their predecessors
    assert len(acc.Scalars("xai/drift/lrp/ssim_prev")) == 3
    assert "xai/probes/text_summary" in acc.Tags()["tensors"]  # the probe table (text plugin)
    assert [h["epoch"] for h in mon.history] == [-1, 0, 1, 2]
    values = [v.value for v in acc.Scalars("xai/drift/lrp/spearman_first")]
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
            ShortcutMonitor(audit_max_samples=32, pool_size=16, num_counterfactual=8, spray_samples=0, verbose=False),
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
    from lit_xai.callbacks import explain_probes

    with torch.inference_mode():  # as under trainer.validate
        out = explain_probes(model, probes, methods=("lrp", "crp", "gradcam"), task="binary", crp_top_k=2)
    assert out.maps["lrp"]["true"].shape == (4, 32, 32)
    assert out.concepts["crp"][0].shape == (4, 2, 32, 32)
    assert {n: m.training for n, m in model.named_modules()} == modes
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    for n, p in model.named_parameters():
        assert torch.equal(p, params[n]) and torch.equal(p.grad, torch.full_like(p, 0.5)), n
    assert no_hooks(model)


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed", "bf16-true"])
def test_validate_test_and_mixed_precision(tmp_path, precision):
    seed_everything(0)
    mon = monitor(methods=("lrp", "gradcam"))
    dm = tiny_dm()
    model = tiny_model()
    trainer = trainer_for(tmp_path, [mon], max_epochs=1, precision=precision)
    trainer.fit(model, dm)
    trainer.validate(model, dm)  # inference mode
    trainer.test(model, dm)
    acc = events(tmp_path)
    assert "xai/lrp/true/validate" in acc.Tags()["images"] and "xai/gradcam/true/test" in acc.Tags()["images"]
    assert [h["epoch"] for h in mon.history] == [-1, 0]  # eval runs do not add drift points
    heat = mon.previous["lrp"]
    assert heat.dtype == torch.float32 and torch.isfinite(heat).all() and heat.abs().sum() > 0


def test_fast_dev_run_and_no_tensorboard_logger(tmp_path):
    mon = monitor(methods=("lrp",))
    trainer = trainer_for(tmp_path, [mon], logger=False, fast_dev_run=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(tiny_model(), tiny_dm())
    msgs = [str(w.message) for w in caught if "no TensorBoardLogger" in str(w.message)]
    assert len(msgs) == 1
    assert "xai/time_s" in trainer.callback_metrics  # scalars still go through pl_module.log


def test_resume_restores_history_without_duplicates(tmp_path):
    seed_everything(0)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    mon = monitor(methods=("lrp",))
    trainer_for(tmp_path, [mon, ckpt], max_epochs=2).fit(tiny_model(), tiny_dm())
    first_run = [h["epoch"] for h in mon.history]
    reference = mon.first["lrp"].clone()
    mon2 = monitor(methods=("lrp",))
    trainer = trainer_for(tmp_path, [mon2, ModelCheckpoint(dirpath=tmp_path / "ckpt2")], max_epochs=3)
    trainer.fit(tiny_model(), tiny_dm(), ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    assert first_run == [-1, 0, 1]
    assert [h["epoch"] for h in mon2.history] == [-1, 0, 1, 2]  # continued: no baseline rerun, no duplicate
    assert torch.equal(mon2.first["lrp"], reference)  # drift vs first still refers to the original first epoch
    assert "xai/drift/lrp/ssim_first" in mon2.history[-1]


def test_two_monitors_coexist(tmp_path):
    a = monitor(methods=("lrp",), tag="xai")
    b = monitor(methods=("gradcam",), tag="xai_gc")
    assert a.state_key != b.state_key
    trainer = trainer_for(tmp_path, [a, b], max_epochs=1)
    trainer.fit(tiny_model(), tiny_dm())
    tags = events(tmp_path).Tags()["images"]
    assert "xai/lrp/true" in tags and "xai_gc/gradcam/true" in tags


class ForeignModule(LightningModule):
    """A LightningModule from 'another project': plain torchvision ResNet, tuple batches, no lit_xai base class."""

    def __init__(self):
        super().__init__()
        self.backbone = torchvision.models.resnet18(num_classes=3)

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


def foreign_loaders():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(24, 3, 32, 32, generator=g), torch.arange(24) % 3
    ds = TensorDataset(x, y)
    return DataLoader(ds, batch_size=8), DataLoader(ds, batch_size=8)


def test_foreign_project_with_torchvision_model(tmp_path):
    seed_everything(0)
    train, val = foreign_loaders()
    mon = monitor(num_probes=3, crp_reference_pool=0)  # canonizers/layers inferred for torchvision ResNet
    trainer = trainer_for(tmp_path, [mon], max_epochs=1)
    model = ForeignModule()
    trainer.fit(model, train_dataloaders=train, val_dataloaders=val)
    assert sorted(mon.probes.targets.tolist()) == [0, 1, 2]
    tags = events(tmp_path).Tags()["images"]
    assert {"xai/lrp/true", "xai/crp/concepts", "xai/gradcam/true"} <= set(tags)
    assert no_hooks(model)


def test_foreign_project_with_explicit_probes(tmp_path):
    train, val = foreign_loaders()
    probes = torch.rand(2, 3, 32, 32)
    mon = monitor(methods=("lrp", "gradcam"), probes=probes, probe_targets=torch.tensor([0, 2]), log_at_fit_start=False)
    trainer_for(tmp_path, [mon], max_epochs=1).fit(ForeignModule(), train_dataloaders=train, val_dataloaders=val)
    assert mon.probes.ids == [-1, -2] and len(mon.history) == 1


def test_clear_errors():
    with pytest.raises(ValueError, match="choose from lrp, crp, gradcam"):
        ExplanationMonitor(methods=("lrp", "shap"))
    with pytest.raises(ValueError, match="give both or neither"):
        ExplanationMonitor(probes=torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError, match="'true', 'predicted' or 'both'"):
        ExplanationMonitor(targets="all")


def test_unknown_module_needs_explicit_layers(tmp_path):
    class Opaque(ForeignModule):
        def __init__(self):
            super().__init__()
            self.backbone = torch.nn.Sequential(
                torch.nn.Conv2d(3, 4, 3),
                torch.nn.ReLU(),
                torch.nn.AdaptiveAvgPool2d(1),
                torch.nn.Flatten(),
                torch.nn.Linear(4, 3),
            )

    train, val = foreign_loaders()
    trainer = trainer_for(tmp_path, [monitor(methods=("gradcam",), num_probes=3)], max_epochs=1)
    with pytest.raises(ValueError, match="pass layer="):
        trainer.fit(Opaque(), train_dataloaders=train, val_dataloaders=val)
    trainer = trainer_for(tmp_path / "b", [monitor(methods=("lrp",), num_probes=3)], max_epochs=1)
    with pytest.raises(ValueError, match="canonizers"):
        trainer.fit(Opaque(), train_dataloaders=train, val_dataloaders=val)
    ok = monitor(methods=("gradcam", "lrp"), num_probes=3, gradcam_layer="backbone.0", canonizers="none")
    trainer_for(tmp_path / "c", [ok], max_epochs=1).fit(Opaque(), train_dataloaders=train, val_dataloaders=val)
    assert len(ok.history) == 2


def test_multilabel_explains_every_positive_class(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(12, 3, 32, 32, generator=g)
    y = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]] * 3, dtype=torch.float32)
    loader = DataLoader(TensorDataset(x, y), batch_size=6)
    mon = monitor(methods=("lrp", "gradcam"), num_probes=4, log_at_fit_start=False)
    model = ImageClassifier("tiny_resnet", num_classes=3, task="multilabel")
    trainer_for(tmp_path, [mon], max_epochs=1).fit(model, train_dataloaders=loader, val_dataloaders=loader)
    from lit_xai.callbacks import explain_probes

    out = explain_probes(model, mon.probes, methods=("lrp",), task="multilabel")
    rows = out.rows["true"]
    expected = [(p, c) for p in range(4) for c in mon.probes.targets[p].nonzero().flatten().tolist()]
    assert list(zip(rows.probe.tolist(), rows.cls.tolist())) == expected  # one row per (probe, positive class)
    assert out.maps["lrp"]["true"].shape == (len(expected), 32, 32)
    assert torch.allclose(out.probs, torch.sigmoid(model.eval()(mon.probes.images)), atol=1e-5)
    assert "xai/lrp/true" in events(tmp_path).Tags()["images"]
