"""ShortcutCorrection's grouped spelling (ModelSpec + CAVSettings / PenaltySettings / CorrectionBudget): it trains
exactly like the deprecated flat arguments, each flat argument warns with its new spelling, both at once is an error,
a class may be named, and the demo config parses and instantiates in the new spelling without a warning."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import pytest
import torch
from _correction_data import CORNER_NORMALIZATION, DictData, Foreign, fit, loader, planted
from torch.utils.data import DataLoader

from lit_xai._moved import LitXaiDeprecationWarning
from lit_xai.callbacks import ModelSpec, ShortcutCorrection
from lit_xai.callbacks.correction import FLAT_ARGUMENTS
from lit_xai.correction import CAVSettings, CorrectionBudget, PenaltySettings

pytestmark = pytest.mark.usefixtures("single_thread")

ROOT = Path(__file__).resolve().parents[2]

#: one value per deprecated flat argument, none of them the default
FLAT_VALUES = {
    "layer": "feat",
    "pooling": "mean",
    "refit_every_n_epochs": 2,
    "cav_class": 1,
    "weight": 2.0,
    "output": "true",
    "penalty_scale": "unit",
    "subspace": 2,
    "max_samples": 64,
    "seed": 3,
    "module_attr": "model",
    "normalization": CORNER_NORMALIZATION,
}


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def grouped(**penalty) -> ShortcutCorrection:
    return ShortcutCorrection(
        cav=CAVSettings(layer="feat"),
        penalty=PenaltySettings(**{"weight": 1.0, **penalty}),
        budget=CorrectionBudget(max_samples=64),
        model=ModelSpec(module_attr="model"),
    )


def test_every_flat_argument_has_a_value_here():
    assert set(FLAT_VALUES) == set(FLAT_ARGUMENTS)


@pytest.mark.parametrize("old", sorted(FLAT_ARGUMENTS))
def test_each_flat_argument_warns_with_its_new_spelling_and_lands_in_its_group(old):
    group, field = FLAT_ARGUMENTS[old]
    with pytest.warns(LitXaiDeprecationWarning, match=rf"ShortcutCorrection\({old}=\.\.\.\).*{group}=\w+\({field}="):
        cb = ShortcutCorrection(**{old: FLAT_VALUES[old]})
    settings = {"cav": cb.cav_settings, "penalty": cb.penalty, "budget": cb.budget, "model": cb.model}[group]
    assert getattr(settings, field) == FLAT_VALUES[old]
    assert getattr(cb, old) == FLAT_VALUES[old]  # the old attribute still reads it


def test_the_warning_points_at_the_caller():
    with pytest.warns(LitXaiDeprecationWarning) as caught:
        ShortcutCorrection(weight=2.0)
    assert caught[0].filename == __file__


def test_the_grouped_spelling_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cb = grouped(targets="predicted")
    assert cb.output == "pred" and cb.penalty.targets == "predicted"  # the penalty function's word, the new word


def test_flat_and_grouped_train_bit_identically():
    """The same run spelled both ways: the same weights, CAV and logged history."""
    results = []
    for make in (
        lambda: grouped(weight=2.0),
        lambda: ShortcutCorrection(layer="feat", module_attr="model", weight=2.0, max_samples=64),
    ):
        torch.manual_seed(0)
        module = Foreign()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LitXaiDeprecationWarning)
            cb = make()
        fit(module, [cb], loader(n=64), max_epochs=1)
        results.append((module.state_dict(), cb))
    (a, cb_a), (b, cb_b) = results
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(cb_a.cav.direction, cb_b.cav.direction) and cb_a.history == cb_b.history
    assert cb_a.state_key == cb_b.state_key  # a checkpoint of the flat spelling restores into the grouped one


def test_flat_and_grouped_together_is_an_error_naming_both():
    with pytest.raises(ValueError, match=r"give layer= or cav=CAVSettings\(layer=\.\.\.\), not both"):
        with pytest.warns(LitXaiDeprecationWarning):
            ShortcutCorrection(layer="feat", cav=CAVSettings(layer="other"))
    # a flat argument fills a field the group leaves at its default
    with pytest.warns(LitXaiDeprecationWarning):
        cb = ShortcutCorrection(layer="feat", cav=CAVSettings(pooling="mean"))
    assert (cb.cav_settings.layer, cb.cav_settings.pooling) == ("feat", "mean")


def test_groups_are_copied_and_validated():
    shared = CAVSettings()
    ShortcutCorrection(cav=shared, model=ModelSpec(module_attr="model")).layer = "feat"
    assert shared.layer is None  # the resolved layer is written into the callback's own copy
    for bad, match in (
        (lambda: PenaltySettings(targets="logits"), "targets"),
        (lambda: PenaltySettings(weight=-1.0), "weight"),
        (lambda: PenaltySettings(subspace=0), "subspace"),
        (lambda: CAVSettings(every_n_epochs=0), "every_n_epochs"),
        (lambda: CAVSettings(pooling="max"), "pooling"),
        (lambda: CorrectionBudget(max_samples=2), "max_samples"),
        (lambda: ShortcutCorrection(cav={"layer": "feat"}), "must be a CAVSettings"),
        (lambda: ShortcutCorrection("net.layer3"), "the first argument is the method now"),
    ):
        with pytest.raises((ValueError, TypeError), match=match):
            bad()
    assert PenaltySettings(targets="pred").targets == "predicted"  # the old word of output=


class Named(Foreign):
    class_names = ["clean", "corner"]


def test_within_class_by_name_fits_the_same_cav_as_its_index():
    half = DataLoader(DictData(planted(64, seed=1, artifact_rate=0.5)), batch_size=32)  # class 1: with and without
    cavs = {}
    for within in (1, "corner"):
        torch.manual_seed(0)
        cb = ShortcutCorrection(
            cav=CAVSettings(layer="feat", within_class=within), budget=CorrectionBudget(max_samples=64),
            model=ModelSpec(module_attr="model"),
        )  # fmt: skip
        fit(Named(), [cb], half, max_epochs=1)
        assert cb.cav is not None, "no CAV fitted"
        cavs[within] = cb.cav.direction
    assert torch.equal(cavs[1], cavs["corner"])
    with pytest.raises(ValueError, match=r"names no class \(the classes: \['clean', 'corner'\]\)"):
        fit(Named(), [ShortcutCorrection(cav=CAVSettings(layer="feat", within_class="ring"),
                                         model=ModelSpec(module_attr="model"))], loader(n=32))  # fmt: skip


def _correction_of(cli) -> ShortcutCorrection:
    return next(cb for cb in cli.trainer.callbacks if isinstance(cb, ShortcutCorrection))


def test_demo_corrected_config_parses_in_the_new_spelling_and_an_old_config_still_does(tmp_path):
    import yaml

    from lit_xai.cli import build_cli

    config = ROOT / "configs" / "demo_corrected.yaml"
    with warnings.catch_warnings():
        warnings.simplefilter("error", LitXaiDeprecationWarning)
        new = _correction_of(build_cli(["--config", str(config)]))
    assert new.budget == CorrectionBudget(max_samples=256) and new.method == "aclarc"
    # the same config in the flat spelling of the last release: parsed, warned, the same settings
    old = copy.deepcopy(yaml.safe_load(config.read_text()))
    for callback in old["trainer"]["callbacks"]:
        if callback["class_path"].endswith("ShortcutCorrection"):
            callback["init_args"].pop("budget")
            callback["init_args"].update(max_samples=256, layer="net.layer3", output="pred")
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(old, sort_keys=False))
    with pytest.warns(LitXaiDeprecationWarning, match="max_samples"):
        flat = _correction_of(build_cli(["--config", str(path)]))
    assert flat.budget == new.budget and flat.layer == "net.layer3" and flat.penalty.targets == "predicted"
