"""One vocabulary (docs/architecture.md): every deprecated spelling still works, warns naming its replacement and is
in the table; the README's callback configs instantiate in the current words without a deprecation warning."""

from __future__ import annotations

import copy
import re
import warnings
from pathlib import Path

import pytest
import yaml

from lit_xai._moved import LitXaiDeprecationWarning
from lit_xai.callbacks import ShortcutMonitor
from lit_xai.callbacks.correction import FLAT_ARGUMENTS
from lit_xai.cli import tool_main

ROOT = Path(__file__).resolve().parents[1]

#: every deprecated spelling outside ShortcutCorrection's flat arguments, as the table writes it
OTHER_OLD = ["ShortcutMonitor(detectors=)", "lit-xai audit --detectors", "lit-xai correct --cav_class"]


def _vocabulary_table() -> str:
    text = (ROOT / "docs" / "architecture.md").read_text()
    return text.split("## One vocabulary", 1)[1].split("\n## ", 1)[0]


def test_every_deprecated_spelling_is_in_the_vocabulary_table():
    table = _vocabulary_table()
    old_column = " ".join(line.rsplit("|", 2)[-2] for line in table.splitlines() if line.startswith("| "))
    missing = [f"ShortcutCorrection({old}=)" for old in FLAT_ARGUMENTS if not re.search(rf"\b{old}=", old_column)]
    missing += [o for o in OTHER_OLD if o not in old_column]
    assert not missing, f"deprecated spellings missing from docs/architecture.md's table: {missing}"


def test_shortcut_monitor_detectors_is_the_old_spelling_of_artifacts():
    with warnings.catch_warnings():
        warnings.simplefilter("error", LitXaiDeprecationWarning)
        new = ShortcutMonitor(artifacts=["ring", "dark_corners"])
    with pytest.warns(LitXaiDeprecationWarning, match=r"ShortcutMonitor\(detectors=\.\.\.\).*use artifacts="):
        old = ShortcutMonitor(detectors=["ring", "dark_corners"])
    assert old.artifacts == new.artifacts == old.detectors == ("ring", "dark_corners")
    assert old.state_key == new.state_key  # checkpoints of the old spelling restore
    with pytest.raises(ValueError, match="not both"), pytest.warns(LitXaiDeprecationWarning):
        ShortcutMonitor(artifacts=["dark_corners"], detectors=["ring"])
    with pytest.raises(ValueError, match="choose from"):
        ShortcutMonitor(artifacts=["rings"])


def test_audit_command_detectors_is_the_old_spelling_of_artifacts(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LIT_XAI_CACHE", str(tmp_path / "cache"))
    config = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    config["data"]["init_args"].update(num_train=96, num_val=32, num_test=32, image_size=48)  # a small demo
    demo = str(tmp_path / "demo.yaml")
    Path(demo).write_text(yaml.safe_dump(config, sort_keys=False))
    outputs = []
    for option in ("--artifacts", "--detectors"):
        out = tmp_path / f"{option.strip('-')}.json"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", LitXaiDeprecationWarning)
            code = tool_main(["audit", "--config", demo, "--max_samples", "48", option, "ring", "--output", str(out)])
        assert code == 0
        said = [str(w.message) for w in caught if issubclass(w.category, LitXaiDeprecationWarning)]
        assert said == ([] if option == "--artifacts" else [
            "lit-xai audit --detectors is deprecated and will be removed in the next release; use --artifacts"
        ])  # fmt: skip
        outputs.append(out.read_text())
    assert outputs[0] == outputs[1] and '"ring"' in outputs[0] and '"dark_corners"' not in outputs[0]
    with pytest.raises(SystemExit):
        tool_main(["audit", "--config", demo, "--artifacts", "ring", "--detectors", "ring"])
    assert "not both" in capsys.readouterr().err


def test_correct_command_cav_class_is_the_old_spelling_of_within_class(tmp_path, capsys):
    args = ["correct", "--ckpt", str(tmp_path / "missing.ckpt"), "--config", str(ROOT / "configs" / "demo.yaml")]
    with pytest.raises(SystemExit):
        tool_main([*args, "--within_class", "1", "--cav_class", "1"])
    assert "not both" in capsys.readouterr().err
    # the old option alone: warned, then read like the new one (here up to the missing checkpoint)
    with pytest.warns(LitXaiDeprecationWarning, match="use --within_class"), pytest.raises(Exception, match="missing"):
        tool_main([*args, "--cav_class", "1"])


def _readme_callback_configs() -> list[list[dict]]:
    blocks = re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    found = []
    for block in blocks:
        data = yaml.safe_load(block)
        callbacks = data.get("trainer", {}).get("callbacks") if isinstance(data, dict) else data
        if isinstance(callbacks, list) and all(isinstance(c, dict) and "class_path" in c for c in callbacks):
            found.append(callbacks)
    return found


def test_readme_callback_configs_instantiate_in_the_current_words(tmp_path, monkeypatch):
    from lit_xai.cli import build_cli

    monkeypatch.chdir(tmp_path)
    configs = _readme_callback_configs()
    assert len(configs) >= 2, "the README's callback configs (monitors, correction) were not found"
    demo = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    for i, callbacks in enumerate(configs):
        config = copy.deepcopy(demo)
        config["trainer"]["callbacks"] = callbacks
        path = tmp_path / f"readme_{i}.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        with warnings.catch_warnings():
            warnings.simplefilter("error", LitXaiDeprecationWarning)
            trainer = build_cli(["--config", str(path)]).trainer
        names = {type(cb).__name__ for cb in trainer.callbacks}
        assert {c["class_path"].rsplit(".", 1)[-1] for c in callbacks} <= names
