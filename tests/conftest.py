"""Shared pytest fixtures (kept minimal on purpose; thread counts are left to the caller)."""

from __future__ import annotations

import pytest
import torch


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
