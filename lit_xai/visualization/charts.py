"""Line plots drawn with PIL only (no matplotlib): curves for TensorBoard's image tab, W&B and MLflow alike."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from ._canvas import _from_pil
from .colors import PALETTE
from .text import _ellipsize, _font, _line_height, _text_width

__all__ = ["line_plot"]

def _nice_ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    """Round tick positions (1, 2, 2.5, 5 x 10^k steps) covering ``[lo, hi]``."""
    if not np.isfinite(lo) or not np.isfinite(hi):
        return [0.0]
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, target)
    mag = 10 ** np.floor(np.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = np.ceil(lo / step - 1e-9) * step
    ticks = []
    t = first
    while t <= hi + 1e-9 * step:
        ticks.append(0.0 if abs(t) < step * 1e-9 else float(t))
        t += step
    return ticks


def _tick_label(value: float, ticks: Sequence[float]) -> str:
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else abs(value) or 1.0
    if max(abs(t) for t in ticks) >= 1e5 or step < 1e-3:
        return f"{value:.2g}"
    decimals = max(0, int(-np.floor(np.log10(step) + 1e-9)))
    if decimals == 0 and not float(step).is_integer():
        decimals = 1
    return f"{value:.{decimals + (1 if step * 10**decimals % 1 else 0)}f}"


def _wrap_flow(items: Sequence[int], width: int, gap: int) -> list[list[int]]:
    """Greedy flow layout: item indices per line so that the summed widths (plus gaps) fit ``width``."""
    lines: list[list[int]] = [[]]
    used = 0
    for i, w in enumerate(items):
        if lines[-1] and used + gap + w > width:
            lines.append([])
            used = 0
        used += (gap if lines[-1] else 0) + w
        lines[-1].append(i)
    return lines


def line_plot(
    curves: dict[str, Sequence[float]],
    x: Sequence[float] | None = None,
    *,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    width: int = 480,
    height: int = 320,
) -> torch.Tensor:
    """A line chart as uint8 ``(3, height, width)``: axes with round ticks, one colour per curve, a legend below.

    Drawn with PIL only (no matplotlib), so a callback can log it through any image sink. Non-finite values
    (``nan``, ``inf``) break a curve instead of spoiling the axis range.

    Args:
        curves: ``{name: y values}``; without ``x`` each curve is drawn against ``0, 1, 2, ...``.
        x: shared x values; every curve must then have ``len(x)`` values.
        title, xlabel, ylabel: text above the plot, under the x axis and above the y axis.
        width, height: the picture size in pixels.

    Example:
        >>> img = line_plot({"lrp": [0.1, 0.3, 0.2], "gradcam": [0.2, 0.1, 0.4]}, x=[1, 2, 3], title="drift")
        >>> img.dtype, tuple(img.shape)
        (torch.uint8, (3, 320, 480))
    """
    if not curves:
        raise ValueError("line_plot needs at least one curve, e.g. line_plot({'drift': [0.1, 0.2]})")
    if width < 160 or height < 120:
        raise ValueError(f"line_plot needs at least 160 x 120 pixels to fit axes and labels, got {width} x {height}")
    series: list[tuple[str, np.ndarray, np.ndarray]] = []
    for name, ys in curves.items():
        y = np.asarray([float(v) for v in ys], dtype=np.float64)
        if x is None:
            xs = np.arange(len(y), dtype=np.float64)
        else:
            xs = np.asarray([float(v) for v in x], dtype=np.float64)
            if len(xs) != len(y):
                raise ValueError(f"curve {name!r} has {len(y)} values but x has {len(xs)}; give one y per x")
        series.append((str(name), xs, y))

    font, small = _font(12), _font(11)
    lh, slh = _line_height(font), _line_height(small)
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)

    finite_x = np.concatenate([s[1][np.isfinite(s[1]) & np.isfinite(s[2])] for s in series])
    finite_y = np.concatenate([s[2][np.isfinite(s[1]) & np.isfinite(s[2])] for s in series])
    if finite_y.size == 0:
        x_lo, x_hi, y_lo, y_hi = 0.0, 1.0, 0.0, 1.0
    else:
        x_lo, x_hi = float(finite_x.min()), float(finite_x.max())
        y_lo, y_hi = float(finite_y.min()), float(finite_y.max())
    if x_hi <= x_lo:
        x_lo, x_hi = x_lo - 0.5, x_hi + 0.5
    if y_hi <= y_lo:  # constant curves: a band around the value
        pad = abs(y_lo) * 0.1 or 0.5
        y_lo, y_hi = y_lo - pad, y_hi + pad
    else:
        pad = (y_hi - y_lo) * 0.05
        y_lo, y_hi = y_lo - pad, y_hi + pad
    xt, yt = _nice_ticks(x_lo, x_hi), _nice_ticks(y_lo, y_hi)
    # extend the axes to the outer ticks so the grid lines frame the data
    y_lo, y_hi = min(y_lo, yt[0]), max(y_hi, yt[-1])
    yt_labels = [_tick_label(t, yt) for t in yt]
    xt_labels = [_tick_label(t, xt) for t in xt]

    # legend entries (swatch + name) flow under the plot, wrapping onto as many lines as needed
    swatch, gap = 18, 14
    names = [_ellipsize(n, width - 20 - swatch - 4, small) for n, _, _ in series]
    entry_w = [swatch + 4 + _text_width(n, small) for n in names]
    legend_lines = _wrap_flow(entry_w, width - 20, gap)

    top = 6 + (lh + 4 if title else 0) + (slh if ylabel else 0) + slh // 2
    left = 8 + max(_text_width(s, small) for s in yt_labels) + 6
    bottom = height - (6 + len(legend_lines) * slh + 4 + (slh if xlabel else 0) + slh + 6)
    right = width - 6 - _text_width(xt_labels[-1], small) // 2
    if bottom - top < 40:
        raise ValueError(f"{len(series)} legend entries leave no room for the plot at height {height}; raise height")

    def px(v: float) -> float:
        return left + (v - x_lo) / (x_hi - x_lo) * (right - left)

    def py(v: float) -> float:
        return bottom - (v - y_lo) / (y_hi - y_lo) * (bottom - top)

    if title:
        title = _ellipsize(title, width - 12, font)
        draw.text(((width - _text_width(title, font)) // 2, 4), title, fill=(0, 0, 0), font=font)
    if ylabel:
        draw.text((4, top - slh - slh // 2 + 2), _ellipsize(ylabel, width - 8, small), fill=(60, 60, 60), font=small)
    for t, s in zip(yt, yt_labels):
        y = py(t)
        draw.line((left, y, right, y), fill=(228, 228, 228))
        draw.line((left - 4, y, left, y), fill=(0, 0, 0))
        draw.text((left - 6 - _text_width(s, small), y - slh // 2), s, fill=(40, 40, 40), font=small)
    for t, s in zip(xt, xt_labels):
        x0 = px(t)
        draw.line((x0, top, x0, bottom), fill=(238, 238, 238))
        draw.line((x0, bottom, x0, bottom + 4), fill=(0, 0, 0))
        tx = min(max(0, x0 - _text_width(s, small) / 2), width - _text_width(s, small) - 3)
        draw.text((tx, bottom + 5), s, fill=(40, 40, 40), font=small)
    draw.rectangle((left, top, right, bottom), outline=(0, 0, 0))
    if xlabel:
        xlabel = _ellipsize(xlabel, width - 8, small)
        lx = min(max(4, (left + right - _text_width(xlabel, small)) // 2), width - 4 - _text_width(xlabel, small))
        draw.text((lx, bottom + 5 + slh), xlabel, fill=(60, 60, 60), font=small)

    for k, (_, xs, ys) in enumerate(series):
        colour = PALETTE[k % len(PALETTE)]
        ok = np.isfinite(xs) & np.isfinite(ys)
        points = [(px(a), py(b)) if good else None for a, b, good in zip(xs, ys, ok)]
        run: list[tuple[float, float]] = []
        for p in points + [None]:
            if p is None:
                if len(run) > 1:
                    draw.line(run, fill=colour, width=2, joint="curve")
                for q in run if len(xs) <= 40 else run[:1] if len(run) == 1 else []:
                    # markers: single points stay visible, short series read as samples; long series stay clean
                    draw.ellipse((q[0] - 2.5, q[1] - 2.5, q[0] + 2.5, q[1] + 2.5), fill=colour)
                run = []
            else:
                run.append(p)

    ly = height - 6 - len(legend_lines) * slh
    for line in legend_lines:
        lx = 10
        for i in line:
            colour = PALETTE[i % len(PALETTE)]
            draw.line((lx, ly + slh // 2, lx + swatch, ly + slh // 2), fill=colour, width=3)
            draw.text((lx + swatch + 4, ly), names[i], fill=(0, 0, 0), font=small)
            lx += entry_w[i] + gap
        ly += slh
    return _from_pil(img)
