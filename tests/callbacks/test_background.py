"""The callbacks' background worker: order, errors, thread count, clean shutdown, copies without a thread."""

from __future__ import annotations

import copy
import pickle
import threading
import time

import pytest
import torch

from lit_xai.callbacks._background import Background, snapshot


def _threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("lit_xai-")]


def test_jobs_run_in_order_on_one_thread_with_one_intra_op_thread():
    bg = Background("order")
    seen = []

    def job(i):
        time.sleep(0.01 * (3 - i))  # later jobs are quicker: order must still hold
        seen.append(threading.current_thread().name)
        return i, torch.get_num_threads()

    main_threads = torch.get_num_threads()
    for i in range(3):
        bg.submit(job, i)
    assert bg.pending == 3
    results = bg.collect(wait=True)
    assert [r[0] for r in results] == [0, 1, 2] and all(r[1] == 1 for r in results)
    assert len(set(seen)) == 1 and seen[0].startswith("lit_xai-order")
    assert torch.get_num_threads() == main_threads  # the caller's thread count is its own
    assert bg.collect() == [] and bg.pending == 0
    bg.close()
    assert _threads() == []


def test_collect_without_wait_returns_only_finished_jobs_and_raises_errors_in_order():
    bg = Background("errors")
    gate = threading.Event()
    bg.submit(lambda: "first")
    bg.submit(lambda: gate.wait(5) and 1 / 0)
    time.sleep(0.05)
    assert bg.collect() == ["first"]  # the second is still waiting for the gate
    gate.set()
    with pytest.raises(ZeroDivisionError):
        bg.collect(wait=True)
    bg.close()
    assert _threads() == []


def test_close_without_wait_drops_jobs_not_started():
    bg = Background("drop")
    gate = threading.Event()
    ran = []
    bg.submit(gate.wait, 5)
    bg.submit(ran.append, 1)
    gate.set()
    bg.close(wait=False)
    assert bg.pending == 0 and _threads() == []


def test_copies_start_without_a_thread_and_snapshot_is_frozen():
    bg = Background("copy")
    bg.submit(lambda: 1)
    twin = copy.deepcopy(bg)
    again = pickle.loads(pickle.dumps(bg))
    assert twin.pending == 0 and again.pending == 0 and twin.name == "copy"
    assert bg.collect(wait=True) == [1]
    bg.close()
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2)).train()
    frozen = snapshot(net)
    assert not frozen.training and not any(p.requires_grad for p in frozen.parameters())
    assert net.training and all(p.requires_grad for p in net.parameters())
    with torch.no_grad():
        net[0].weight.add_(1.0)
    assert not torch.equal(frozen[0].weight, net[0].weight)  # later steps never reach the copy
