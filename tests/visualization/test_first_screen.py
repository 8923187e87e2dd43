"""The first TensorBoard screen (issue 21): the verdict picture first, no 0/1 scalar curves, epoch-step metrics, and
the pictures' legends, groups, markers and captions."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import lit_xai.visualization.grids as grids
from lit_xai.artifacts.audit import ArtifactAssociation, AuditReport
from lit_xai.artifacts.verdict import effect_series, lead_key, verdict_text
from lit_xai.callbacks import ExplanationMonitor, Pictures, ShortcutBudget, ShortcutMonitor
from lit_xai.callbacks.epoch_metrics import epoch_metric_names
from lit_xai.callbacks.shortcut_monitor import Discovery, _probe_caption
from lit_xai.datamodules import SyntheticShortcutDataModule
from lit_xai.models import ImageClassifier
from lit_xai.visualization import (
    MASK_RGB,
    PALETTE,
    CandidateStrip,
    ProbeStrip,
    candidate_strip,
    concept_grid,
    explanation_grid,
    line_plot,
    timeline_grid,
    verdict_picture,
    visible_share,
)


def _has_colour(image: torch.Tensor, rgb: tuple[int, int, int], tol: int = 8) -> bool:
    diff = (image.int() - torch.tensor(rgb, dtype=torch.int32)[:, None, None]).abs().amax(0)
    return bool((diff <= tol).any())


def _dashed_row(image: torch.Tensor, rgb: tuple[int, int, int] = (70, 70, 70)) -> bool:
    """A horizontal dashed line of exactly ``rgb`` (text antialiasing gives scattered greys, never a long row)."""
    exact = (image.int() == torch.tensor(rgb, dtype=torch.int32)[:, None, None]).all(0)
    return bool(exact.sum(1).max() > image.shape[2] // 4)


def _history(effects: list[float], removal: list[float] | None = None) -> list[dict]:
    """History entries as ShortcutMonitor keeps them: per epoch one entry with the insertion (and removal) test."""
    entries = []
    for e, v in enumerate(effects):
        entry = {"epoch": e, "artifact": "ring", "class": "melanoma"}
        entry["counterfactual"] = {"effect": v, "interval": [v - 0.05, v + 0.05]}
        if removal is not None:
            entry["removal"] = {"effect": removal[e], "interval": [removal[e] - 0.05, removal[e] + 0.05]}
        entries.append(entry)
    return entries


# ---------------------------------------------------------------------------------------------------- charts


def test_line_plot_gives_each_curve_its_own_colour_and_draws_threshold_and_marker():
    curves = {"lrp": [0.9, 0.8, 0.85], "gradcam": [0.5, 0.6, 0.7], "crp": [0.2, 0.3, 0.1]}
    img = line_plot(curves, x=[0, 1, 2], hlines=[(0.95, "threshold")], vlines=[(1, "alert")])
    for k in range(3):  # one colour per method, in the plot and its legend
        assert _has_colour(img, PALETTE[k], tol=2)
    assert _dashed_row(img)  # the dashed threshold line (grey)
    assert _has_colour(img, (200, 0, 0), tol=2)  # the marker


def test_line_plot_axes_hold_a_threshold_outside_the_data_and_every_band():
    plain = line_plot({"a": [0.0, 0.01]}, x=[0, 1])
    with_line = line_plot({"a": [0.0, 0.01]}, x=[0, 1], hlines=[(0.15, "threshold 0.15")])
    assert not _dashed_row(plain) and _dashed_row(with_line)
    band = line_plot({"a": [0.0, 0.1]}, x=[0, 1], bands={"a": ([-0.5, 0.0], [0.2, 0.9])})
    assert band.shape == plain.shape
    with pytest.raises(ValueError, match="name no curve"):
        line_plot({"a": [0.0, 0.1]}, bands={"b": ([0, 0], [1, 1])})


# ---------------------------------------------------------------------------------------------------- grids


def test_outcome_groups_show_empty_groups_instead_of_hiding_them():
    images, maps = torch.rand(2, 3, 32, 32), torch.rand(2, 32, 32)
    plain = explanation_grid(images, maps, ["a", "b"], tile=32, signed=False)
    grouped = explanation_grid(
        images, maps, ["a", "b"], tile=32, signed=False, groups=[("false positives", 0), ("true positives", 2)]
    )
    assert grouped.shape[1] > plain.shape[1]  # two heading rows: the empty group and the filled one
    assert _has_colour(grouped, (240, 240, 240), tol=0)  # the "none this epoch" row
    with pytest.raises(ValueError, match="groups must count"):
        explanation_grid(images, maps, ["a", "b"], groups=[("fp", 1)])


def test_nearly_blank_maps_are_marked():
    heat = torch.rand(2, 32, 32)
    heat[1] = 0.0
    heat[1, 3, 3] = 1.0  # one pixel of relevance: looks empty
    assert visible_share(heat)[1] < 0.02 < visible_share(heat)[0]
    marked = explanation_grid(torch.rand(2, 3, 32, 32), heat, ["a", "b"], tile=48, signed=False)
    unmarked = explanation_grid(torch.rand(2, 3, 32, 32), torch.rand(2, 32, 32), ["a", "b"], tile=48, signed=False)
    assert _has_colour(marked, (255, 236, 200), tol=0) and not _has_colour(unmarked, (255, 236, 200), tol=0)


def test_timeline_has_an_input_column_with_the_artifact_outline():
    frames = [torch.randn(2, 32, 32) for _ in range(3)]
    masks = torch.zeros(2, 32, 32, dtype=torch.bool)
    masks[:, 8:24, 8:24] = True
    plain = timeline_grid(frames, ["e0", "e1", "e2"], ["a", "b"], tile=40)
    with_input = timeline_grid(
        frames, ["e0", "e1", "e2"], ["a", "b"], tile=40, images01=torch.full((2, 3, 32, 32), 0.5), masks=masks
    )
    assert with_input.shape[2] == plain.shape[2] + 40 + 2  # one more tile column and its gap
    assert _has_colour(with_input, MASK_RGB, tol=0)
    with pytest.raises(ValueError, match="come with images01"):
        timeline_grid(frames, ["e0", "e1", "e2"], ["a", "b"], masks=masks)


def test_concept_grid_and_timeline_are_drawn_for_the_images_card_width(monkeypatch):
    """TensorBoard's IMAGES card scales every picture to IMAGES_CARD_WIDTH: a wider grid showed the concept grid's
    11 px type at 8.8 px and the timeline's at 7.8 px. Fitted, the tiles narrow instead (the card shows them no
    smaller than it did) and, where they cannot (many epochs), the type grows."""
    from lit_xai.visualization.verdict import IMAGES_CARD_WIDTH as card

    sizes = []
    original = grids._font
    monkeypatch.setattr(grids, "_font", lambda size=11: sizes.append(size) or original(size))
    images, k = torch.rand(2, 3, 96, 96), 4
    args = (images, torch.randn(2, k, 96, 96), torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]]), ["a", "b"])
    wide = concept_grid(*args, tile=84)
    fitted = concept_grid(*args, tile=84, fit_width=card)
    assert wide.shape[2] > card >= fitted.shape[2]  # shown at native size: 11 px type at 11 px
    # the demo's timeline (input, init and 4 measured epochs), long probe labels
    frames = [torch.randn(2, 96, 96) for _ in range(5)]
    labels = ["#55 benign→benign", "#204 melanoma→melanoma [artifact]"]
    columns = ["init", "ep0", "ep1", "ep3", "ep7"]
    before = timeline_grid(frames, columns, labels, tile=56, images01=images)
    sizes.clear()
    after = timeline_grid(frames, columns, labels, tile=56, images01=images, fit_width=card)
    assert before.shape[2] > card >= after.shape[2]  # type shown at its native 11 px (labels wrap after arrows)
    assert grids.MIN_FIT_TILE >= 56 * card / before.shape[2]  # and the maps no smaller on screen than before
    assert min(sizes) == 11
    # many epochs: never wider than unfitted
    many = [f"ep{e}" for e in range(10)]
    assert (
        timeline_grid(frames * 2, many, labels, images01=images, fit_width=card).shape[2]
        <= timeline_grid(frames * 2, many, labels, images01=images).shape[2]
    )


def test_concept_grid_title_names_the_layer_once(monkeypatch):
    titles = []
    original = grids.legend_strip

    def spy(width, method, **kw):
        titles.append(method)
        return original(width, method, **kw)

    monkeypatch.setattr(grids, "legend_strip", spy)
    args = (torch.rand(1, 3, 32, 32), torch.randn(1, 2, 32, 32), torch.tensor([[3, 7]]), ["a"])
    concept_grid(*args, layer="net.layer3", method="CRP top-2 at net.layer3")
    concept_grid(*args, layer="net.layer3", method="CRP")
    assert titles[0] == "CRP top-2 concepts at net.layer3" and titles[1] == "CRP concepts of layer net.layer3"


# ---------------------------------------------------------------------------------------------------- verdict


def test_verdict_text_and_series_follow_the_alert():
    history = _history([0.05, 0.4, 0.45], removal=[0.01, 0.2, 0.3])
    series = effect_series(history, "ring", "melanoma")
    assert series.epochs == [0, 1, 2] and set(series.effects) == {"insertion", "removal"}
    assert series.intervals["insertion"][0][1] == pytest.approx(0.35)
    headline, detail = verdict_text(series, "ring", "melanoma", alert_epoch=1, threshold=0.15)
    assert headline.startswith("SHORTCUT after 2 epochs") and "by 0.45" in detail and "after 3 epochs" in detail
    quiet, _ = verdict_text(effect_series(_history([0.0, 0.05]), "ring", "melanoma"), "ring", "melanoma", None, 0.15)
    assert quiet.startswith("No shortcut alert")
    watch, _ = verdict_text(effect_series(_history([0.0, 0.5]), "ring", "melanoma"), "ring", "melanoma", None, 0.15)
    assert watch.startswith("WATCH")
    assert lead_key(history, [{"artifact": "ring", "class": "melanoma", "epoch": 1}]) == ("ring", "melanoma")
    assert lead_key([], []) is None


def _ink_rows(image: torch.Tensor, top: int, bottom: int) -> int:
    """Height in pixels of the dark (text) ink between rows ``top`` and ``bottom`` of a picture."""
    dark = (image[:, top:bottom].int().amax(0) < 90).any(1).nonzero().flatten()
    return int(dark.max() - dark.min() + 1) if dark.numel() else 0


def test_verdict_picture_text_is_at_least_12_px_as_tensorboard_shows_it_and_colours_the_banner():
    from lit_xai.visualization.text import _font
    from lit_xai.visualization.verdict import CARD_HEIGHT, CARD_WIDTH, MIN_TEXT_PX, displayed_scale, verdict_fonts

    mask = torch.zeros(48, 48, dtype=torch.bool)
    mask[8:20, 8:20] = True
    probe = ProbeStrip(torch.rand(3, 48, 48), [torch.randn(48, 48) for _ in range(8)], list(range(8)), mask=mask,
                       caption="val #3 (melanoma, ring): LRP for 'melanoma'")
    effects = {"insertion": [0.0, 0.3, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4]}
    epochs = list(range(8))
    long_detail = "inserting the ring raises P(melanoma) by 0.40 beyond a sham edit " * 4
    alert = verdict_picture("SHORTCUT after 2 epochs " * 6, epochs, effects, threshold=0.15, alert_epoch=1, probe=probe,
                            detail=long_detail)
    clear = verdict_picture("No shortcut alert", list(range(8)), effects, threshold=0.15, detail=long_detail)
    # the real criterion: TensorBoard shows a picture in TIME SERIES fitted into a CARD_WIDTH x CARD_HEIGHT box and in
    # IMAGES at the card width (both measured, see the constants); every font, scaled so, is MIN_TEXT_PX or more
    for picture in (alert, clear, verdict_picture("x", epochs, effects, width=900, probe=probe)):
        height, width = picture.shape[1:]
        assert width / height >= CARD_WIDTH / CARD_HEIGHT - 0.01, "taller than the card: TIME SERIES shrinks it"
        assert verdict_fonts(width).smallest * displayed_scale(width, height) >= MIN_TEXT_PX - 0.05
    # ... and the fonts are what gets drawn: the banner's headline ink is as tall as that font's glyphs
    font = _font(verdict_fonts(alert.shape[2]).headline)
    top, bottom = font.getbbox("SHORTCUT")[1], font.getbbox("SHORTCUT")[3]
    assert _ink_rows(alert, 0, 12 + bottom) >= 0.9 * (bottom - top)
    assert (bottom - top) * displayed_scale(*alert.shape[:0:-1]) >= 0.7 * MIN_TEXT_PX  # capitals: ~0.73 of the size
    assert _has_colour(alert[:, :30], (255, 222, 218), tol=0) and _has_colour(clear[:, :30], (222, 244, 224), tol=0)
    assert _has_colour(alert, (200, 0, 0), tol=2)  # the alert marker on the chart
    watch = verdict_picture("WATCH: ...", list(range(8)), effects, threshold=0.15, watch=True)
    assert _has_colour(watch[:, :30], (255, 238, 200), tol=0)


def test_verdict_picture_outlines_the_artifact_and_measures_relevance_inside_it():
    from lit_xai.visualization import MASK_RGB
    from lit_xai.visualization.verdict import relevance_share

    mask = torch.zeros(48, 48, dtype=torch.bool)
    mask[10:20, 10:20] = True
    inside = torch.zeros(48, 48)
    inside[12:18, 12:18] = 1.0
    spread = torch.ones(48, 48)
    assert relevance_share(inside, mask) == 1.0
    assert abs(relevance_share(spread, mask) - 100 / 48**2) < 1e-6
    assert relevance_share(-spread, mask) != relevance_share(-spread, mask)  # NaN: no positive relevance
    assert relevance_share(inside[::2, ::2], mask) == 1.0  # a coarser map: the mask follows it
    effects = {"insertion": [0.0, 0.3, 0.4]}
    intervals = {"insertion": ([-0.1, 0.2, 0.3], [0.1, 0.4, 0.5])}

    def picture(newest: torch.Tensor) -> torch.Tensor:
        strip = ProbeStrip(torch.rand(3, 48, 48, generator=torch.Generator().manual_seed(0)), [spread, newest],
                           [0, 2], mask=mask)
        return verdict_picture("SHORTCUT", [0, 1, 2], effects, intervals=intervals, threshold=0.15, alert_epoch=1,
                               probe=strip)

    focused, diffuse = picture(inside), picture(spread)
    assert _has_colour(focused, MASK_RGB, tol=0)
    # the printed share differs with the map (100 % vs 4 %): the text pixels of the side column differ
    assert (focused != diffuse).float().mean() > 0.01
    without = verdict_picture("SHORTCUT", [0, 1, 2], effects, intervals=intervals, threshold=0.15, alert_epoch=1)
    assert not _has_colour(without, MASK_RGB, tol=0)


def test_verdict_picture_shows_an_unnamed_artifacts_members_and_its_mask():
    images = torch.full((10, 3, 48, 48), 0.5)
    mask = torch.zeros(48, 48, dtype=torch.bool)
    mask[4:20, 4:28] = True
    strip = CandidateStrip(images, mask, "members of unnamed artifact 1 of class 'melanoma'", ids=list(range(10)))
    effects = {"insertion": [0.0, 0.3, 0.4]}
    plain = verdict_picture("SHORTCUT after 2 epochs", [0, 1, 2], effects, threshold=0.15, alert_epoch=1)
    shown = verdict_picture(
        "SHORTCUT after 2 epochs", [0, 1, 2], effects, threshold=0.15, alert_epoch=1, candidate=strip
    )
    assert shown.shape[2] == plain.shape[2] and shown.shape[1] > plain.shape[1]
    assert torch.equal(shown[:, : plain.shape[1] - 10], plain[:, : plain.shape[1] - 10])  # added under, nothing moved
    below = shown[:, plain.shape[1] :]
    assert _has_colour(below, MASK_RGB, tol=0)  # the outline on every member
    tinted = tuple(round(0.5 * 127.5 + 0.5 * c) for c in MASK_RGB)  # the mask tile: the median image tinted
    assert _has_colour(below, tinted, tol=2) and not _has_colour(plain, tinted, tol=2)
    strip_alone = candidate_strip(strip, 480)
    assert strip_alone.width == 480
    with pytest.raises(ValueError, match="must match"):
        CandidateStrip(images, mask[:10])
    with pytest.raises(ValueError, match="ids"):
        CandidateStrip(images, mask, ids=[1, 2])


def test_shortcut_monitor_verdict_from_its_history_names_the_alert_epoch():
    mon = ShortcutMonitor(verbose=False)
    mon.history = _history([0.05, 0.4, 0.45])
    mon.alerts = [{"artifact": "ring", "class": "melanoma", "epoch": 1, "message": "..."}]
    picture = mon._verdict("LRP (epsilon_gamma_box)")
    assert mon.verdict_tag == "XAI/0_verdict"
    assert picture is not None and "after 2 epochs" in picture.caption
    assert _has_colour(picture.image[:, :30], (255, 222, 218), tol=0)
    assert ShortcutMonitor(verbose=False)._verdict("LRP") is None  # nothing measured yet: no empty picture


def test_flagged_probe_captions_name_true_and_predicted_class_with_probability():
    caption = _probe_caption(12, ["benign", "melanoma"], 1, torch.tensor([0.07, 0.93]))
    assert caption == "val #12 | true melanoma | pred melanoma (p=0.93)"


def test_audit_summary_folds_identical_annotations_into_the_detector_line():
    def association(name, agreement=None):
        return ArtifactAssociation(
            name, None, 10, 0.1, [0, 10], [0.0, 0.2], [0.0, 1.0], [0.6, 0.4], [0.5, 0.5], [0.0, 2.0], [0.0, 9.0],
            [1.0, 1e-5], predictive_classes=["melanoma"], agreement=agreement,
        )  # fmt: skip

    report = AuditReport(
        100, 0, [], ["benign", "melanoma"], "binary", [50, 50],
        {"ring": association("ring", {"precision": 1.0, "recall": 1.0}), "annotated": association("annotated")},
        ["ring: 100 % of images with ring are melanoma", "annotated: 100 % of images annotated are melanoma"], {},
    )  # fmt: skip
    text = report.summary()
    assert "annotated:" not in text and "annotations flag exactly these images" in text
    report.artifacts["ring"].agreement = {"precision": 0.8, "recall": 1.0}
    assert "annotated:" in report.summary()  # different flags stay two lines


# ---------------------------------------------------------------------------------------------------- the run


def test_epoch_metric_names_are_generic():
    names = epoch_metric_names(["val/acc", "val_loss", "test/f1", "train/loss", "val/acc_step", "epoch"])
    assert names == ["test/f1", "val/acc", "val_loss"]


@pytest.fixture(scope="module")
def first_screen_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("first_screen")
    seed_everything(0)
    dm = SyntheticShortcutDataModule(num_train=64, num_val=48, num_test=16, image_size=32, batch_size=32, seed=0)
    model = ImageClassifier("tiny_resnet", num_classes=2, task="binary", class_names=["benign", "melanoma"])
    explanation = ExplanationMonitor(explainers=("lrp", "gradcam"), probes=4, verbose=False, pictures=Pictures(tile=32))
    shortcut = ShortcutMonitor(
        budget=ShortcutBudget(audit_max_samples=64, pool_size=48, num_probes=2, num_counterfactual=8, spray_samples=8),
        discovery=Discovery(every_n_epochs=0),
        verbose=False,
    )
    trainer = Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=TensorBoardLogger(str(tmp_path), name="run", default_hp_metric=False),
        callbacks=[explanation, shortcut],
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
    )
    trainer.fit(model, dm)
    trainer.test(model, dm)
    files = sorted(Path(tmp_path).rglob("events.out.tfevents.*"))
    acc = EventAccumulator(str(files[0].parent), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    acc.Reload()
    return acc, explanation, shortcut


def test_verdict_is_the_first_picture_of_the_xai_group(first_screen_run):
    acc, _, _ = first_screen_run
    cards = sorted(t for kind in ("images", "scalars") for t in acc.Tags()[kind] if t.startswith("XAI/"))
    assert cards[0] == "XAI/0_verdict", cards[:3]
    assert [e.step for e in acc.Images("XAI/0_verdict")] == [1, 2]  # every measured epoch, at the epoch step
    assert "XAI/drift" in acc.Tags()["images"] and "XAI/lrp/timeline" in acc.Tags()["images"]


def test_no_flag_or_count_scalars_and_shortcut_scalars_beside_drift(first_screen_run):
    acc, _, _ = first_screen_run
    scalars = acc.Tags()["scalars"]
    for tag in scalars:
        assert not tag.endswith(("spray_flagged", "/alerts", "suspicious")), tag
        assert not tag.startswith("XAI/shortcut/"), tag  # raw shortcut curves live in XAI_shortcut/
    assert any(t.startswith("XAI_shortcut/ring/") and t.endswith("insertion_effect") for t in scalars), scalars


def test_val_and_test_metrics_at_the_xai_epoch_steps(first_screen_run):
    acc, _, _ = first_screen_run
    scalars = acc.Tags()["scalars"]
    assert [e.step for e in acc.Scalars("XAI/1_epoch/val/acc")] == [1, 2]
    drift_steps = [e.step for e in acc.Scalars("XAI_drift/lrp/ssim_prev")]
    assert [e.step for e in acc.Scalars("XAI/1_epoch/val/acc")] == drift_steps
    assert [e.step for e in acc.Scalars("XAI/2_epoch/test/acc")] == [2]
    values = [e.value for e in acc.Scalars("XAI/1_epoch/val/acc")]
    assert all(0.0 <= v <= 1.0 and math.isfinite(v) for v in values)
    assert not any(t.startswith(("quality/1_epoch", "quality/2_epoch")) for t in scalars)  # once, not per monitor
    # TensorBoard sorts by name: every validation curve before the single test point, right after the verdict
    copies = sorted(t for t in scalars if t.startswith(("XAI/1_epoch/", "XAI/2_epoch/")))
    stages = [t.split("/")[2] for t in copies]
    assert stages == ["val"] * stages.count("val") + ["test"] * stages.count("test") and "test" in stages


def test_custom_scalars_have_no_empty_roi_chart_and_no_drift_or_alert_chart(first_screen_run):
    from tensorboard.plugins.custom_scalar import layout_pb2

    acc, _, _ = first_screen_run
    layout = layout_pb2.Layout()
    layout.ParseFromString(acc.Tensors("custom_scalars__config__")[0].tensor_proto.string_val[0])
    titles = [chart.title for category in layout.category for chart in category.chart]
    assert titles and not any("ROI" in t or "alert" in t or "drift" in t for t in titles), titles
