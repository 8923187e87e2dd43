"""Evidence charts that cannot mislead and one x axis (issue 31): the CUSTOM SCALARS layout holds a Margin chart per
causal test with its interval bounds, the alert rule's threshold and an alert marker; every lit_xai output of a run
is logged at the epoch step (completed epochs)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2

from lit_xai.callbacks import ExplanationMonitor, Pictures, ShortcutBudget, ShortcutMonitor
from lit_xai.callbacks.layout import AXIS, LAYOUT_TAG, evidence_tags, shortcut_layout
from lit_xai.callbacks.shortcut_monitor import Discovery
from lit_xai.datamodules import SyntheticShortcutDataModule
from lit_xai.models import ImageClassifier
from lit_xai.shortcuts import AlertRule

EPOCHS = 3


def test_layout_is_one_margin_chart_per_test_with_threshold_and_alert_series():
    layout = shortcut_layout("G", [("ring", "melanoma"), ("ruler", "benign")], {"ring": ["insertion", "removal"]})
    charts = [c for cat in layout.category for c in cat.chart]
    assert len(charts) == 2 and all(c.HasField("margin") and not c.HasField("multiline") for c in charts)
    for chart, test in zip(charts, ["insertion", "removal"]):
        effect, threshold, alert = chart.margin.series
        assert (effect.value, effect.lower, effect.upper) == evidence_tags("G/ring/melanoma", test)
        assert threshold.value == threshold.lower == threshold.upper == "G/threshold"
        assert alert.value == alert.lower == alert.upper == "G/ring/melanoma/alert"
        assert AXIS in chart.title and "alert" not in chart.title


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("evidence_charts")
    seed_everything(0)
    dm = SyntheticShortcutDataModule(
        num_train=96, num_val=48, num_test=16, image_size=32, batch_size=32, seed=0, ring_fraction_benign=0.0,
        ring_fraction_melanoma=0.6,
    )  # fmt: skip
    model = ImageClassifier("tiny_resnet", num_classes=2, task="binary", class_names=["benign", "melanoma"], lr=0.01)
    shortcut = ShortcutMonitor(
        alert=AlertRule(min_effect=0.05, patience=1, min_images=4),
        budget=ShortcutBudget(audit_max_samples=48, pool_size=48, num_probes=2, num_counterfactual=8, spray_samples=0),
        discovery=Discovery(every_n_epochs=0),
        verbose=False,
    )
    explanation = ExplanationMonitor(explainers=("lrp",), probes=4, verbose=False, pictures=Pictures(tile=32))
    trainer = Trainer(
        max_epochs=EPOCHS,
        accelerator="cpu",
        logger=TensorBoardLogger(str(root), name="run", default_hp_metric=False),
        callbacks=[explanation, shortcut],
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
    )
    trainer.fit(model, dm)
    trainer.test(model, dm)
    files = sorted(Path(root).rglob("events.out.tfevents.*"))
    acc = EventAccumulator(str(files[0].parent), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    acc.Reload()
    return acc, shortcut


def _layout(acc: EventAccumulator) -> layout_pb2.Layout:
    events = acc.Tensors(LAYOUT_TAG)
    assert len(events) == 1  # one layout per run: TensorBoard shows only one
    layout = layout_pb2.Layout()
    layout.ParseFromString(events[0].tensor_proto.string_val[0])
    return layout


def test_event_files_hold_margin_charts_whose_tags_were_logged(run):
    acc, shortcut = run
    scalars = set(acc.Tags()["scalars"])
    charts = [c for cat in _layout(acc).category for c in cat.chart]
    margins = [c for c in charts if c.HasField("margin")]
    assert margins and len(margins) == len(charts)  # no smoothed Multiline chart of the evidence
    for chart in margins:
        effect, threshold, alert = chart.margin.series
        assert effect.lower.endswith("_lower") and effect.upper.endswith("_upper")
        for series in chart.margin.series:  # every tag the chart reads exists in the event files
            assert {series.value, series.lower, series.upper} <= scalars, chart.title
        values = {e.step: e.value for e in acc.Scalars(effect.value)}
        lows = {e.step: e.value for e in acc.Scalars(effect.lower)}
        highs = {e.step: e.value for e in acc.Scalars(effect.upper)}
        assert values.keys() == lows.keys() == highs.keys()
        assert all(lows[s] <= values[s] <= highs[s] for s in values if math.isfinite(values[s]))
        # the event files hold float32: the threshold is exactly its float32 rounding at every step
        assert {e.value for e in acc.Scalars(threshold.value)} == {float(np.float32(shortcut.rule.min_effect))}


def test_alert_series_is_nonzero_exactly_at_the_alert_epochs(run):
    acc, shortcut = run
    tags = [t for t in acc.Tags()["scalars"] if t.endswith("/alert")]
    assert tags
    for tag in tags:
        artifact, cls = tag.split("/")[-3:-1]
        fired = {a["epoch"] + 1 for a in shortcut.alerts if (a["artifact"], a["class"]) == (artifact, cls)}
        marked = {e.step for e in acc.Scalars(tag) if e.value != 0}
        height = float(np.float32(shortcut.rule.min_effect))  # the spike reaches the threshold line
        assert marked == fired and all(e.value in (0.0, height) for e in acc.Scalars(tag))
    assert shortcut.alerts, "the run should alert (the ring drives 'melanoma' from the first epochs)"


def test_every_lit_xai_output_uses_the_epoch_step(run):
    acc, shortcut = run
    epoch_steps = set(range(EPOCHS + 1))  # 0 = the untrained model, e + 1 = after epoch e
    measured = {h["epoch"] + 1 for h in shortcut.history}
    kinds = {"scalars": acc.Scalars, "images": acc.Images, "tensors": acc.Tensors}
    seen = 0
    for kind, read in kinds.items():
        for tag in acc.Tags()[kind]:
            if tag == LAYOUT_TAG or not tag.startswith(("XAI", "quality")):
                continue
            steps = {e.step for e in read(tag)}
            assert steps <= epoch_steps, (tag, sorted(steps))
            if tag.startswith("XAI_shortcut/ring/"):
                assert steps == measured, (tag, sorted(steps))
            seen += 1
    assert seen > 10


def test_the_report_draws_every_chart_over_epochs_done():
    import re

    from lit_xai.report.render import AXIS, epochs_done, render_report
    from lit_xai.report.run_data import RunData

    # Lightning: 10 batches per epoch, the epoch number beside each logged step, val/acc at each epoch's last step
    epoch = [(s, float(s // 10)) for s in range(0, 30)]
    test = {"effect": 0.4, "interval": [0.3, 0.5], "confidence": 0.95}
    history = [{"epoch": e, "artifact": "ring", "class": "melanoma", "counterfactual": test} for e in range(3)]
    run = RunData(
        Path("run"),
        "tensorboard",
        scalars={
            "epoch": epoch,
            "val/acc": [(9, 0.5), (19, 0.6), (29, 0.7)],
            "train/loss_step": [(s, 1.0 / (s + 1)) for s in range(0, 30, 5)],
            "XAI_shortcut/ring/melanoma/insertion_effect": [(1, 0.4), (2, 0.4), (3, 0.4)],
            "XAI_shortcut/ring/melanoma/insertion_effect_lower": [(1, 0.3), (2, 0.3), (3, 0.3)],
        },
        shortcut={"history": history, "alerts": [{**history[1], "message": "m"}], "criteria": {"min_effect": 0.15}},
    )
    to_epochs = epochs_done(epoch)
    assert [to_epochs(s) for s in (9, 19, 29)] == [1.0, 2.0, 3.0]  # val/acc lands where the monitors log epoch 0..2
    html = render_report(run)
    labels = set(re.findall(r'text-anchor="end" class="tick">([a-z][^<]*)</text><line', html))
    assert labels == {AXIS}, labels
    assert "insertion_effect_lower" not in html  # the bound is drawn as the interval, not as a chart of its own
    # the causal chart: the alert of epoch 1 is marked at 2 epochs done, where TensorBoard shows it
    assert re.search(r'<line x1="([\d.]+)" x2="\1"[^>]*stroke="#C00000"', html)
    assert "<td>1 (2)</td>" in html
