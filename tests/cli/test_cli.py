"""Every config instantiates; the CLI trains, tests on the best checkpoint, resumes and prints its config."""

import json
from pathlib import Path

import _dataset_trees as trees
import pytest
import torch
import yaml

from lit_xai.cli import build_cli, main, tool_main
from lit_xai.models.architectures import ARCHITECTURES

CONFIGS = sorted(Path(__file__).resolve().parents[2].glob("configs/*.yaml"))
FAST = [
    "--trainer.max_epochs=1",
    "--trainer.logger.init_args.save_dir=logs",
    "--data.init_args.num_train=96",
    "--data.init_args.num_val=32",
    "--data.init_args.num_test=32",
    "--data.init_args.image_size=32",
    "--data.init_args.batch_size=32",
]


def test_there_are_configs_for_every_experiment():
    names = {p.stem for p in CONFIGS}
    assert {
        "demo",
        "melanoma_resnet50",
        "melanoma_resnet50_attention",
        "melanoma_efficientnet_relu",
        "covid_vgg16",
        "covid_resnet50",
        "chexpert_densenet121",
    } <= names


# the fixture tree (tests/helpers/_dataset_trees.py) that stands in for each real dataset a config reads
FIXTURES = {
    "ISICDataModule": lambda tmp, cfg: (
        trees.isic2020(tmp, kaggle=True) if "siim" in cfg["data"]["init_args"]["root"] else trees.isic2019(tmp)
    ),
    "MelanomaFolderDataModule": lambda tmp, cfg: trees.melanoma_folder(tmp),
    "CovidQUExDataModule": lambda tmp, cfg: trees.covid_quex(tmp),
    "CovidRadiographyDataModule": lambda tmp, cfg: trees.covid_radiography(tmp),
    "CheXpertDataModule": lambda tmp, cfg: trees.chexpert(tmp),
    "ImageFolderDataModule": lambda tmp, cfg: trees.image_folder(tmp),
}


def _data_overrides(config: Path, tmp_path: Path) -> list[str]:
    """``--data.init_args.root=<fixture tree>`` for configs that read a real dataset, else nothing."""
    cfg = yaml.safe_load(config.read_text())
    name = cfg["data"]["class_path"].rsplit(".", 1)[-1]
    if name == "SyntheticShortcutDataModule":
        return []
    assert name in FIXTURES, f"{config.name}: no fixture tree for {name}"
    return [f"--data.init_args.root={FIXTURES[name](tmp_path / 'data', cfg)}"]


@pytest.mark.parametrize("config", [c for c in CONFIGS if not c.stem.startswith("demo")], ids=lambda p: p.stem)
def test_real_dataset_configs_fail_clearly_without_the_folder(config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = yaml.safe_load(config.read_text())
    assert "Synthetic" not in cfg["data"]["class_path"], "experiment configs read real data"
    assert cfg["data"]["init_args"]["root"], "data.init_args.root names the dataset's usual folder"
    with pytest.raises(Exception, match="set data.init_args.root to the folder that contains"):
        build_cli(["--config", str(config)])


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_config_instantiates(config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = build_cli(["--config", str(config), *_data_overrides(config, tmp_path)])
    model, dm, trainer = cli.model, cli.datamodule, cli.trainer
    assert model.hparams.architecture in ARCHITECTURES
    # the links: what the data declares, the model receives
    assert model.num_classes == dm.num_classes and model.task == dm.task
    assert list(model.class_names) == list(dm.class_names)
    assert trainer.max_epochs >= 1
    assert any(type(cb).__name__ == "ExplanationMonitor" for cb in trainer.callbacks)
    with torch.no_grad():
        out = model(torch.zeros(1, 3, dm.image_size, dm.image_size))
    assert out.shape == (1, dm.num_classes)
    # the datamodule reads its (fixture) files: a batch of the configured size comes out
    assert len(dm.dataset("train")) > 0 and dm.dataset("val")[0]["image"].shape == (3, dm.image_size, dm.image_size)


def test_demo_trains_tests_and_resumes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    demo = str(CONFIGS[[p.stem for p in CONFIGS].index("demo")])
    cli = main(["--config", demo, *FAST])
    trainer = cli.trainer
    assert trainer.current_epoch == 1
    assert "test/acc" in trainer.callback_metrics  # trainer.test ran on the best checkpoint
    assert list(Path("logs").rglob("events.out.tfevents.*")), "no TensorBoard event files"
    ckpt = trainer.checkpoint_callback.best_model_path
    assert ckpt and Path(ckpt).is_file()
    resumed = main(["--config", demo, *FAST, "--trainer.max_epochs=2", f"--ckpt_path={ckpt}", "--test_after_fit=false"])
    assert resumed.trainer.current_epoch == 2
    assert resumed.trainer.global_step == 2 * trainer.global_step  # continued, not restarted


def test_print_config(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    demo = str(CONFIGS[[p.stem for p in CONFIGS].index("demo")])
    with pytest.raises(SystemExit) as exit_info:
        build_cli(["--config", demo, "--print_config"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "lit_xai.models.ImageClassifier" in out and "ExplanationMonitor" in out


def test_unknown_architecture_from_cli_lists_choices(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    demo = str(CONFIGS[[p.stem for p in CONFIGS].index("demo")])
    with pytest.raises(ValueError, match="choose one of:.*tiny_resnet"):
        build_cli(["--config", demo, "--model.init_args.architecture=resnet5O"])


def test_tool_help():
    assert tool_main(["--help"]) == 0
    assert tool_main(["nope"]) == 2


def test_audit_command_writes_a_report(tmp_path, capsys):
    demo = str(CONFIGS[[p.stem for p in CONFIGS].index("demo")])
    out = tmp_path / "audit.json"
    assert tool_main(["audit", "--config", demo, "--max_samples", "300", "--output", str(out)]) == 0
    assert "label-predictive" in capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["artifacts"]["ring"]["predictive_classes"] == ["melanoma"]
    assert report["artifacts"]["ring"]["prevalence_by_class"][0] == 0.0


@pytest.mark.parametrize(
    ("config", "data_class", "builder"),
    [
        ("demo", "ImageFolderDataModule", trees.image_folder),
        ("covid_vgg16", "CovidRadiographyDataModule", trees.covid_radiography),
    ],
)
def test_readme_one_liners_swap_the_datamodule(config, data_class, builder, tmp_path, monkeypatch):
    """The README's "Your own data" commands: any config + another DataModule + its root."""
    monkeypatch.chdir(tmp_path)
    path = str(CONFIGS[[p.stem for p in CONFIGS].index(config)])
    root = builder(tmp_path)
    cli = build_cli(["--config", path, f"--data=lit_xai.datamodules.{data_class}", f"--data.init_args.root={root}"])
    dm, model = cli.datamodule, cli.model
    assert type(dm).__name__ == data_class and model.num_classes == dm.num_classes == len(dm.class_names)
    assert list(model.class_names) == list(dm.class_names)
    assert dm.dataset("train")[0]["image"].shape == (3, dm.image_size, dm.image_size)


def test_model_values_that_disagree_with_the_linked_data_are_an_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    demo = str(next(p for p in CONFIGS if p.stem == "demo"))
    with pytest.raises(ValueError, match="num_classes=3 disagrees with the data's num_classes 2"):
        build_cli(["--config", demo, *FAST, "--model.init_args.num_classes=3"])
    with pytest.raises(ValueError, match="class_names"):
        build_cli(["--config", demo, *FAST, "--model.init_args.class_names=[nevus,mel]"])
    cli = build_cli(["--config", demo, *FAST, "--model.init_args.task=binary"])  # agrees: fine
    assert cli.model.task == "binary"
