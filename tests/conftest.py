"""Shared pytest fixtures (kept minimal on purpose; thread counts are left to the caller)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def seed() -> int:
    """Seed torch's global RNG (CPU and CUDA) with 0 and return the seed."""
    torch.manual_seed(0)
    return 0
