"""Bad input and faults (issue 33): a clear error naming what is wrong and how to fix it, or the correct result —
never a silently wrong one. Explainers, the conservation guard, the monitors' fit-start checks, pickling."""

from __future__ import annotations

import io
import pickle
import warnings

import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.data import DataLoader, TensorDataset

from lit_xai.callbacks import ExplanationMonitor, Pictures
from lit_xai.callbacks._checks import check_unique_tags
from lit_xai.datamodules import SyntheticShortcutDataModule
from lit_xai.explainers import CRP, LRP, AttentionGradCAM, GradCAM, LRPGradCAM
from lit_xai.explainers.conservation import conservation_check
from lit_xai.models import ImageClassifier
from lit_xai.models.architectures import build_architecture
from lit_xai.probes import probes_from_tensors
from lit_xai.visualization import to_float01
from lit_xai.visualization.monitor import drift_chart

EXPLAINERS = [LRP, lambda: CRP(top_k=2), GradCAM, LRPGradCAM]


def tiny_net(num_classes: int = 3) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_architecture("tiny_resnet", num_classes=num_classes)


def tiny_dm(**kw) -> SyntheticShortcutDataModule:
    args = dict(num_train=32, num_val=16, num_test=8, image_size=32, batch_size=16, seed=0)
    args.update(kw)
    return SyntheticShortcutDataModule(**args)


def tiny_model() -> ImageClassifier:
    torch.manual_seed(0)
    return ImageClassifier("tiny_resnet", num_classes=2, task="binary", class_names=["benign", "melanoma"])


def trainer_for(tmp_path, callbacks, **kw) -> Trainer:
    args = dict(
        max_epochs=1, limit_train_batches=2, accelerator="cpu", devices=1, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, log_every_n_steps=1,
    )  # fmt: skip
    args.update(kw)
    logger = TensorBoardLogger(str(tmp_path), name="run", default_hp_metric=False)
    return Trainer(default_root_dir=str(tmp_path), logger=logger, callbacks=callbacks, **args)


def monitor(**kw) -> ExplanationMonitor:
    args = dict(explainers=("lrp", "gradcam"), probes=4, verbose=False, pictures=Pictures(tile=32))
    args.update(kw)
    return ExplanationMonitor(**args)


class CountSteps(Callback):
    def __init__(self) -> None:
        self.steps = 0

    def on_train_batch_end(self, *args) -> None:
        self.steps += 1


# ---------------------------------------------------------------------------------------------------- targets
@pytest.mark.parametrize("make", EXPLAINERS + [AttentionGradCAM], ids=["lrp", "crp", "gradcam", "lrp_gradcam", "att"])
@pytest.mark.parametrize("target", [-1, 3])
def test_every_explainer_refuses_out_of_range_targets_the_same_way(make, target):
    # Grad-CAM used to explain the last class for -1 (negative index wrap) and raise a raw IndexError for 3
    name = "tiny_resnet_attention" if make is AttentionGradCAM else "tiny_resnet"
    torch.manual_seed(0)
    net = build_architecture(name, num_classes=3)
    with pytest.raises(ValueError, match=rf"target class {target} is out of range for a model with 3 classes.*0\.\.2"):
        make()(net, torch.rand(2, 3, 32, 32), torch.tensor([0, target]))


def test_gradcam_per_class_refuses_negative_classes():
    with pytest.raises(ValueError, match="-1 is out of range .* 3 classes"):
        GradCAM().per_class(tiny_net(), torch.rand(2, 3, 32, 32), [0, -1])


def test_fractional_float_targets_are_refused_whole_ones_accepted():
    net, x = tiny_net(), torch.rand(2, 3, 32, 32)
    with pytest.raises(ValueError, match="whole class indices"):
        LRP()(net, x, torch.tensor([0.0, 1.7]))
    torch.testing.assert_close(LRP()(net, x, torch.tensor([0.0, 2.0])), LRP()(net, x, torch.tensor([0, 2])))


def test_int_tensor_and_python_int_targets_agree():
    net, x = tiny_net(), torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(GradCAM()(net, x, 1), GradCAM()(net, x, torch.tensor([1, 1])))
    torch.testing.assert_close(GradCAM()(net, x, torch.tensor(1)), GradCAM()(net, x, [1, 1]))


def test_old_target_helper_imports_keep_working():
    from lit_xai.explainers import _core, targets

    assert _core.as_targets is targets.as_targets and _core.target_init is targets.target_init


# ---------------------------------------------------------------------------------------------------- images
@pytest.mark.parametrize("make", EXPLAINERS, ids=["lrp", "crp", "gradcam", "lrp_gradcam"])
def test_one_image_without_batch_dimension_is_named(make):
    # it used to read the 3 channels as a batch of 3 and complain about the targets' shape
    with pytest.raises(ValueError, match=r"batch \(N, C, H, W\), got shape \(3, 32, 32\).*unsqueeze\(0\)"):
        make()(tiny_net(), torch.rand(3, 32, 32), torch.tensor([0]))


@pytest.mark.parametrize("make", EXPLAINERS, ids=["lrp", "crp", "gradcam", "lrp_gradcam"])
def test_empty_batch_is_named(make):
    # used to fail with torch.cat(): expected a non-empty list (LRP) or 'NoneType' has no attribute 'abs' (CRP)
    with pytest.raises(ValueError, match="empty batch"):
        make()(tiny_net(), torch.rand(0, 3, 32, 32), torch.zeros(0, dtype=torch.long))


def test_integer_images_are_refused_not_explained_as_0_255_input():
    images = (torch.rand(2, 3, 32, 32) * 255).to(torch.uint8)
    for explainer in (LRP(), GradCAM()):
        with pytest.raises(TypeError, match="dtype torch.uint8.*floating-point"):
            explainer(tiny_net(), images, 0)
    with pytest.raises(TypeError, match="probes_from_tensors.*torch.uint8"):
        probes_from_tensors(images, torch.tensor([0, 1]))


# ---------------------------------------------------------------------------------------------------- NaN maps
def test_nan_or_inf_maps_are_never_conserved():
    # a NaN logit used to be "too small to judge", so the map counted as conserved
    check = conservation_check(torch.tensor([1.0, float("nan"), 2.0]), torch.tensor([1.0, float("nan"), float("inf")]))
    assert check.ok.tolist() == [True, False, False] and not check.all_ok
    assert "NaN/Inf" in check.message("LRP") and "rows [1, 2]" in check.message("LRP")
    check.with_exact(torch.tensor([1, 2]), torch.tensor([float("nan"), 2.0]))
    assert check.ok.tolist() == [True, False, False]


@pytest.mark.parametrize("make", [LRP, lambda: CRP(top_k=2)], ids=["lrp", "crp"])
def test_nan_image_gives_a_failed_check_and_a_warning(make):
    net, x = tiny_net(), torch.rand(2, 3, 32, 32)
    x[0, 0, 0, 0] = float("nan")
    explainer = make()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        explainer(net, x, torch.tensor([0, 1]))
    assert explainer.last_check.ok.tolist() == [False, True] and not explainer.last_check.all_ok
    assert any("NaN/Inf" in str(w.message) for w in caught)


class Poison(Callback):
    """Makes the weights NaN after the first training epoch (a diverged run)."""

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == 0:
            with torch.no_grad():
                next(pl_module.parameters()).fill_(float("nan"))


def test_monitor_logs_nan_maps_as_not_conserved_and_warns_naming_the_probes(tmp_path):
    mon = monitor(explainers=("lrp",), log_at_fit_start=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer_for(tmp_path, [mon, Poison()], max_epochs=2).fit(tiny_model(), tiny_dm())
    assert mon.history[0]["XAI_drift/lrp/conserved"] == 1.0
    assert mon.history[1]["XAI_drift/lrp/conserved"] == 0.0  # used to be logged as 1.0
    named = [str(w.message) for w in caught if "heatmaps of probes" in str(w.message)]
    assert len(named) == 1 and all(f"#{i}" in named[0] for i in mon.probes.ids)


def test_drift_picture_says_why_it_is_empty_when_every_map_is_nan(tmp_path):
    class PoisonFirst(Callback):
        def on_train_start(self, trainer, pl_module):
            with torch.no_grad():
                next(pl_module.parameters()).fill_(float("nan"))

    mon = monitor(explainers=("gradcam",), log_at_fit_start=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer_for(tmp_path, [mon, PoisonFirst()], max_epochs=2).fit(tiny_model(), tiny_dm())
    mon._frames.clear()
    drift = drift_chart(mon.history, mon.tag, mon.labels, mon.drift.measures)  # what the monitor logs as XAI/drift
    assert drift is not None and "NaN" in drift[1]  # it used to vanish without a word


# ---------------------------------------------------------------------------------------------------- fit start
def test_nan_probe_images_fail_at_fit_start_naming_monitor_and_probe(tmp_path):
    x = torch.rand(2, 3, 32, 32)
    x[1, 0, 3, 3] = float("inf")
    steps = CountSteps()
    mon = monitor(probes=probes_from_tensors(x, torch.tensor([0, 1])), tag="XAI_b")
    with pytest.raises(
        ValueError, match=r"ExplanationMonitor\(tag='XAI_b'\): 1 of 2 probe images contain NaN/Inf \(#-2\)"
    ):
        trainer_for(tmp_path, [mon, steps]).fit(tiny_model(), tiny_dm())
    assert steps.steps == 0 and mon.history == []


@pytest.mark.parametrize("log_at_fit_start", [True, False])
def test_wrong_channel_count_fails_at_fit_start_naming_the_monitor(tmp_path, log_at_fit_start):
    steps = CountSteps()
    probes = probes_from_tensors(torch.rand(2, 4, 32, 32), torch.tensor([0, 1]))
    mon = monitor(probes=probes, log_at_fit_start=log_at_fit_start)
    with pytest.raises(RuntimeError, match=r"ExplanationMonitor\(tag='XAI'\).*\(2, 4, 32, 32\).*channels"):
        trainer_for(tmp_path, [mon, steps]).fit(tiny_model(), tiny_dm())
    assert steps.steps == 0 and mon.history == []


def test_empty_or_unbatched_probes_are_refused_at_construction():
    with pytest.raises(ValueError, match="probes_from_tensors: probe images are an empty batch"):
        probes_from_tensors(torch.rand(0, 3, 32, 32), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match=r"got shape \(3, 32, 32\).*unsqueeze"):
        probes_from_tensors(torch.rand(3, 32, 32), torch.tensor([0]))


def test_two_monitors_with_one_tag_are_named():
    with pytest.raises(ValueError, match="two ExplanationMonitor callbacks have tag='XAI'.*own tag"):
        check_unique_tags([monitor(), monitor(explainers=("gradcam",))])
    check_unique_tags([monitor(), monitor(tag="XAI_2")])  # distinct tags are fine


# ---------------------------------------------------------------------------------------------------- pickling
def test_image_classifier_pickles_and_round_trips():
    # a lambda in explainers.profiles made ImageClassifier unpicklable (ddp_spawn, torch.save(model))
    model = tiny_model().eval()
    clone = pickle.loads(pickle.dumps(model))
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(LRP()(clone, x, 1), LRP()(model, x, 1))
    torch.testing.assert_close(loaded(x), model(x))


# ---------------------------------------------------------------------------------------------------- shortcuts
def test_audit_counts_nan_images_as_failures():
    # NaN images used to be audited as images without an artifact, "0 failed"
    from lit_xai.artifacts import audit_dataset

    g = torch.Generator().manual_seed(0)
    items = [(torch.rand(3, 16, 16, generator=g), i % 2) for i in range(10)]
    items[3] = (torch.full((3, 16, 16), float("nan")), 1)
    items[6] = (torch.full((3, 16, 16), float("inf")), 0)
    report = audit_dataset(items, class_names=["a", "b"], task="binary")
    assert (report.n_images, report.n_failed) == (8, 2)
    assert any("NaN/Inf" in f for f in report.failures)


def test_audit_of_batches_keeps_the_finite_images():
    from lit_xai.artifacts import audit_dataset

    images = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    images[2] = float("nan")
    report = audit_dataset([(images, torch.arange(6) % 2)], class_names=["a", "b"], task="binary")
    assert (report.n_images, report.n_failed, report.class_counts) == (5, 1, [2, 3])


def test_discovery_leaves_nan_explanations_out():
    # discovery used to cluster exactly the NaN maps as the most suspicious group
    from lit_xai.artifacts import discover_candidates

    maps = torch.rand(40, 16, 16, generator=torch.Generator().manual_seed(0))
    maps[:6] = float("nan")
    with pytest.warns(UserWarning, match="6 explanations with NaN/Inf left out"):
        found = discover_candidates(maps, torch.zeros(40, dtype=torch.long), min_size=4)
    members = {m for c in found for m in c.members}
    assert found and not members & set(range(6))
    clean = discover_candidates(maps[6:], torch.zeros(34, dtype=torch.long), ids=list(range(6, 40)), min_size=4)
    assert [sorted(c.members) for c in found] == [sorted(c.members) for c in clean]
    assert all(c.rows == c.members for c in found)  # rows index the arrays given (ids are row numbers here)


def test_discovery_candidates_of_four_channel_images_render():
    from lit_xai.artifacts import discover_candidates, render_candidates

    g = torch.Generator().manual_seed(0)
    maps = torch.rand(24, 16, 16, generator=g)
    maps[:8, :4, :4] += 5.0  # a corner cluster
    found = discover_candidates(maps, torch.zeros(24, dtype=torch.long), min_size=4)
    picture = render_candidates(found, torch.rand(24, 4, 16, 16, generator=g), maps, tile=32)
    assert picture.ndim == 3 and picture.shape[2] == 3


# ---------------------------------------------------------------------------------------------------- CLI
def test_cli_names_a_repeated_tag(tmp_path, capsys):
    from lit_xai.cli import main

    config = tmp_path / "dup.yaml"
    config.write_text(
        "trainer:\n  max_epochs: 1\n  callbacks:\n"
        "    - {class_path: lit_xai.callbacks.ExplanationMonitor, init_args: {tag: XAI}}\n"
        "    - {class_path: lit_xai.callbacks.ExplanationMonitor, init_args: {tag: XAI, explainers: [gradcam]}}\n"
        "model: {class_path: lit_xai.models.ImageClassifier}\n"
        "data: {class_path: lit_xai.datamodules.SyntheticShortcutDataModule, init_args: {num_train: 8, num_val: 4}}\n"
    )
    with pytest.raises(SystemExit) as exit_:
        main(["--config", str(config)])
    assert exit_.value.code == 2
    assert "two ExplanationMonitor callbacks have tag='XAI'" in capsys.readouterr().err


def test_cli_prints_a_config_error_first(tmp_path, capsys):
    from lit_xai.cli import main

    config = tmp_path / "typo.yaml"
    config.write_text("trainer:\n  max_epoch: 2\n")
    with pytest.raises(SystemExit) as exit_:
        main(["--config", str(config)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert err.splitlines()[0] == "error: Group 'trainer' does not accept option 'max_epoch'"
    assert "usage:" in err  # the usage text still follows


# ---------------------------------------------------------------------------------------------------- channels
class AnyChannels(LightningModule):
    """A plain CNN on ``channels``-channel images (multispectral, RGBA, two-channel)."""

    def __init__(self, channels: int):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(channels, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(), torch.nn.Linear(8, 2),
        )  # fmt: skip

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        return torch.nn.functional.cross_entropy(self(batch[0]), batch[1])

    def validation_step(self, batch, batch_idx):
        pass

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def loaders(channels: int):
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.rand(16, channels, 16, 16, generator=g), torch.arange(16) % 2)
    return DataLoader(data, batch_size=8), DataLoader(data, batch_size=8)


@pytest.mark.parametrize(("channels", "note"), [(4, "first three are shown as RGB"), (2, "mean is shown as grey")])
def test_any_channel_count_renders_and_says_how(tmp_path, channels, note):
    # 4-channel data used to fail in visualization/colors.py after a training epoch (log_at_fit_start=False)
    mon = monitor(probes=2, log_at_fit_start=False)
    train, val = loaders(channels)
    trainer_for(tmp_path, [mon]).fit(AnyChannels(channels), train, val)
    assert len(mon.history) == 1
    files = sorted(tmp_path.rglob("events.out.tfevents.*"))
    acc = EventAccumulator(str(files[0].parent), size_guidance={"images": 0, "tensors": 0})
    acc.Reload()
    assert {"XAI/lrp/true", "XAI/gradcam/true"} <= set(acc.Tags()["images"])
    captions = [t for t in acc.Tags()["tensors"] if t.startswith("XAI/lrp/true") and "caption" in t]
    text = acc.Tensors(captions[0])[0].tensor_proto.string_val[0].decode()
    assert note in text


def test_to_float01_shows_first_three_channels():
    images = torch.rand(2, 5, 4, 4)
    torch.testing.assert_close(to_float01(images), images[:, :3])
    torch.testing.assert_close(to_float01(images[:, :2]), images[:, :2].mean(1, keepdim=True).expand(-1, 3, -1, -1))


def test_history_can_be_loaded_from_the_last_checkpoint_as_the_readme_says_for_ddp_spawn(tmp_path):
    # under ddp_spawn the parent's monitor.history is empty after fit; README: load it from last.ckpt
    from lightning.pytorch.callbacks import ModelCheckpoint

    mon = monitor(explainers=("gradcam",))
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    trainer_for(tmp_path, [mon, ckpt], max_epochs=2).fit(tiny_model(), tiny_dm())
    fresh = monitor(explainers=("gradcam",))
    path = tmp_path / "ckpt" / "last.ckpt"
    fresh.load_state_dict(torch.load(path, weights_only=False)["callbacks"][fresh.state_key])
    assert fresh.history == mon.history and [h["epoch"] for h in fresh.history] == [-1, 0, 1]


def test_shortcut_monitor_counts_nan_images_as_audit_failures_and_discovery_leaves_them_out(tmp_path):
    # end to end: the audit used to report "0 failed" and discovery to cluster exactly the NaN images
    from lit_xai.callbacks import ShortcutBudget, ShortcutMonitor
    from lit_xai.callbacks.shortcut_monitor import Discovery

    class Poisoned(SyntheticShortcutDataModule):
        def build_dataset(self, split, rows):
            dataset = super().build_dataset(split, rows)

            class WithNaN(type(dataset)):
                def __getitem__(self, index):
                    item = super().__getitem__(index)
                    if split != "test" and index % 8 == 0:
                        item["image"] = torch.full_like(item["image"], float("nan"))
                    return item

            dataset.__class__ = WithNaN
            return dataset

    class NanTolerant(ImageClassifier):
        def _step(self, batch, stage):
            batch["image"] = torch.nan_to_num(batch["image"])  # trains on the rest
            return super()._step(batch, stage)

    data = Poisoned(num_train=64, num_val=64, num_test=8, image_size=32, batch_size=32, seed=0)
    budget = ShortcutBudget(
        audit_max_samples=64, pool_size=64, num_counterfactual=8, spray_samples=0, audit_cache=False
    )
    mon = ShortcutMonitor(budget=budget, discovery=Discovery(every_n_epochs=1, max_per_class=32), verbose=False)
    torch.manual_seed(0)
    model = NanTolerant("tiny_resnet", num_classes=2, task="binary", class_names=["benign", "melanoma"])
    with pytest.warns(UserWarning, match=r"8 explanations with NaN/Inf left out \(ids \[0, 8, 16"):
        trainer_for(tmp_path, [mon]).fit(model, data)
    assert (mon.audit_report["n_images"], mon.audit_report["n_failed"]) == (56, 8)
    nan_ids = set(range(0, 64, 8))
    assert mon.candidates and not any(nan_ids & set(c["members"]) for c in mon.candidates)


def test_ddp_spawn_with_image_classifier_trains_and_the_parent_history_is_where_the_readme_says(tmp_path):
    # used to fail with PicklingError (a lambda in explainers.profiles) before the first step
    mon = monitor(explainers=("gradcam",))
    trainer = Trainer(
        default_root_dir=tmp_path, max_epochs=1, limit_train_batches=2, accelerator="cpu", devices=2,
        strategy="ddp_spawn", enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        logger=False, enable_checkpointing=False, callbacks=[mon],
    )  # fmt: skip
    trainer.fit(tiny_model(), tiny_dm())
    assert trainer.state.finished and mon.history == []  # the spawned processes held it (README: ddp_spawn)


def test_gradcam_of_a_nan_image_warns_once_naming_the_rows():
    from lit_xai.explainers import inputs

    inputs._WARNED_NONFINITE.discard("GradCAM")
    x = torch.rand(3, 3, 32, 32)
    x[1] = float("nan")
    with pytest.warns(UserWarning, match=r"GradCAM: 1 of 3 maps \(rows \[1\]\) are NaN/Inf"):
        cam = GradCAM()(tiny_net(), x, 0)
    assert bool(cam[1].isnan().all()) and bool(cam[[0, 2]].isfinite().all())  # the other maps are untouched
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        GradCAM()(tiny_net(), x, 0)  # once
