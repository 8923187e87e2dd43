"""``python -m benchmarks quality_vs_quantus`` compares equal things: on a tiny input its three metric pairs (AOPC,
max-sensitivity, infidelity; ours and Quantus 0.6 with the same settings and the same noise) agree within the
suite's own tolerance, and the tolerance is tight enough to see a wrong setting."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import pytest

pytest.importorskip("quantus")


def _suite():
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "quality_vs_quantus.py"
    spec = importlib.util.spec_from_file_location("lit_xai_bench_quality_vs_quantus", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def suite_and_data():
    suite = _suite()
    return suite, suite.setup(images=4, size=16, seed=3)


@pytest.mark.parametrize("metric", ["aopc", "max_sensitivity", "infidelity"])
def test_benchmark_pairs_agree(suite_and_data, metric):
    suite, data = suite_and_data
    result = suite.compare(data, metric)
    assert result["max_abs_diff"] <= result["tolerance"], result


def test_benchmark_check_sees_a_different_setting(suite_and_data):
    # the same check fails when Quantus gets other noise than ours (the agreement above is not vacuous)
    import numpy as np

    suite, data = suite_and_data
    ours, theirs, check = suite.infidelity_pair(data, seed=0)
    other_ours, _, _ = suite.infidelity_pair(data, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = check(other_ours(), theirs())
    assert result["max_abs_diff"] > result["tolerance"]
    assert np.isfinite(result["max_abs_diff"])
