"""The monitors' time budget (``Schedule(time_budget=...)``): postponed, not dropped; the other monitors' time is not
training time; the console says so. Driven by a fake clock, so the decisions are exact on any machine."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch.utils.data import DataLoader, TensorDataset

import lit_xai.callbacks.base as base
from lit_xai.callbacks.base import MonitorBase
from lit_xai.schedule import Schedule


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class Training(Callback):
    """Each training batch takes ``seconds`` on the clock (one batch per epoch)."""

    def __init__(self, clock: Clock, seconds: float) -> None:
        self.clock, self.seconds = clock, seconds

    def on_train_batch_end(self, *args) -> None:
        self.clock.t += self.seconds


class Costly(MonitorBase):
    """A monitor whose measurement takes ``cost`` seconds on the clock."""

    def __init__(self, clock: Clock, cost: float, **kw) -> None:
        super().__init__(verbose=kw.pop("verbose", False), **kw)
        self.clock, self.cost = clock, cost

    def on_fit_start(self, trainer, pl_module) -> None:
        self.contract = SimpleNamespace(module=lambda module: module)  # no model contract needed here

    def measure(self, contract, module, epoch, mode):
        self.clock.t += self.cost
        return {}

    def record(self, result, epoch, mode):
        return [{"epoch": epoch}]


class Tiny(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(4, 2)

    def training_step(self, batch, _):
        x, y = batch
        return torch.nn.functional.cross_entropy(self.net(x), y)

    def validation_step(self, batch, _):
        pass

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(callbacks, max_epochs: int = 10) -> None:
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(8, 4, generator=g), torch.randint(0, 2, (8,), generator=g))
    loader = DataLoader(data, batch_size=8)
    trainer = Trainer(
        max_epochs=max_epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=callbacks,
    )
    trainer.fit(Tiny(), loader, loader)


@pytest.fixture
def clock(monkeypatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(base, "_now", c)
    return c


def _epochs(monitor: MonitorBase) -> list[int]:
    return [h["epoch"] for h in monitor.history]


@pytest.mark.parametrize("spacing", ["even", "doubling"])
def test_a_budget_postpones_measurements_and_keeps_the_share(clock, spacing):
    # 10 s of training per epoch, 3 s per measurement, budget 10 %: the first measurement is made (its cost is
    # unknown), the next when 3 + 3 <= 0.1 x training, i.e. after 60 s (epoch 5), then after 90 s (epoch 8); the
    # last epoch's would be 12 s of 100 s and is postponed past the end. The doubling schedule's epochs 1, 3 and 7
    # are each postponed to the first epoch where they fit: the same epochs.
    monitor = Costly(clock, 3.0, every_n_epochs=Schedule(1, spacing, time_budget=0.1))
    _fit([Training(clock, 10.0), monitor])
    assert _epochs(monitor) == [0, 5, 8]
    assert monitor._spent == pytest.approx(9.0) and monitor._spent <= 0.1 * 100.0

    free = Costly(clock, 3.0, every_n_epochs=Schedule(1, spacing))  # no budget: the schedule alone
    _fit([Training(clock, 10.0), free])
    assert _epochs(free) == ([0, 1, 3, 7, 9] if spacing == "doubling" else list(range(10)))


class SlowStart(Costly):
    """Costly whose fit-start setup (as the ShortcutMonitor's audit and pool) takes 6 s on the clock."""

    initial = False  # measure the initial model inside the setup, as the ExplanationMonitor does

    def on_fit_start(self, trainer, pl_module) -> None:
        with self.accounted(trainer):
            super().on_fit_start(trainer, pl_module)
            self.clock.t += 6.0
            if self.initial:
                self.run(trainer, pl_module, epoch=-1, everywhere=False)


def test_the_setup_at_fit_start_counts_in_the_budget(clock):
    # 10 s of training per epoch, 3 s per measurement, budget 10 %, 12 epochs: with the 6 s of setup counted the
    # monitor has spent 9 s after epoch 0, and the next 3 s fit only after 120 s (epoch 11); without the setup
    # counted it would measure at epochs 0, 5, 8 and 11 (the first test's arithmetic), 18 s in all of 120 s
    monitor = SlowStart(clock, 3.0, every_n_epochs=Schedule(1, "even", time_budget=0.1))
    _fit([Training(clock, 10.0), monitor], max_epochs=12)
    assert _epochs(monitor) == [0, 11]
    assert monitor._spent == pytest.approx(12.0)

    # the initial model measured inside the setup is counted once: 6 + 3 s after fit start, epoch 0 is expected at
    # 3 s and postponed, epoch 11 fits (counted twice, 12 s after fit start, nothing would fit in 12 epochs)
    monitor = SlowStart(clock, 3.0, every_n_epochs=Schedule(1, "even", time_budget=0.1))
    monitor.initial = True
    _fit([Training(clock, 10.0), monitor], max_epochs=12)
    assert _epochs(monitor) == [-1, 11]


def test_the_other_monitors_time_is_not_training_time(clock):
    # B takes 5 s every epoch without a budget; A (2 s, budget 10 %) counts only the 10 s of training per epoch:
    # it measures when 2 x (measurements + 1) <= epochs completed, i.e. at epochs 0, 3, 5, 7, 9. Had B's seconds
    # counted as training (15 s per epoch), A would have measured at epochs 0, 2, 3, 5, 6, 7, 9.
    a = Costly(clock, 2.0, every_n_epochs=Schedule(1, "even", time_budget=0.1), tag="A")
    b = Costly(clock, 5.0, every_n_epochs=1, tag="B")
    _fit([Training(clock, 10.0), a, b])
    assert _epochs(a) == [0, 3, 5, 7, 9]
    assert _epochs(b) == list(range(10))


class TwoKinds(Costly):
    """Every third epoch's measurement is a costlier kind (4 s against 1 s), as the ShortcutMonitor's discovery."""

    def cost_kind(self, epoch: int) -> str:
        return "big" if epoch % 3 == 2 else "small"

    def measure(self, contract, module, epoch, mode):
        self.clock.t += 4.0 if self.cost_kind(epoch) == "big" else 1.0
        return {}


def test_a_measurement_is_expected_to_cost_what_the_last_of_its_kind_did(clock):
    # 10 s of training per epoch, budget 10 %. Epochs 0, 1 (1 s each) and 2 (the first big one, expected at the
    # costliest so far, 1 s: 3 <= 3) are made; then each kind is expected at its own last cost: the small epochs 6,
    # 7, 10 and the big 9 fit, 10 s in all of 120. Expecting the last measurement's cost whatever its kind gives
    # epochs 0, 1, 2, 9, 10, 11: a big epoch expected at 1 s, a small one at 4 s.
    monitor = TwoKinds(clock, 0.0, every_n_epochs=Schedule(1, "even", time_budget=0.1))
    _fit([Training(clock, 10.0), monitor], max_epochs=12)
    assert _epochs(monitor) == [0, 1, 2, 6, 7, 9, 10]
    assert monitor._spent == pytest.approx(10.0)


class Units(TwoKinds):
    """TwoKinds whose measurements say their work: a big one is 4 units, a small one 1 (as the ShortcutMonitor's
    discovery epoch explains the whole pool, its reliance epochs the probes' and SpRAy's maps)."""

    def cost_units(self, epoch: int) -> float:
        return 4.0 if self.cost_kind(epoch) == "big" else 1.0

    def measure(self, contract, module, epoch, mode):
        self.shares.append((self._spent + (4.0 if self.cost_kind(epoch) == "big" else 1.0)) / (10.0 * (epoch + 1)))
        return super().measure(contract, module, epoch, mode)


def test_the_first_measurement_of_a_kind_is_expected_from_its_units(clock):
    # As above, but the big kind says it is 4 units: its first one, at epoch 2, is expected at 4 x 1 s per unit and
    # postponed (2 + 4 > 3), so are those of epochs 5 and 8; the first big one made is epoch 11's (8 + 4 <= 12). The
    # share stays within 10 % after every measurement; expected at the costliest so far (1 s, the test above), epoch
    # 2's big measurement took the monitor to 6 s of 30 (20 %).
    monitor = Units(clock, 0.0, every_n_epochs=Schedule(1, "even", time_budget=0.1))
    monitor.shares = []
    _fit([Training(clock, 10.0), monitor], max_epochs=12)
    assert _epochs(monitor) == [0, 1, 3, 4, 6, 7, 9, 10, 11]
    assert monitor._spent == pytest.approx(12.0) and max(monitor.shares[1:]) <= 0.1 + 1e-12
    assert monitor.expected_cost(14) == 4.0 and monitor.expected_cost(13) == 1.0  # each kind's last cost now


def test_the_console_says_what_was_postponed(clock, capsys):
    monitor = Costly(clock, 3.0, every_n_epochs=Schedule(1, "even", time_budget=0.1), verbose=True, tag="XAI/demo")
    _fit([Training(clock, 10.0), monitor], max_epochs=3)
    out = capsys.readouterr()
    text = out.out + out.err
    assert "[XAI/demo] epoch 1: postponed, over budget: 3.0 s so far + 3.0 s would be 30% of 20.0 s of training" in text
    assert "(budget 10%)" in text and text.count("postponed") == 2  # epochs 1 and 2, each due

    waiting = Costly(clock, 3.0, every_n_epochs=Schedule(2, "even", time_budget=0.1), verbose=True, tag="XAI/two")
    _fit([Training(clock, 10.0), waiting], max_epochs=4)
    out = capsys.readouterr()
    text = out.out + out.err
    # due at epochs 1 and 3 (the last): epoch 1 measures (the first), epoch 3 is postponed; said once per due epoch
    assert [h["epoch"] for h in waiting.history] == [1] and text.count("postponed") == 1


def test_a_budget_must_be_a_share():
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"Schedule\(time_budget=...\) is a share of the training time"):
            Schedule(1, "even", time_budget=bad)
    assert Schedule(1, "even", time_budget=1.0).time_budget == 1.0


def test_the_shortcut_watch_counts_the_maps_it_explains():
    # the ShortcutMonitor's cost_units: per watched (artifact, class) the probes' and SpRAy's maps; on a discovery
    # epoch the pool's labelled images (those maps are read from them); 1 before the pool is read
    from lit_xai.shortcuts import ShortcutBudget, ShortcutWatch
    from lit_xai.shortcuts.monitoring import ReliancePool

    watch = ShortcutWatch(("ring",), budget=ShortcutBudget(num_probes=8, spray_samples=64), target_class="b")
    assert watch.explained_maps(["a", "b"]) == 1
    x = torch.rand(40, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1] * 18 + [-1] * 4)  # 4 unlabelled images are not explained by discovery
    watch.pool = ReliancePool(x, x, labels, list(range(40)))
    assert watch.explained_maps(["a", "b"]) == 72
    assert watch.explained_maps(["a", "b"], discover=True) == 72  # never fewer than the reliance maps
    watch.budget = ShortcutBudget(num_probes=4, spray_samples=0)
    assert watch.explained_maps(["a", "b"], discover=True) == 36
    watch.target_class = None  # the ring is in no image: no class is watched for it, and the count is still 1
    watch.pool.detect("ring")
    assert watch.explained_maps(["a", "b"]) == 1


def test_the_explanation_monitors_picture_epochs_are_a_kind_of_their_own():
    # with pictures at every 2nd explained epoch a picture epoch costs about twice a maps-only one: one estimate for
    # both would alternate between too high and too low
    from lit_xai.callbacks import ExplanationMonitor
    from lit_xai.callbacks.explanation_monitor import Pictures

    monitor = ExplanationMonitor(every_n_epochs=1, pictures=Pictures(every_n_epochs=2))
    monitor._max_epochs = 6
    kinds = [monitor.cost_kind(e) for e in range(-1, 6)]  # the initial model, epochs 1, 3 and the last draw pictures
    assert kinds == ["pictures", "maps", "pictures", "maps", "pictures", "maps", "pictures"]
    assert all((k == "pictures") == monitor._pictures_due(e, 6) for e, k in zip(range(-1, 6), kinds))
    assert {ExplanationMonitor(every_n_epochs=1).cost_kind(e) for e in range(-1, 6)} == {"pictures"}  # every epoch
