"""Tolerances derived from the dtype and the size of a reduction, never typed for one machine (issue 30)."""

from __future__ import annotations

import torch


def reduction_atol(values: torch.Tensor, terms: int | None = None) -> float:
    """Worst-case rounding error of a sum or mean over ``terms`` entries of ``values`` in their dtype: ``terms * eps *
    max|values|`` (Higham's bound for recursive summation; pairwise or blocked sums, as BLAS and other thread counts
    use, stay below it). ``terms`` defaults to the number of entries."""
    n = values.numel() if terms is None else terms
    return n * torch.finfo(values.dtype).eps * float(values.detach().abs().max())
