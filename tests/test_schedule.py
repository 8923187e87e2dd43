"""The monitors' one schedule rule: even and doubling spacing, the last epoch always, and a Schedule object."""

from __future__ import annotations

import pytest

from lit_xai.callbacks.base import skip_reason
from lit_xai.schedule import Schedule, due


def test_even_spacing_is_unchanged():
    assert [e for e in range(10) if due(e, 1, 10)] == list(range(10))
    assert [e for e in range(10) if due(e, 3, 10)] == [2, 5, 8, 9]
    assert [e for e in range(6) if due(e, 2)] == [1, 3, 5]  # no max_epochs: no last epoch


@pytest.mark.parametrize(
    "every,max_epochs,expected",
    [(1, 8, [0, 1, 3, 7]), (1, 20, [0, 1, 3, 7, 15, 19]), (2, 20, [1, 3, 7, 15, 19]), (3, 30, [2, 5, 11, 23, 29])],
)
def test_doubling_spacing(every, max_epochs, expected):
    # the N-th, 2N-th, 4N-th, ... epoch (1-based), and the last
    assert [e for e in range(max_epochs) if due(e, every, max_epochs, "doubling")] == expected
    # a subset of the even schedule: discovery (even, every 2) runs at measured epochs that are due for it
    assert set(expected) <= {e for e in range(max_epochs) if due(e, every, max_epochs)}


def test_schedule_object_and_errors():
    s = Schedule(2, "doubling")
    assert [e for e in range(16) if s.due(e, 16)] == [1, 3, 7, 15]
    assert "doubling" in repr(s)
    with pytest.raises(ValueError, match="spacing"):
        due(0, 1, None, "log")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="every_n_epochs"):
        Schedule(0)
    with pytest.raises(ValueError, match="spacing"):
        Schedule(1, "often")  # type: ignore[arg-type]


def test_skip_reason_reads_the_spacing():
    assert skip_reason(epoch=3, every_n_epochs=1, max_epochs=8, spacing="doubling") is None
    assert skip_reason(epoch=2, every_n_epochs=1, max_epochs=8, spacing="doubling") == (
        "not due (every_n_epochs=1, doubling)"
    )
    assert skip_reason(epoch=2, every_n_epochs=1, max_epochs=8, spacing="doubling", fast_dev_run=True) is None
