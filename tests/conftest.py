"""Shared pytest fixtures (kept minimal on purpose; thread counts are left to the caller), the ``numeric`` marker and
the ``--shuffle`` order that CI uses to run the numeric tests a second time on another thread count and order."""

from __future__ import annotations

import atexit
import inspect
import os
import random
import re
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import torch

# tests/ mirrors the package (tests/explainers/, tests/shortcuts/, ...); the modules they share (fixture trees,
# tolerances, tiny models) live in tests/helpers/ and are imported by name (``from _tolerance import ...``)
sys.path.insert(0, str(Path(__file__).resolve().parent / "helpers"))

# a test session leaves nothing behind: whatever it puts in the temp folder (the doctests' mkdtemp folders, a
# subprocess's files, pytest's tmp_path) goes into one folder of its own, removed when the session ends
_SESSION_TMP = tempfile.mkdtemp(prefix="lit_xai_tests_")
tempfile.tempdir = os.environ["TMPDIR"] = _SESSION_TMP
atexit.register(shutil.rmtree, _SESSION_TMP, ignore_errors=True)
# the audit cache of a test session lives in there too, never in the user's ~/.cache (a folder the caller named with
# LIT_XAI_CACHE is theirs)
os.environ.setdefault("LIT_XAI_CACHE", tempfile.mkdtemp(prefix="lit_xai_cache_"))


@pytest.fixture
def seed() -> int:
    """Seed torch's global RNG (CPU and CUDA) with 0 and return the seed."""
    torch.manual_seed(0)
    return 0


@pytest.fixture(scope="module")
def single_thread():
    """One torch thread for a test module (explainer micro-benchmarks and numerics; restores the count after)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


#: a test whose body compares floating-point results with a tolerance is a numeric test (marked automatically, so a
#: new one cannot escape the second CI run on another thread count and order)
_TOLERANCE_CALL = re.compile(r"\b(approx|allclose|assert_close|assert_allclose|isclose)\(")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--shuffle",
        type=int,
        default=None,
        metavar="SEED",
        help="run the test modules, and the tests inside each module, in an order shuffled with SEED",
    )


def _is_numeric(item: pytest.Item) -> bool:
    function = getattr(item, "function", None)
    if function is None:
        return False
    try:
        return bool(_TOLERANCE_CALL.search(inspect.getsource(function)))
    except (OSError, TypeError):
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark numeric tests; shuffle with ``--shuffle SEED``; skip ``cuda`` tests where no CUDA device is available."""
    for item in items:
        if _is_numeric(item):
            item.add_marker(pytest.mark.numeric)
    seed = config.getoption("--shuffle")
    if seed is not None:
        rng = random.Random(seed)
        modules: dict[str, list[pytest.Item]] = {}
        for item in items:
            modules.setdefault(item.nodeid.split("::")[0], []).append(item)
        order = list(modules)
        rng.shuffle(order)
        for name in order:
            rng.shuffle(modules[name])
        items[:] = [item for name in order for item in modules[name]]
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (torch.cuda.is_available() is False)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def pytest_report_header(config: pytest.Config) -> list[str]:
    seed = config.getoption("--shuffle")
    order = f"shuffled (--shuffle {seed})" if seed is not None else "file order"
    return [f"torch threads: {torch.get_num_threads()}, test order: {order}"]
