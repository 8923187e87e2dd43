"""Issue 32, item 1, through the callback: a planted artifact no registered detector knows (a bright square tag in
35 % of one class of a tiny shapes dataset) is found *and verified* by ``ShortcutMonitor`` (defaults, discovery on
the maps alone); the same data without the tag raises no alert."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _discovery_data import shapes_dataset, tiny_cnn
from lightning.pytorch import LightningDataModule, LightningModule, Trainer, seed_everything
from torch.utils.data import DataLoader, TensorDataset

from lit_xai.callbacks import ModelSpec, ShortcutMonitor
from lit_xai.shortcuts import Discovery

EPOCHS = 12


class Shapes(LightningDataModule):
    def __init__(self, tag: str | None) -> None:
        super().__init__()
        x, y, _, _ = shapes_dataset(tag=tag, seed=0)
        xv, yv, _, _ = shapes_dataset(tag=tag, seed=100)
        self.train, self.val = TensorDataset(x - 0.5, y), TensorDataset(xv - 0.5, yv)  # as train_tiny

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train, batch_size=32, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val, batch_size=64)


class Net(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = tiny_cnn(3, seed=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, _):
        x, y = batch
        return torch.nn.functional.cross_entropy(self(x), y)

    def validation_step(self, batch, _):
        pass

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=3e-3)


def fit(root: Path, tag: str | None) -> ShortcutMonitor:
    seed_everything(0)
    # defaults (detectors=("ring",), verification on) but the maps alone are clustered: with the concept relevances
    # beside them the tag's cluster scored 1.0-1.3 here, under their threshold (then 1.75; discovery recall, issue 32
    # item 2)
    mon = ShortcutMonitor(model=ModelSpec(input_range=(-0.5, 0.5)), discovery=Discovery(concepts=False), verbose=False)
    trainer = Trainer(
        max_epochs=EPOCHS, accelerator="cpu", logger=False, callbacks=[mon], enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, num_sanity_val_steps=0, default_root_dir=str(root),
    )  # fmt: skip
    trainer.fit(Net(), Shapes(tag))
    return mon


@pytest.mark.usefixtures("single_thread")
def test_an_unregistered_tag_is_verified_and_the_clean_control_is_not(tmp_path: Path) -> None:
    mon = fit(tmp_path / "tag", "square")
    alerts = [a for a in mon.alerts if a["artifact"].startswith("unnamed artifact")]
    assert alerts, (mon.alerts, [c.get("tested", {}).get("rule_reason") for c in mon.candidates])
    alert = alerts[0]
    assert alert["artifact"] == "unnamed artifact 1 of class '1'" and alert["class"] == "1"
    assert alert["message"].startswith("the model relies on unnamed artifact 1 of class '1'")
    assert "% CI" in alert["message"] and alert["candidate"]["twin"] is None
    report = json.loads((Path(mon._log_dir) / "shortcut_report.json").read_text())
    tested = [c["tested"] for c in report["candidates"] if "tested" in c]
    assert any(t["rule_met"] for t in tested) and all("counterfactual" in t for t in tested)
    assert all(t["selective"] is True for t in tested)  # the square tag's template tells members apart: it is used
    # the verdict picture names the unnamed artifact and shows its members (with their mask) and its evidence chart
    key = (alert["artifact"], alert["class"])
    strip = mon._candidate_strip(key)
    assert strip is not None and strip.ids is not None and set(strip.ids) <= set(alert["candidate"]["members"])
    share = float(strip.mask.float().mean())
    assert share == pytest.approx(alert["candidate"]["mask_share"]) and 0.0 < share < 0.5
    rows = [mon._pool.ids.index(i) for i in strip.ids]
    assert torch.equal(strip.images01, mon._pool.images01[rows])
    picture = mon._verdict("LRP")
    assert picture is not None and picture.caption.startswith("SHORTCUT after")
    assert "unnamed artifact 1" in picture.caption and "95 % CI" in picture.caption  # the series was found

    control = fit(tmp_path / "clean", None)
    assert control.alerts == [], [a["message"] for a in control.alerts]


def test_a_group_that_comes_back_below_the_threshold_is_tested_and_a_new_one_is_not() -> None:
    """Discovery.persist: the score of a real artifact group hovers around the threshold (the demo's ring at epoch 3:
    1.95 on one thread, 1.749 on two against 1.75); the same group at two discoveries is tested either way."""
    from lit_xai.shortcuts import ShortcutWatch
    from lit_xai.shortcuts.discovery import Candidate

    def cand(members: range, score: float, cls: int = 1) -> Candidate:
        m = list(members)
        return Candidate(class_index=cls, members=m, score=score, size=len(m), fraction=0.2, rows=m)

    watch = ShortcutWatch()
    first = cand(range(0, 28), 1.12)
    assert not watch.persists(first, 1.75)  # nothing before it
    watch._previous = {1: [(frozenset(first.members), first.score)]}
    assert watch.persists(cand(range(4, 34), 1.749), 1.75)  # Jaccard 24 / 34 with the last group
    assert not watch.persists(cand(range(20, 50), 1.749), 1.75)  # another group (Jaccard 8 / 50)
    assert not watch.persists(cand(range(4, 34), 1.25), 1.75)  # too weak now (< 0.75 x threshold)
    assert not watch.persists(cand(range(4, 34), 1.749, cls=0), 1.75)  # another class
    watch._previous = {1: [(frozenset(first.members), 0.7)]}
    assert not watch.persists(cand(range(4, 34), 1.749), 1.75)  # too weak then
    assert not ShortcutWatch(discovery=Discovery(persist=None)).persists(cand(range(4, 34), 1.749), 1.75)
    with pytest.raises(ValueError, match="persist"):
        Discovery(persist=0.0)


@pytest.mark.slow
@pytest.mark.parametrize("threads", [1, 2])
def test_demo_ring_is_verified_by_epoch_3_in_three_seeds_and_nothing_else_is(tmp_path: Path, threads: int) -> None:
    """Issue 32 item 3: the demo's monitor (configs/demo.yaml's data, model and ShortcutMonitor; default discovery
    and verification) verifies the ring, found without its detector, as a melanoma shortcut by epoch 3 in each of 3
    seeds, and verifies no other candidate; on 1 and on 2 torch threads (their rounding differs, and the demo's
    training with it). Measured (2026-12-06, ``python -m benchmarks discovery --demo-seeds --threads 1|2``): the ring's
    candidate meets the rule at epoch 3 (seed 42; score 1.95 on 1 thread, 1.749 on 2: tested there because it
    persists, Discovery.persist) and at epochs 1 and 3 (seeds 7 and 2026; purity 0.78-1.00), the ring detector's twin
    each time; no other candidate was tested. 70 s on 1 thread, 415 s on 2 (a busy machine)."""
    from _discovery_data import demo_discovery

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for seed in (42, 7, 2026):
            run = demo_discovery(0.3, str(tmp_path / str(seed)), max_epochs=4, seed=seed)
            ring = set(run["ring_ids"])

            def ring_share(c: dict, ring: set = ring) -> float:
                return sum(m in ring for m in c["members"]) / c["size"]

            tested = [c for c in run["candidates"] if "tested" in c]
            verified = [c for c in tested if c["tested"]["rule_met"]]
            early = [c for c in verified if c["epoch"] <= 3 and c["class"] == "melanoma" and ring_share(c) >= 0.8]
            assert early, (seed, [(c["epoch"], c["class"], c["score"], c["tested"]["rule_reason"]) for c in tested])
            assert all(c["tested"]["twin"] == "ring" for c in early)
            others = [(c["epoch"], c["class"], c["score"]) for c in verified if ring_share(c) < 0.5]
            assert others == [], (seed, others)
    finally:
        torch.set_num_threads(previous)
