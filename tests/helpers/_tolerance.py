"""Tolerances derived from the dtype and the size of a reduction, never typed for one machine (issue 30)."""

from __future__ import annotations

import copy

import torch


def reduction_atol(values: torch.Tensor, terms: int | None = None) -> float:
    """Worst-case rounding error of a sum or mean over ``terms`` entries of ``values`` in their dtype: ``terms * eps *
    max|values|`` (Higham's bound for recursive summation; pairwise or blocked sums, as BLAS and other thread counts
    use, stay below it). ``terms`` defaults to the number of entries."""
    n = values.numel() if terms is None else terms
    return n * torch.finfo(values.dtype).eps * float(values.detach().abs().max())


def float64_twin(net: torch.nn.Module) -> torch.nn.Module:
    """A float64 deep copy of ``net``: the same computation with rounding far below float32's, for
    :func:`rounding_atol` (the original is left as it was)."""
    return copy.deepcopy(net).double()


def rounding_atol(value: torch.Tensor, reference64: torch.Tensor, factor: float = 4.0) -> float:
    """Tolerance for comparing two float32 computations of ``value`` that sum in different orders (other batching,
    channel sets, code paths): ``factor`` times this run's own float32 rounding error (the largest distance of
    ``value`` to the same computation in float64, ``reference64``), plus an ulp of its largest entry.

    Measured on the machine that runs the test, so another CPU, BLAS or thread count moves the bound with the error.
    """
    if reference64.dtype != torch.float64:
        raise ValueError(f"reference64 must be float64, got {reference64.dtype}")
    err = float((value.detach().double() - reference64.detach()).abs().max())
    return factor * err + torch.finfo(value.dtype).eps * float(reference64.detach().abs().max())
