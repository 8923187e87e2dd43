"""Line charts of logged scalars as inline SVG: no smoothing, no outlier clipping, 0/1 flags and counts drawn as
steps, one colour per series with a legend, thresholds and marked steps drawn where a chart has them.

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

__all__ = ["PALETTE", "is_stepwise", "line_chart"]

#: series colours (Okabe-Ito, colour-blind safe), in order
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")

_W, _H = 360, 190
_LEFT, _RIGHT, _TOP, _BOTTOM = 46, 10, 10, 26


def is_stepwise(points: Sequence[tuple[int, float]]) -> bool:
    """True for flags and counts (every value a whole number): drawn as steps, never as a slope.

    >>> is_stepwise([(1, 0.0), (2, 1.0)]), is_stepwise([(1, 0.5)])
    (True, False)
    """
    return bool(points) and all(float(v).is_integer() for _, v in points)


def _ticks(low: float, high: float, count: int = 4) -> list[float]:
    if high <= low:
        return [low]
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    return [round(first + i * step, 12) for i in range(int((high - first) / step + 1e-9) + 1)]


def _fmt(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1e4 else f"{value:.2e}"


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
        intervals: name -> ``(step, low, high)`` whiskers drawn in the colour of the series of that name.

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
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if y1 - y0 < 1e-12:
        y0, y1 = y0 - 0.5, y1 + 0.5
    else:
        pad = 0.06 * (y1 - y0)
        y0, y1 = y0 - pad, y1 + pad
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    pw, ph = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM

    def px(x: float) -> float:
        return round(_LEFT + (x - x0) / (x1 - x0) * pw, 1)

    def py(y: float) -> float:
        return round(_TOP + (y1 - y) / (y1 - y0) * ph, 1)

    for t in _ticks(y0, y1):
        parts.append(f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{py(t)}" y2="{py(t)}" class="grid"/>')
        parts.append(f'<text x="{_LEFT - 4}" y="{py(t) + 3}" text-anchor="end" class="tick">{_fmt(t)}</text>')
    x_ticks = sorted(set(xs)) if len(set(xs)) <= 10 else [int(t) for t in _ticks(x0, x1, 6)]
    for t in x_ticks:
        parts.append(f'<text x="{px(t)}" y="{_H - _BOTTOM + 13}" text-anchor="middle" class="tick">{_fmt(t)}</text>')
    parts.append(
        f'<text x="{_W - _RIGHT}" y="{_H - 3}" text-anchor="end" class="tick">{escape(x_label)}</text>'
        f'<line x1="{_LEFT}" x2="{_LEFT}" y1="{_TOP}" y2="{_H - _BOTTOM}" class="axis"/>'
        f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{_H - _BOTTOM}" y2="{_H - _BOTTOM}" class="axis"/>'
    )
    for m in marks:
        parts.append(
            f'<line x1="{px(m)}" x2="{px(m)}" y1="{_TOP}" y2="{_H - _BOTTOM}" stroke="#C00000" stroke-width="1.5"/>'
            f'<text x="{px(m) + 3}" y="{_TOP + 9}" class="tick" fill="#C00000">alert</text>'
        )
    if threshold is not None:
        parts.append(
            f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{py(threshold)}" y2="{py(threshold)}" stroke="#444" '
            f'stroke-dasharray="5 3"/><text x="{_W - _RIGHT - 2}" y="{py(threshold) - 3}" text-anchor="end" '
            f'class="tick">threshold {_fmt(threshold)}</text>'
        )
    for i, (name, pts) in enumerate(clean.items()):
        colour = PALETTE[i % len(PALETTE)]
        coords: list[tuple[float, float]] = []
        for j, (s, v) in enumerate(pts):
            if is_stepwise(pts) and j:
                coords.append((px(s), py(pts[j - 1][1])))
            coords.append((px(s), py(v)))
        path = " ".join(f"{x},{y}" for x, y in coords)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        parts += [f'<circle cx="{px(s)}" cy="{py(v)}" r="2.6" fill="{colour}"/>' for s, v in pts]
        parts += [
            f'<line x1="{px(s)}" x2="{px(s)}" y1="{py(lo)}" y2="{py(hi)}" stroke="{colour}" stroke-width="1.2"/>'
            for s, lo, hi in whiskers.get(name, [])
        ]
    parts.append("</svg>")
    if len(clean) > 1:
        legend = "".join(
            f'<span><i style="background:{PALETTE[i % len(PALETTE)]}"></i>{escape(name)}</span>'
            for i, name in enumerate(clean)
        )
        return "".join(parts) + f'<div class="legend">{legend}</div>'
    return "".join(parts)
