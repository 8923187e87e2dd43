"""The one chart core (lit_xai.visualization.axes): ranges, ticks, labels and palette shared by PNG and SVG charts."""

from __future__ import annotations

import math
import re
import subprocess
import sys

import pytest

from lit_xai.visualization.axes import (
    PALETTE,
    PALETTE_HEX,
    axis,
    data_range,
    epoch_axis,
    hex_colour,
    nice_ticks,
    tick_labels,
)


@pytest.mark.parametrize("lo,hi", [(0.03, 0.42), (-1.3, 2.7), (0.0, 1e-4), (1e3, 9.9e4), (-0.5, -0.01), (7.0, 7.5)])
def test_nice_ticks_are_evenly_stepped_round_and_inside_the_range(lo, hi):
    ticks = nice_ticks(lo, hi)
    assert len(ticks) >= 2 and lo - 1e-12 <= ticks[0] and ticks[-1] <= hi + 1e-12
    steps = [b - a for a, b in zip(ticks, ticks[1:])]
    step = steps[0]  # ticks are Python floats (float64): 1e-9 is far above their rounding
    assert all(math.isclose(s, step, rel_tol=1e-9) for s in steps)  # float64
    mantissa = step / 10 ** math.floor(math.log10(step) + 1e-9)
    assert any(math.isclose(mantissa, m, rel_tol=1e-9) for m in (1, 2, 2.5, 5))  # float64
    # every label distinct and no float dust (0.30000000000000004) in any of them
    labels = tick_labels(ticks)
    assert len(set(labels)) == len(labels) and all(len(x) <= 8 for x in labels)


def test_axis_holds_every_value_and_reference_line_and_survives_degenerate_input():
    ax = axis([0.2, 0.3], include=[0.9, float("nan")])
    assert ax.lo <= 0.2 and ax.hi >= 0.9 and ax.ticks[0] >= ax.lo and ax.ticks[-1] <= ax.hi
    assert data_range([]) == (0.0, 1.0) and data_range([float("inf")]) == (0.0, 1.0)
    lo, hi = data_range([3.0, 3.0])
    assert lo < 3.0 < hi
    assert data_range([0.4, 0.6], ylim=(0.0, 1.0)) == (0.0, 1.0)
    assert axis([0.5]).fraction(axis([0.5]).lo) == 0.0


def test_epoch_axis_draws_whole_epochs_only():
    assert epoch_axis(range(1, 9)).ticks == [float(e) for e in range(1, 9)]
    many = epoch_axis(range(0, 101))
    assert all(t.is_integer() for t in many.ticks) and 2 <= len(many.ticks) <= 12
    assert epoch_axis([4]).lo < 4 < epoch_axis([4]).hi
    assert all(re.fullmatch(r"\d+", label) for label in epoch_axis([1, 5]).labels)


def test_one_palette_for_png_and_svg_charts():
    from lit_xai.report import charts as svg
    from lit_xai.visualization import PALETTE as png_palette

    assert png_palette is PALETTE and svg.PALETTE is PALETTE_HEX
    assert [hex_colour(c) for c in PALETTE] == list(PALETTE_HEX)
    assert (0, 0, 0) not in PALETTE and len(set(PALETTE)) == len(PALETTE)


def test_png_and_svg_charts_put_the_same_ticks_on_the_same_data():
    from lit_xai.report.charts import line_chart

    points = [(1, 0.05), (2, 0.31), (3, 0.42), (4, 0.38)]
    svg = line_chart({"m": points}, threshold=0.15)
    y_labels = re.findall(r'text-anchor="end" class="tick">([^<]+)</text>', svg)
    expected = axis([v for _, v in points], include=[0.15], pad=0.06, target=4)
    assert y_labels[: len(expected.labels)] == expected.labels
    x_labels = re.findall(r'text-anchor="middle" class="tick">([^<]+)</text>', svg)
    assert x_labels == epoch_axis([1, 2, 3, 4]).labels == ["1", "2", "3", "4"]


def test_the_report_stays_torch_free():
    code = "import sys, lit_xai.report, lit_xai.report.charts; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
