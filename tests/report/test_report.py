"""The run report: built at fit end from a tiny real fit (TensorBoard, and logger=False with the fallback folder),
self-contained (every picture a data: URI, no request possible), complete (every logged picture and scalar series
is in it, checked against tensorboard's own reader and the monitors' JSON), and the fallback folder's index and
scalars CSV; and the same report in headless Chromium (skipped without one on PATH): title and verdict shown, every
picture decoded, no sideways overflow, no console error, no request but the page itself."""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import re
import warnings
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from _browser import find_chromium, inspect_page
from _report_runs import tiny_run
from PIL import Image

from lit_xai.cli import tool_main
from lit_xai.report import read_run, write_report
from lit_xai.report.charts import line_chart
from lit_xai.report.render import CSP, STRIP_STEPS, section_of


class _Page(HTMLParser):
    """Every tag's attributes, the page's text and the CSP meta of an HTML page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def of(self, name: str) -> list[dict[str, str]]:
        return [attrs for tag, attrs in self.tags if tag == name]


@pytest.fixture(scope="module")
def tb_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tb")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = tiny_run(root, tensorboard=True)
    return Path(trainer.logger.log_dir)


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("folder")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tiny_run(root, tensorboard=False)
    return root


def assert_self_contained(page: _Page, html: str) -> None:
    """No attribute anywhere names a URL the browser could fetch; pictures are data: URIs that decode."""
    assert ("meta", {"http-equiv": "Content-Security-Policy", "content": CSP}) in page.tags
    assert not page.of("script") and not page.of("link") and not page.of("iframe") and not page.of("object")
    for tag, attrs in page.tags:
        for name, value in attrs.items():
            if name in ("src", "href", "srcset", "poster", "data", "action", "xlink:href"):
                assert value.startswith(("data:image/", "#")), f"<{tag} {name}={value[:60]!r}> could be fetched"
    assert not re.search(r"url\(|@import|https?://", html.split("<body", 1)[0]), "the CSS could fetch something"
    for img in page.of("img"):
        head, data = img["src"].split(",", 1)
        assert head in ("data:image/png;base64", "data:image/jpeg;base64")
        with Image.open(io.BytesIO(base64.b64decode(data))) as picture:
            picture.load()
            assert picture.width > 0 and picture.height > 0


def _decode(src: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB")


def assert_pictures_shown(page: _Page, logged: dict[str, int]) -> None:
    """Each tag's newest picture, and a strip of at most STRIP_STEPS earlier ones (none for a timeline or the verdict,
    whose newest picture holds every epoch)."""

    def earlier(tag: str, count: int) -> int:
        return 0 if "timeline" in tag or "verdict" in tag else min(count - 1, STRIP_STEPS)

    alts = [img["alt"] for img in page.of("img")]
    for tag, count in logged.items():
        mine = [a for a in alts if a.startswith(f"{tag}, step ")]
        assert sum(a.endswith("(newest)") for a in mine) == 1, tag
        assert len(mine) == 1 + earlier(tag, count), (tag, mine)
    assert len(alts) == sum(1 + earlier(t, c) for t, c in logged.items())


def test_fit_end_report_from_tensorboard_is_complete_and_self_contained(tb_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    html = (tb_run / "report.html").read_text(encoding="utf-8")
    page = _Page(html)
    assert_self_contained(page, html)
    # the reference: tensorboard's own reader of the same event files
    acc = EventAccumulator(str(tb_run), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    acc.Reload()
    logged_images = {tag: len(acc.Images(tag)) for tag in acc.Tags()["images"]}
    assert logged_images, "the fit logged no pictures"
    assert_pictures_shown(page, logged_images)
    run = read_run(tb_run)
    assert {t: len(v) for t, v in run.images.items()} == logged_images
    # the embedded (JPEG) newest picture looks like the logged PNG
    for tag, events in ((t, acc.Images(t)) for t in logged_images):
        alt = f"{tag}, step {events[-1].step} (newest)"
        shown = next(img for img in page.of("img") if img["alt"] == alt)
        logged = np.asarray(Image.open(io.BytesIO(events[-1].encoded_image_string)).convert("RGB"), dtype=float)
        embedded = np.asarray(_decode(shown["src"]), dtype=float)
        assert embedded.shape == logged.shape and np.abs(embedded - logged).mean() < 4, tag
    for tag in acc.Tags()["scalars"]:
        expected = sorted(((e.step, e.value) for e in acc.Scalars(tag) if math.isfinite(e.value)), key=lambda p: p[0])
        assert [(s, pytest.approx(v)) for s, v in expected] == run.scalars[tag], tag
    # the verdict comes first and agrees with the monitor's JSON
    report = json.loads((tb_run / "shortcut_report.json").read_text())
    verdict = html.index('id="verdict-text"')
    assert verdict < html.index('id="audit"') < html.index('id="probes"')
    sentence = re.search(r'id="verdict-text">([^<]+)<', html).group(1)
    assert ("Shortcut found" in sentence) == bool(report["alerts"])
    assert all(f"epoch {a['epoch']}" in html for a in report["alerts"])


def test_fallback_folder_index_and_scalars_csv(folder_run):
    folder = folder_run / "xai_images"
    pictures = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("step_*.png"))
    texts = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("step_*.md"))
    assert pictures and texts
    index = _Page((folder / "index.html").read_text(encoding="utf-8"))
    links = {a["href"] for a in index.of("a") if not a["href"].startswith("#")}
    assert set(pictures) | set(texts) | {"scalars.csv"} <= links
    assert all((folder / link).is_file() for link in links)
    # the scalars: without any logger this CSV is the only place they are kept; they agree with the monitor's JSON
    with open(folder / "scalars.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and set(rows[0]) == {"step", "tag", "value"}
    tags = {r["tag"] for r in rows}
    assert any(t.startswith("XAI_drift/") for t in tags) and any(t.startswith("XAI_shortcut/") for t in tags)
    history = json.loads((folder_run / "shortcut_report.json").read_text())["history"]
    ratios = {(r["tag"], int(r["step"])): float(r["value"]) for r in rows if r["tag"].endswith("/relevance_ratio")}
    checked = 0
    for entry in history:
        tag = f"XAI_shortcut/{entry['artifact']}/{entry['class']}/relevance_ratio"
        if isinstance(entry.get("relevance_ratio"), float) and math.isfinite(entry["relevance_ratio"]):
            assert ratios[(tag, entry["epoch"] + 1)] == pytest.approx(entry["relevance_ratio"])
            checked += 1
    assert checked > 0


def test_fallback_report_holds_every_picture(folder_run):
    html = (folder_run / "report.html").read_text(encoding="utf-8")
    page = _Page(html)
    assert_self_contained(page, html)
    logged: dict[str, int] = {}
    for png in (folder_run / "xai_images").rglob("step_*.png"):
        tag = png.parent.relative_to(folder_run / "xai_images").as_posix()
        logged[tag] = logged.get(tag, 0) + 1
    assert_pictures_shown(page, logged)
    assert 'id="verdict-text"' in html and "<svg" in html and 'id="drift"' in html


def test_cli_report(tb_run, tmp_path, capsys):
    out = tmp_path / "shared" / "r.html"
    assert tool_main(["report", str(tb_run), "-o", str(out), "--title", "my run"]) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and re.search(r"\d+\.\d\d MB", printed) and re.search(r"in \d+\.\d\d s", printed)
    assert "<title>my run</title>" in out.read_text(encoding="utf-8")
    lossless = write_report(tb_run, tmp_path / "lossless.html", lossless=True)
    assert lossless.size_bytes > out.stat().st_size  # the JPEGs are what keeps the default small
    assert tool_main(["report", str(tmp_path / "missing")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_run_report_never_fails_the_training(tmp_path):
    from lightning.pytorch import Trainer
    from lightning.pytorch.demos.boring_classes import BoringModel

    from lit_xai.callbacks import RunReport

    (tmp_path / "blocked").write_text("a file where the report's folder would be")
    trainer = Trainer(
        default_root_dir=tmp_path,
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=1,
        logger=False,
        callbacks=[RunReport(filename="blocked/report.html")],
        enable_progress_bar=False,
        enable_checkpointing=False,
    )
    with pytest.warns(UserWarning, match="RunReport: could not write the report"):
        trainer.fit(BoringModel())
    assert trainer.state.finished


def test_sections_and_charts():
    assert section_of("XAI/0_verdict", "image") == "verdict"
    assert section_of("XAI_shortcut/ring/melanoma/insertion_effect", "scalar") == "alerts"
    assert section_of("XAI/1_epoch/val/auroc", "scalar") == "training"
    assert section_of("XAI/2_epoch/test/acc", "scalar") == "training"
    assert section_of("XAI_drift/crp/conserved", "scalar") == "drift"
    assert section_of("XAI/crp/concepts", "image") == "crp"
    # a 0/1 flag is drawn as steps (a vertical segment at the change), a measurement as a straight slope
    flag = line_chart({"flag": [(1, 0.0), (2, 1.0)]})
    slope = line_chart({"m": [(1, 0.2), (2, 0.7)]})
    points = [tuple(p.split(",")) for p in re.search(r'polyline points="([^"]+)"', flag).group(1).split()]
    assert len(points) == 3 and points[1][0] == points[2][0] and points[0][1] == points[1][1]
    assert len(re.search(r'polyline points="([^"]+)"', slope).group(1).split()) == 2
    # two series: two colours and a legend; the threshold is drawn between the values it separates
    both = line_chart({"LRP": [(1, 0.0), (2, 1.0)], "Grad-CAM": [(1, 0.5), (2, 0.5)]}, threshold=0.25)
    assert len(set(re.findall(r'polyline points="[^"]+" fill="none" stroke="(#[0-9A-F]+)"', both))) == 2
    assert "LRP</span>" in both and "Grad-CAM</span>" in both
    y_threshold = float(re.search(r'y1="([\d.]+)" y2="[\d.]+" stroke="#444"', both).group(1))
    ys = sorted(float(y) for y in re.findall(r'<circle cx="[\d.]+" cy="([\d.]+)"', both))
    assert ys[0] < y_threshold < ys[-1]
    # intervals are a band around their series (a Margin chart's shading): a polygon spanning every point's bounds
    banded = line_chart({"m": [(1, 0.2), (2, 0.5), (3, 0.6)]}, intervals={"m": [(1, 0.1, 0.3), (2, 0.4, 0.6),
                                                                                (3, 0.5, 0.7)]})
    band = [tuple(map(float, p.split(","))) for p in re.search(r'<polygon points="([^"]+)"', banded).group(1).split()]
    line_ys = [float(y) for y in re.findall(r'<circle cx="[\d.]+" cy="([\d.]+)"', banded)]
    assert len(band) == 6 and min(y for _, y in band) < min(line_ys) and max(y for _, y in band) > max(line_ys)
    assert banded.index("<polygon") < banded.index("<polyline")  # under the line


chromium = pytest.mark.skipif(find_chromium() is None, reason="no chromium on PATH (apt-get install chromium)")


def _foreign_requests(facts: dict, page: Path) -> list[str]:
    return [u for u in facts["requests"] if u != page.resolve().as_uri() and not u.startswith("data:")]


@chromium
def test_browser_harness_sees_each_broken_rule(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<!doctype html><title>bad</title><p id="verdict-text">v</p><img src="http://127.0.0.1:9/x.png">'
        '<script>console.error("boom")</script><div style="width:3000px">wide</div>'
    )
    facts = inspect_page(bad)
    assert _foreign_requests(facts, bad) == ["http://127.0.0.1:9/x.png"]
    assert "boom" in facts["console_errors"]
    assert facts["images"][0]["width"] == 0
    assert facts["scrollWidth"] > facts["clientWidth"]


@chromium
def test_report_renders_in_chromium(tb_run):
    page = tb_run / "report.html"
    facts = inspect_page(page, width=1280)
    assert facts["title"].startswith("lit_xai report: ")
    assert facts["verdict"] and ("Shortcut found" in facts["verdict"] or "No shortcut" in facts["verdict"])
    assert facts["sections"][:2] == ["Verdict", "Dataset audit"]
    assert facts["images"], "the report shows no picture"
    for image in facts["images"]:
        assert image["complete"] and image["width"] > 0 and image["height"] > 0 and image["scheme"] == "data"
        assert image["shown"] <= facts["clientWidth"]
    assert facts["scrollWidth"] <= facts["clientWidth"], "the page scrolls sideways at 1280 px"
    assert facts["svgs"] > 0 and facts["scripts"] == 0
    assert facts["console_errors"] == [] and facts["exceptions"] == []
    assert _foreign_requests(facts, page) == []
    # a narrow laptop window (and a phone) still does not overflow
    narrow = inspect_page(page, width=800)
    assert narrow["scrollWidth"] <= narrow["clientWidth"]


def test_audit_table_folds_the_annotations_a_detector_matches_exactly(tmp_path):
    from html import unescape

    import torch

    from lit_xai.artifacts import insert_ring
    from lit_xai.artifacts.audit import audit_dataset
    from lit_xai.report.render import render_report
    from lit_xai.report.run_data import RunData

    skin = torch.tensor([0.85, 0.62, 0.5])[None, :, None, None].expand(40, 3, 32, 32).clone()
    ringed, _ = insert_ring(skin[:20], torch.Generator().manual_seed(0))
    images = torch.cat([ringed, skin[20:]])
    # the annotations flag exactly the ringed images, then also one clean image (the detector no longer matches)
    for extra, rows in ((0, 1), (1, 2)):
        items = [{"image": img, "target": int(i < 20), "artifact": i < 20 + extra} for i, img in enumerate(images)]
        audit = audit_dataset(items, class_names=["benign", "melanoma"], task="binary").to_dict()
        html = render_report(RunData(tmp_path, "folder", shortcut={"audit": audit}))
        cells = [unescape(c) for c in re.findall(r"<tr><td>([^<]*)</td>", html) if c.startswith(("ring", "annotated"))]
        assert len(cells) == rows, cells
        assert (cells == ["ring (= the dataset's annotations)"]) == (rows == 1)


def test_logged_effect_scalars_are_charted_with_their_interval_band_threshold_and_alert():
    from lit_xai.report import RunData, render_report

    prefix = "XAI_shortcut/ring/melanoma"
    effect = [(1, 0.1), (2, 0.5), (3, 0.6)]
    run = RunData(
        Path("."), "folder",
        scalars={
            f"{prefix}/insertion_effect": effect,
            f"{prefix}/insertion_effect_lower": [(s, v - 0.1) for s, v in effect],
            f"{prefix}/insertion_effect_upper": [(s, v + 0.1) for s, v in effect],
            f"{prefix}/alert": [(1, 0.0), (2, 0.15), (3, 0.0)],
        },
        shortcut={"criteria": {"min_effect": 0.15}, "history": [], "alerts": []},
    )
    page = render_report(run)
    chart = re.search(r"<svg[^>]*>(?:(?!</svg>).)*insertion_effect(?:(?!</svg>).)*</svg>", page, re.S).group(0)
    assert "<polygon" in chart and 'stroke="#444"' in chart and "threshold 0.15" in chart
    assert chart.count('stroke="#C00000"') == 1  # one alert, at epoch 2 done
    assert "epochs done" in chart


def test_test_metrics_after_fit_sit_at_the_epochs_the_model_was_trained_for():
    from lit_xai.report import RunData
    from lit_xai.report.render import _on_epoch_axis

    # Lightning after fit(max_epochs=2): epoch 0 at steps 4, 9; epoch 1 at 14, 19; test() logs epoch 2 at step 20
    epoch = [(4, 0.0), (9, 0.0), (14, 1.0), (19, 1.0), (20, 2.0)]
    run = RunData(Path("."), "folder", scalars={
        "epoch": epoch, "train/loss_step": [(4, 0.5), (9, 0.4), (14, 0.3), (19, 0.2)], "val/acc": [(9, 0.6), (19, 0.7)],
        "test/acc": [(20, 0.69)],
    })  # fmt: skip
    assert _on_epoch_axis(run, "test/acc")[0] == [(2.0, 0.69)]
    assert _on_epoch_axis(run, "val/acc")[0] == [(1.0, 0.6), (2.0, 0.7)]
    # without train/ metrics to tell, the old rule: every logged epoch number counts as trained
    del run.scalars["train/loss_step"]
    assert _on_epoch_axis(run, "test/acc")[0] == [(3.0, 0.69)]


def test_compact_image_re_encodes_a_logged_picture_once_until_cleared(monkeypatch):
    """RunReport writes the report at fit end and again after the test: a picture logged before fit end is
    re-encoded once (the same bytes both times), and the cache is emptied after the last report."""
    from lit_xai.report import render
    from lit_xai.report.run_data import ImageEntry

    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (64, 300, 3), dtype=np.uint8)).save(buffer, format="PNG")
    entry = ImageEntry(step=1, data=buffer.getvalue())
    render.clear_image_cache()
    saves = []
    real_save = Image.Image.save
    monkeypatch.setattr(Image.Image, "save", lambda self, *a, **k: saves.append(1) or real_save(self, *a, **k))
    first = render.compact_image(entry, max_width=260)
    again = render.compact_image(ImageEntry(step=1, data=bytes(entry.data)), max_width=260)  # equal bytes, new entry
    assert first == again and first[0] == "image/jpeg" and len(saves) == 1
    assert render.compact_image(entry, max_width=None) != first and len(saves) == 2  # another width: encoded
    render.clear_image_cache()
    assert render.compact_image(entry, max_width=260) == first and len(saves) == 3
