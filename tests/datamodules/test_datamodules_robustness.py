"""The rough edges a new user hits with real folders: paths out of the dataset root, a missing root from the command
line, a split without a class, a truncated image (found before training), each answered with one plain sentence."""

from __future__ import annotations

import csv
import os
import warnings
from pathlib import Path

import _dataset_trees as trees
import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from PIL import Image

from lit_xai.cli import build_cli, main, tool_main
from lit_xai.datamodules import CheXpertDataModule, ImageFolderDataModule, ISICDataModule
from lit_xai.datamodules._io import DataFormatError, check_image
from lit_xai.datamodules.base import SampleTable
from lit_xai.datamodules.files import FileDataModule
from lit_xai.models import ImageClassifier

COMMON = {"image_size": 16, "batch_size": 4}
CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yield


def _rewrite(path: Path, row: int, column: str, value: str) -> None:
    """Set ``column`` of data row ``row`` (0-based; file line ``row + 2``) of a CSV."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    rows[row][column] = value
    trees.write_csv(path, list(rows[0].keys()), [list(r.values()) for r in rows])


# ------------------------------------------------------------------------------------- paths outside the root
@pytest.mark.parametrize("value", ["../../../../etc/hostname", "/etc/hostname", "CheXpert-v1.0-small/../../x.jpg"])
def test_chexpert_path_out_of_the_root_is_refused_naming_the_row(tmp_path, value):
    root = trees.chexpert(tmp_path)
    _rewrite(root / "train.csv", 2, "Path", value)
    dm = CheXpertDataModule(str(root), **COMMON)
    with pytest.raises(DataFormatError, match=rf"train\.csv, line 4, Path '{value}' resolves to .* outside the datas"):
        dm.setup("fit")


@pytest.mark.parametrize(
    ("layout", "column"), [("isic2019", "image"), ("isic2020", "image_name"), ("ham10000", "image_id")]
)
def test_isic_image_id_out_of_the_root_is_refused_naming_the_row(tmp_path, layout, column):
    root = {"isic2019": trees.isic2019, "ham10000": trees.ham10000, "isic2020": trees.isic2020}[layout](tmp_path)
    csv_path = next(root.glob("*GroundTruth*.csv")) if layout != "ham10000" else root / "HAM10000_metadata.csv"
    (tmp_path / "secret.jpg").write_bytes((next(root.rglob("*.jpg"))).read_bytes())  # exists, outside the root
    _rewrite(csv_path, 1, column, "../secret")
    expected = rf"{csv_path.name}, line 3, {column} '\.\./secret' resolves to .*outside"
    with pytest.raises(DataFormatError, match=expected):
        _ = ISICDataModule(str(root), **COMMON).table


def test_any_file_datamodule_listing_files_out_of_the_root_is_refused(tmp_path):
    outside = tmp_path / "outside.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(outside)
    (tmp_path / "root").mkdir()

    class Leaky(FileDataModule):
        class_names, task = ("a", "b"), "binary"

        def index_files(self):
            return SampleTable(targets=np.array([0, 1]), paths=[str(self.root / ".." / "outside.png")] * 2)

    with pytest.raises(ValueError, match=r"2 listed image files lie outside the dataset folder .* sample 0"):
        _ = Leaky(str(tmp_path / "root"), **COMMON).table


def test_a_tree_of_links_inside_the_root_still_works(tmp_path):
    """Folders inside the root may be links to elsewhere (a common way to assemble a dataset): only ``..`` is out."""
    real = trees.image_folder(tmp_path / "real")
    (tmp_path / "linked").mkdir()
    for d in real.iterdir():
        os.symlink(d, tmp_path / "linked" / d.name)
    dm = ImageFolderDataModule(str(tmp_path / "linked"), val_fraction=0.2, test_fraction=0.2, **COMMON)
    dm.setup("fit")
    assert len(dm.dataset("train")) > 0


# ------------------------------------------------------------------------------- missing root from the CLI
def test_missing_root_from_the_cli_is_one_sentence_not_a_union_dump(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    config = str(CONFIGS / "melanoma_resnet50.yaml")
    with pytest.raises(SystemExit) as exit_info:
        main(["--config", config, f"--data.init_args.root={tmp_path / 'nope'}"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: dataset folder ") and "does not exist; set data.init_args.root to" in last
    assert "Union" not in err and "NoneType" not in err and "Traceback" not in err
    # the library call raises the constructor's own error (no jsonargparse wrapping) ...
    with pytest.raises(FileNotFoundError, match="^dataset folder .* does not exist; set data.init_args.root"):
        build_cli(["--config", config, f"--data.init_args.root={tmp_path / 'nope'}"])
    # ... and so does any other configured class (here a callback)
    with pytest.raises(Exception, match="every_n_epochs") as info:
        build_cli(["--config", str(CONFIGS / "demo.yaml"), "--trainer.callbacks+=lit_xai.callbacks.ExplanationMonitor",
                   "--trainer.callbacks.every_n_epochs=0"])
    assert "Union" not in str(info.value)


def test_audit_command_with_a_missing_root_is_one_sentence(tmp_path, capsys):
    config = tmp_path / "x.yaml"
    config.write_text(
        f"data:\n  class_path: lit_xai.datamodules.ImageFolderDataModule\n  init_args: {{root: {tmp_path / 'nope'}}}\n"
    )
    assert tool_main(["audit", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: dataset folder ") and "Union" not in err


# -------------------------------------------------------------------------------------- a split without a class
def _folder(tmp_path: Path, counts: dict[str, int]) -> Path:
    root = tmp_path / "folder"
    for k, (name, n) in enumerate(counts.items()):
        for i in range(n):
            trees.write_png(root / name / f"{name}_{i}.png", np.full((12, 12, 3), 40 * k + i, np.uint8))
    return root


def _trainer(tmp_path: Path, **kwargs) -> L.Trainer:
    return L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=TensorBoardLogger(str(tmp_path / "logs")),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_train_batches=1,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        **kwargs,
    )


def _model(dm) -> ImageClassifier:
    # as the CLI links them: lists, not tuples
    return ImageClassifier("tiny_resnet", num_classes=dm.num_classes, task=dm.task, class_names=list(dm.class_names))


def test_split_without_a_class_is_one_sentence_before_training(tmp_path):
    dm = ImageFolderDataModule(str(_folder(tmp_path, {"cat": 8, "dog": 8, "owl": 1})), **COMMON)
    with pytest.raises(ValueError) as info:
        _trainer(tmp_path).fit(_model(dm), datamodule=dm)
    message = str(info.value)
    assert message.startswith("ImageFolderDataModule: the 'val' split has no sample of class 'owl'")
    assert "owl 1/0/0" in message and "change val_fraction, test_fraction or seed" in message
    assert "hparams" not in message


def test_inferred_classes_are_recorded_so_a_logged_fit_works(tmp_path):
    """The folder's classes are inferred (class_names=None): the datamodule records them, so Lightning's hparams
    merge with the model's linked values agrees instead of failing."""
    dm = ImageFolderDataModule(str(_folder(tmp_path, {"cat": 6, "dog": 6})), val_fraction=0.34, **COMMON)
    assert dm.hparams_initial["class_names"] == ["cat", "dog"] and dm.hparams_initial["task"] == "binary"
    assert ImageFolderDataModule(**dict(dm.hparams)).class_names == dm.class_names
    trainer = _trainer(tmp_path)
    trainer.fit(_model(dm), datamodule=dm)
    assert trainer.global_step == 1


def test_predefined_split_without_a_class_names_the_folder_to_fill(tmp_path):
    root = tmp_path / "splits"
    for split, names in (("train", ("cat", "dog")), ("val", ("cat", "dog")), ("test", ("cat",))):
        for name in names:
            for i in range(3):
                trees.write_png(root / split / name / f"{i}.png", np.full((12, 12, 3), 9 * i, np.uint8))
    dm = ImageFolderDataModule(str(root), **COMMON)
    dm.setup("fit")  # train and val are complete
    with pytest.raises(ValueError, match=r"the 'test' split has no sample of class 'dog' .*; add samples of that "
                       r"class to the dataset's test split"):
        dm.setup("test")


# ------------------------------------------------------------------------------------------- unreadable images
def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_quick_check_finds_truncated_and_broken_files_and_passes_whole_ones(tmp_path):
    jpg = trees.write_jpeg(tmp_path / "a.jpg", 0, size=(256, 192))
    png = trees.write_png(tmp_path / "a.png", trees.skin_image(1, (64, 48)))
    assert check_image(jpg) is None and check_image(png) is None and check_image(jpg, decode=True) is None
    for path in (jpg, png):
        _truncate(path)  # cut inside the compressed data: the header is whole
        assert check_image(path) is not None and check_image(path, decode=True) is not None
    assert check_image(jpg) == "truncated JPEG: no end-of-image marker"
    (tmp_path / "text.jpg").write_text("not an image")
    assert "cannot identify" in check_image(tmp_path / "text.jpg")
    assert check_image(tmp_path / "missing.jpg") == "listed but missing"


def test_truncated_jpeg_stops_the_run_at_setup_before_any_training_step(tmp_path):
    root = trees.image_folder(tmp_path, classes=("cat", "dog"), per_class=6)
    victim = root / "dog" / "dog_5.jpg"
    _truncate(victim)
    dm = ImageFolderDataModule(str(root), val_fraction=0.34, test_fraction=0.0, **COMMON)
    steps = []

    class Count(L.Callback):
        def on_train_batch_start(self, *args):
            steps.append(1)

    with pytest.raises(OSError, match=r"1 of 12 images of the train/val split\(s\) cannot be read: .*dog_5\.jpg \("):
        _trainer(tmp_path, callbacks=[Count()]).fit(_model(dm), datamodule=dm)
    assert steps == []
    # the skip policy drops it instead, counted
    skip = ImageFolderDataModule(str(root), val_fraction=0.34, test_fraction=0.0, on_bad_image="skip", **COMMON)
    skip.setup("fit")
    assert [Path(p).name for p, _ in skip.skipped] == ["dog_5.jpg"]


def test_setup_checks_each_split_once(tmp_path, monkeypatch):
    root = trees.image_folder(tmp_path, classes=("cat", "dog"), per_class=6)
    dm = ImageFolderDataModule(str(root), val_fraction=0.34, test_fraction=0.0, **COMMON)
    seen = []
    monkeypatch.setattr("lit_xai.datamodules.files.check_image", lambda p: seen.append(p))
    dm.setup("fit")
    dm.setup("fit")
    assert len(seen) == 12 == len(set(seen))
    assert torch.is_tensor(dm.dataset("train")[0]["image"])
