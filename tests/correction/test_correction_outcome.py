"""Whether a correction removed the shortcut: before (an uncorrected run's record) -> after, the accuracy cost, the
console text, and the run report naming the correction applied (issue 30.5)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lit_xai.report.outcome import correction_outcome, outcome_text, read_run_record
from lit_xai.report.render import render_report
from lit_xai.report.run_data import RunData


def _report(effects: list[float], alert: bool) -> dict:
    history = [
        {"epoch": e, "artifact": "ring", "class": "melanoma",
         "counterfactual": {"effect": v, "interval": [v - 0.02, v + 0.02]}}
        for e, v in enumerate(effects)
    ]  # fmt: skip
    alerts = [{"artifact": "ring", "class": "melanoma", "epoch": 1, "message": "relies on the ring"}] if alert else []
    return {"history": history, "alerts": alerts}


def test_gone_remains_and_no_baseline() -> None:
    before, fixed, broken = _report([0.4, 0.9, 0.95], True), _report([0.1, -0.02], False), _report([0.5, 0.6], True)
    gone = correction_outcome("A-ClArC", "ring", fixed, 0.978, before, 0.983, "runs/demo/version_0")
    assert gone["gone"] is True and gone["remains"] == []
    row = gone["classes"]["melanoma"]
    assert row["before"]["effect"] == 0.95 and row["after"]["effect"] == -0.02 and row["alert_before"]
    assert gone["accuracy_cost"] == pytest.approx(0.005)
    text = outcome_text(gone)
    assert "GONE after A-ClArC" in text and "+0.95 (95 % CI +0.93 to +0.97, epoch 2) -> -0.02" in text
    assert "0.983 -> 0.978 (cost +0.5 points)" in text and "runs/demo/version_0" in text
    remains = correction_outcome("RRR", "ring", broken, 0.9, before, 0.983, "runs/demo/version_0")
    assert remains["gone"] is False and "REMAINS for 'melanoma' after RRR" in outcome_text(remains)
    alone = correction_outcome("A-ClArC", "ring", fixed, 0.978)
    assert alone["gone"] is None and "no uncorrected run given" in outcome_text(alone)


def test_read_run_record_takes_the_newest_version_and_names_a_missing_one(tmp_path: Path) -> None:
    for version, effect in ((0, 0.5), (1, 0.9)):
        run = tmp_path / "demo" / f"version_{version}"
        run.mkdir(parents=True)
        (run / "shortcut_report.json").write_text(json.dumps(_report([effect], True)))
    folder, report, accuracy = read_run_record(tmp_path / "demo")
    assert folder.name in ("version_0", "version_1") and report["history"] and accuracy is None  # no event files
    assert read_run_record(tmp_path / "demo" / "version_0")[1]["history"][0]["counterfactual"]["effect"] == 0.5
    with pytest.raises(FileNotFoundError, match="train the uncorrected run first"):
        read_run_record(tmp_path / "nothing")


def test_the_report_says_which_correction_was_applied(tmp_path: Path) -> None:
    outcome = correction_outcome("A-ClArC (the ring drawn in)", "ring", _report([-0.02], False), 0.97,
                                 _report([0.95], True), 0.98, "runs/demo/version_0")  # fmt: skip
    run = RunData(tmp_path, "folder", shortcut=_report([-0.02], False), correction=outcome)
    page = render_report(run)
    assert 'id="correction"' in page and "Correction applied:</strong> A-ClArC (the ring drawn in)" in page
    assert "shortcut is GONE" in page


def test_the_alert_timeline_says_the_tests_measure_the_corrected_model(tmp_path: Path) -> None:
    corrected = RunData(tmp_path, "folder", shortcut=_report([-0.02], False),
                        correction={"method": "P-ClArC", "artifact": "ring"})  # fmt: skip
    plain = RunData(tmp_path, "folder", shortcut=_report([-0.02], False))
    note = 'class="correction-note"><strong>Correction applied:</strong> P-ClArC'
    assert note in render_report(corrected) and "correction-note" not in render_report(plain)
