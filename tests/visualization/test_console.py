"""What the monitors print: an alert is one block of short lines, and the end-of-fit summary says per class shortcut /
clean / not judged, with the evidence, the report's path and the TensorBoard command (issue 30.5)."""

from __future__ import annotations

from lit_xai.visualization.console import RULE, alert_block, fit_summary


def _test(effect: float, low: float, high: float, n: int, sham: float = -0.01) -> dict:
    return {"effect": effect, "interval": [low, high], "n": n, "sham_shift": sham, "split": "val", "confidence": 0.95}


def _entry(epoch: int, cls: str, ins: float, rem: float) -> dict:
    return {
        "epoch": epoch, "artifact": "ring", "class": cls,
        "counterfactual": _test(ins, ins - 0.03, ins + 0.03, 64), "removal": _test(rem, rem - 0.05, rem + 0.05, 38),
    }  # fmt: skip


def test_alert_block_names_class_artifact_epoch_and_each_test_with_its_interval() -> None:
    alert = {"artifact": "ring", "class": "melanoma", "epoch": 1, "evidence": {**_entry(1, "melanoma", 0.61, 0.31)}}
    alert["evidence"]["relevance_ratio"] = 2.1
    text = alert_block(alert, where="TensorBoard XAI/0_verdict; run/shortcut_report.json")
    lines = text.splitlines()
    assert lines[0] == lines[-1] == RULE and all(len(line) <= 120 for line in lines)
    assert lines[1] == "SHORTCUT ALERT at epoch 1: the model relies on the ring for 'melanoma'"
    assert "insertion  +0.61 (95 % CI +0.58 to +0.64)" in lines[2] and "64 clean val images" in lines[2]
    assert "removal    +0.31 (95 % CI +0.26 to +0.36)" in lines[3] and "38 'melanoma' val images" in lines[3]
    assert "2.1x" in lines[4] and "shortcut_report.json" in lines[5]
    assert "Warning" not in text


def test_alert_block_without_causal_tests_quotes_the_rule() -> None:
    alert = {"artifact": "roi", "class": "covid", "epoch": 3, "evidence": {"outside_share": 0.7},
             "message": "the model's evidence for 'covid' lies outside the region of interest"}  # fmt: skip
    text = alert_block(alert)
    assert "epoch 3" in text and "outside the region of interest" in text


def test_fit_summary_per_class() -> None:
    history = [_entry(0, "melanoma", 0.40, 0.20), _entry(1, "melanoma", 0.61, 0.31), _entry(1, "nevus", 0.05, 0.02)]
    alerts = [{"artifact": "ring", "class": "melanoma", "epoch": 1, "evidence": history[1]}]
    text = fit_summary(
        ["benign", "melanoma", "nevus"], history, alerts, report="run/report.html", logdir="lightning_logs/demo/v0"
    )
    lines = {line.split()[0]: line for line in text.splitlines()[2:-1]}
    assert "SHORTCUT" in lines["melanoma"] and "since epoch 1" in lines["melanoma"]
    assert "insertion +0.61 (95 % CI +0.58 to +0.64)" in lines["melanoma"] and "at epoch 1" in lines["melanoma"]
    assert "clean" in lines["nevus"] and "+0.05" in lines["nevus"] and "no alert" in lines["nevus"]
    assert "not judged" in lines["benign"]
    assert lines["report"].endswith("run/report.html")
    assert lines["look"].endswith("tensorboard --logdir lightning_logs/demo/v0 --samples_per_plugin images=1000")


def test_notify_prints_when_the_progress_bar_is_closed(capsys) -> None:
    from types import SimpleNamespace

    from lightning.pytorch.callbacks import TQDMProgressBar

    from lit_xai.callbacks.sinks import notify

    bar = TQDMProgressBar()  # no bar shown (as at fit end, after Lightning closed them): its print would drop it
    trainer = SimpleNamespace(is_global_zero=True, progress_bar_callback=bar)
    notify(trainer, "the summary")
    assert "the summary" in capsys.readouterr().out
    notify(SimpleNamespace(is_global_zero=False, progress_bar_callback=None), "rank 1")
    assert capsys.readouterr().out == ""
