"""``lit-xai correct``: P-ClArC on a trained checkpoint writes a corrected checkpoint that loads, and reports the
reliance and accuracy before -> after."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from _tolerance import reduction_atol
from lightning.pytorch import Trainer, seed_everything

from lit_xai.cli import tool_main
from lit_xai.correction import CAV, projection_hook
from lit_xai.correction.posthoc import CORRECTION_KEY, load_corrected, measure_artifact_reliance
from lit_xai.datamodules import SyntheticShortcutDataModule
from lit_xai.models import ImageClassifier

pytestmark = pytest.mark.usefixtures("single_thread")

DATA = dict(num_train=96, num_val=16, num_test=32, image_size=32, batch_size=32)


@pytest.mark.parametrize("subspace", [1, 3])
def test_correct_command_writes_a_loadable_corrected_checkpoint(tmp_path, capsys, subspace):
    config = {
        "model": {"class_path": "lit_xai.models.ImageClassifier", "init_args": {"architecture": "tiny_resnet"}},
        "data": {"class_path": "lit_xai.datamodules.SyntheticShortcutDataModule", "init_args": DATA},
    }
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    seed_everything(0)
    model = ImageClassifier("tiny_resnet", num_classes=2)
    trainer = Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(model, SyntheticShortcutDataModule(**DATA))
    ckpt = tmp_path / "model.ckpt"
    trainer.save_checkpoint(ckpt)
    out = tmp_path / "corrected.ckpt"

    assert tool_main(["correct", "--ckpt", str(ckpt), "--config", str(config_path), "--output", str(out),
                      "--max_samples", "96", "--subspace", str(subspace)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(printed.strip().splitlines()[-1])
    for side in ("before", "after"):
        assert {"accuracy", "insertion_shift", "accuracy_inserted", "removal_shift"} <= set(report[side])
    record = torch.load(out, weights_only=False)[CORRECTION_KEY]
    assert record["method"] == "pclarc" and record["cav"]["layer"] == "net.layer3"
    basis = record["cav"]["basis"]
    assert basis is None if subspace == 1 else basis.shape == (3, record["cav"]["direction"].numel())

    corrected = load_corrected(str(out), ImageClassifier)
    original = ImageClassifier.load_from_checkpoint(str(out), map_location="cpu").eval()  # still loads as before
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad(), projection_hook(original, CAV.from_dict(record["cav"])):
        expected = original(x)
    with torch.no_grad():
        # the same projection through two code paths: float32 dot products over the CAV's dimension, in any order
        tol = reduction_atol(expected, terms=record["cav"]["direction"].numel())
        assert torch.allclose(corrected(x), expected, rtol=0, atol=tol)
        assert not torch.allclose(original(x), expected)  # the hook is gone, the original network is untouched

    dm = SyntheticShortcutDataModule(**DATA)
    dm.setup("test")
    again = measure_artifact_reliance(corrected, dm.dataset("test"), dm.normalize, dm.denormalize)
    assert again["insertion_shift"] == pytest.approx(report["after"]["insertion_shift"], abs=1e-6)
