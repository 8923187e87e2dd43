"""The run report in a real browser: headless Chromium renders the report of a tiny real fit at 1280 px and the
page shows its title and verdict, decodes every picture, does not overflow sideways, logs no console error, throws
nothing and requests nothing but itself. Skipped when no Chromium is on PATH.

The harness is checked first on a page that breaks each rule, so a broken harness cannot pass the report."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from _browser import find_chromium, inspect_page
from _report_runs import tiny_run

pytestmark = pytest.mark.skipif(find_chromium() is None, reason="no chromium on PATH (apt-get install chromium)")


def _foreign_requests(facts: dict, page: Path) -> list[str]:
    return [u for u in facts["requests"] if u != page.resolve().as_uri() and not u.startswith("data:")]


def test_harness_sees_each_broken_rule(tmp_path):
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


def test_report_renders_in_chromium(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = tiny_run(tmp_path, tensorboard=True)
    page = Path(trainer.logger.log_dir) / "report.html"
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
