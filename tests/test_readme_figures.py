"""README's figures about the demo come from scripts/readme_figures.py's committed output, never from a hand
(issue 30.2): every figure block of README.md must be exactly what docs/figures/demo.json renders to."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("readme_figures", ROOT / "scripts" / "readme_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_figures_file_holds_three_seeds_a_quiet_run_and_the_busy_core_runs() -> None:
    script = _script()
    figures = json.loads(script.FIGURES.read_text())
    runs = figures["runs"]
    seeded = [r for r in runs if r["monitors"] and not r["busy_core"] and not r.get("corrected")]
    assert sorted(r["seed"] for r in seeded) == sorted(figures["seeds"]) and len(seeded) == 3
    assert any(not r["monitors"] for r in runs)
    corrected = [r for r in runs if r.get("corrected")]
    assert len(corrected) == 1 and corrected[0]["correction"]["method"].startswith("A-ClArC")
    assert {r.get("forced_threads") for r in runs if r["busy_core"]} == {None, "all"}
    assert figures["machine"]["cores"] and figures["machine"]["cpu"] and figures["command"].startswith("python train")
    for r in seeded:
        assert r["wall_s"] > 0 and r["cpu_s"] > 0 and 0.5 < r["test_acc"] <= 1
        assert r["alert_epoch"] is not None and r["insertion"]["low"] <= r["insertion"]["effect"]


def test_every_readme_figure_block_is_rendered_from_the_figures_file() -> None:
    script = _script()
    figures = json.loads(script.FIGURES.read_text())
    text = (ROOT / "README.md").read_text()
    blocks = list(script.BLOCK.finditer(text))
    assert {m.group("name") for m in blocks} == {"install", "demo", "corrected"}
    for match in blocks:
        expected = script.render_block(match.group("name"), figures)
        assert match.group("body") == expected, (
            f"README block {match.group('name')!r} differs from docs/figures/demo.json: run "
            "`python scripts/readme_figures.py render` (or `run` after changing the demo)"
        )
    assert script.render_readme(figures, text) == text


def test_ranges_are_printed_from_the_values() -> None:
    script = _script()
    assert script._span([66.4, 69.2], ".0f", " s") == "66–69 s"
    assert script._span([0.981, 0.9812], ".2f") == "0.98"
    assert script._signed([0.58, 0.61]) == "+0.58 to +0.61"
