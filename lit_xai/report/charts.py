"""Line charts of logged scalars as inline SVG: no smoothing, no outlier clipping, 0/1 flags and counts drawn as
steps, one colour per series with a legend, thresholds and marked steps drawn where a chart has them, intervals as
a shaded band around their series (TensorBoard's Margin charts draw them so).

Axis ranges, ticks, tick labels and colours come from the chart core every lit_xai chart shares
(:mod:`lit_xai.visualization.axes`, torch-free), so these charts match the PNG charts logged to TensorBoard.

Example:
    >>> svg = line_chart({"LRP": [(1, 0.2), (2, 0.5)], "Grad-CAM": [(1, 0.3), (2, 0.4)]}, threshold=0.45,
    ...                  marks=[2], title="drift")
    >>> svg.startswith("<svg") and "LRP" in svg and "stroke-dasharray" in svg
    True
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import Optional

from ..visualization.axes import PALETTE as _RGB
from ..visualization.axes import PALETTE_HEX as PALETTE
from ..visualization.axes import axis, epoch_axis, hex_colour, tint

__all__ = ["PALETTE", "is_stepwise", "line_chart"]

_W, _H = 360, 190
_LEFT, _RIGHT, _TOP, _BOTTOM = 46, 10, 10, 26


def is_stepwise(points: Sequence[tuple[int, float]]) -> bool:
    """True for flags and counts (every value a whole number): drawn as steps, never as a slope.

    >>> is_stepwise([(1, 0.0), (2, 1.0)]), is_stepwise([(1, 0.5)])
    (True, False)
    """
    return bool(points) and all(float(v).is_integer() for _, v in points)


def line_chart(
    series: Mapping[str, Sequence[tuple[float, float]]],
    threshold: Optional[float] = None,
    marks: Sequence[float] = (),
    title: str = "",
    x_label: str = "step",
    intervals: Optional[Mapping[str, Sequence[tuple[int, float, float]]]] = None,
) -> str:
    """One chart of one or more series as an ``<svg>`` element that scales to its container's width.

    Args:
        series: name -> ``(x, value)`` points (non-finite values are left out); x is a step or epochs done.
        threshold: a horizontal dashed line (e.g. an alert threshold), labelled.
        marks: steps marked with a vertical line (e.g. the step an alert fired).
        title: the accessible name (``<title>``) of the chart.
        x_label: the name of the x axis.
        intervals: name -> ``(step, low, high)``: a band in a light tint of that series' colour, under the lines.

    Returns:
        The SVG markup, followed by a legend when there is more than one series.
    """
    clean = {name: [(float(s), float(v)) for s, v in pts if math.isfinite(float(v))] for name, pts in series.items()}
    clean = {name: pts for name, pts in clean.items() if pts}
    xs = [s for pts in clean.values() for s, _ in pts] + list(marks)
    whiskers = {
        name: [(float(s), float(lo), float(hi)) for s, lo, hi in rows if math.isfinite(lo) and math.isfinite(hi)]
        for name, rows in (intervals or {}).items()
        if name in clean
    }
    ys = [v for pts in clean.values() for _, v in pts] + ([threshold] if threshold is not None else [])
    ys += [v for rows in whiskers.values() for _, lo, hi in rows for v in (lo, hi)]
    parts = [
        f'<svg class="chart" viewBox="0 0 {_W} {_H}" role="img">',
        f"<title>{escape(title)}</title>",
    ]
    if not clean:
        parts.append(f'<text x="{_W / 2}" y="{_H / 2}" text-anchor="middle" class="muted">no values</text></svg>')
        return "".join(parts)
    y_axis = axis(ys, pad=0.06, target=4)
    x_axis = epoch_axis(xs)
    x0, x1, y0, y1 = x_axis.lo, x_axis.hi, y_axis.lo, y_axis.hi
    pw, ph = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM

    def px(x: float) -> float:
        return round(_LEFT + (x - x0) / (x1 - x0) * pw, 1)

    def py(y: float) -> float:
        return round(_TOP + (y1 - y) / (y1 - y0) * ph, 1)

    for t, label in zip(y_axis.ticks, y_axis.labels):
        parts.append(f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{py(t)}" y2="{py(t)}" class="grid"/>')
        parts.append(f'<text x="{_LEFT - 4}" y="{py(t) + 3}" text-anchor="end" class="tick">{label}</text>')
    for t, label in zip(x_axis.ticks, x_axis.labels):
        parts.append(f'<text x="{px(t)}" y="{_H - _BOTTOM + 13}" text-anchor="middle" class="tick">{label}</text>')
    parts.append(
        f'<text x="{_W - _RIGHT}" y="{_H - 3}" text-anchor="end" class="tick">{escape(x_label)}</text>'
        f'<line x1="{_LEFT}" x2="{_LEFT}" y1="{_TOP}" y2="{_H - _BOTTOM}" class="axis"/>'
        f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{_H - _BOTTOM}" y2="{_H - _BOTTOM}" class="axis"/>'
    )
    for i, name in enumerate(clean):
        # the interval as a band (a Margin chart's shading), under every line; a lone point keeps a whisker
        rows = sorted(whiskers.get(name, []))
        band = hex_colour(tint(_RGB[i % len(_RGB)]))
        if len(rows) > 1:
            outline = [(px(s), py(hi)) for s, _, hi in rows] + [(px(s), py(lo)) for s, lo, _ in reversed(rows)]
            path = " ".join(f"{x},{y}" for x, y in outline)
            parts.append(f'<polygon points="{path}" fill="{band}" stroke="none" class="band"/>')
        parts += [
            f'<line x1="{px(s)}" x2="{px(s)}" y1="{py(lo)}" y2="{py(hi)}" stroke="{band}" stroke-width="5"/>'
            for s, lo, hi in rows
        ]
    for m in marks:
        parts.append(
            f'<line x1="{px(m)}" x2="{px(m)}" y1="{_TOP}" y2="{_H - _BOTTOM}" stroke="#C00000" stroke-width="1.5"/>'
            f'<text x="{px(m) + 3}" y="{_TOP + 9}" class="tick" fill="#C00000">alert</text>'
        )
    if threshold is not None:
        parts.append(
            f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{py(threshold)}" y2="{py(threshold)}" stroke="#444" '
            f'stroke-dasharray="5 3"/><text x="{_W - _RIGHT - 2}" y="{py(threshold) - 3}" text-anchor="end" '
            f'class="tick">threshold {threshold:g}</text>'
        )
    for i, pts in enumerate(clean.values()):
        colour = PALETTE[i % len(PALETTE)]
        coords: list[tuple[float, float]] = []
        for j, (s, v) in enumerate(pts):
            if is_stepwise(pts) and j:
                coords.append((px(s), py(pts[j - 1][1])))
            coords.append((px(s), py(v)))
        path = " ".join(f"{x},{y}" for x, y in coords)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        parts += [f'<circle cx="{px(s)}" cy="{py(v)}" r="2.6" fill="{colour}"/>' for s, v in pts]
    parts.append("</svg>")
    if len(clean) > 1:
        legend = "".join(
            f'<span><i style="background:{PALETTE[i % len(PALETTE)]}"></i>{escape(name)}</span>'
            for i, name in enumerate(clean)
        )
        return "".join(parts) + f'<div class="legend">{legend}</div>'
    return "".join(parts)
