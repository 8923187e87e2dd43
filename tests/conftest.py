"""Shared pytest fixtures (kept minimal on purpose; thread counts are left to the caller)."""

from __future__ import annotations

import os
import tempfile

import pytest
import torch

# the audit cache of a test session lives in a fresh folder, never in the user's ~/.cache
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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``cuda`` are skipped (collected, reported as skipped) where no CUDA device is available."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (torch.cuda.is_available() is False)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
