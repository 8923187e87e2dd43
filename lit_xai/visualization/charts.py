"""Line plots drawn with PIL only (no matplotlib): curves for TensorBoard's image tab, W&B and MLflow alike."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from ._canvas import _from_pil
from .axes import ALERT_RGB, PALETTE, REFERENCE_RGB, epoch_axis, nice_ticks, tint
from .axes import axis as value_axis
from .text import _ellipsize, _font, _line_height, _text_width

__all__ = ["line_plot"]

#: the shared tick rule, under its old name (tests and notebooks import it from here)
_nice_ticks = nice_ticks


def _floats(values: Sequence[float]) -> np.ndarray:
    return np.asarray([float(v) for v in values], dtype=np.float64)


_REFERENCE_RGB = REFERENCE_RGB


def _dashed(
    draw: ImageDraw.ImageDraw, start: tuple[float, float], end: tuple[float, float], colour: tuple, dash: int = 6
) -> None:
    """A dashed straight line (PIL has none) of width 2."""
    (x0, y0), (x1, y1) = start, end
    length = float(np.hypot(x1 - x0, y1 - y0))
    steps = max(1, int(length // dash))
    for k in range(0, steps, 2):
        a, b = k / steps, min(1.0, (k + 1) / steps)
        segment = (x0 + a * (x1 - x0), y0 + a * (y1 - y0), x0 + b * (x1 - x0), y0 + b * (y1 - y0))
        draw.line(segment, fill=colour, width=2)


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
    bands: dict[str, tuple[Sequence[float], Sequence[float]]] | None = None,
    hlines: Sequence[tuple[float, str]] = (),
    vlines: Sequence[tuple[float, str]] = (),
    ylim: tuple[float, float] | None = None,
    font_size: int = 12,
) -> torch.Tensor:
    """A line chart as uint8 ``(3, height, width)``: axes with round ticks, one colour per curve, a legend below.

    Drawn with PIL only (no matplotlib), so a callback can log it through any image sink. Non-finite values
    (``nan``, ``inf``) break a curve instead of spoiling the axis range. The axes always hold every finite value,
    interval and reference line (nothing is clipped as an outlier).

    Args:
        curves: ``{name: y values}``; without ``x`` each curve is drawn against ``0, 1, 2, ...``.
        x: shared x values; every curve must then have ``len(x)`` values.
        title, xlabel, ylabel: text above the plot, under the x axis and above the y axis.
        width, height: the picture size in pixels.
        bands: ``{name: (low values, high values)}``: an interval drawn as a light band in the curve's colour.
        hlines: ``(y, label)`` reference lines drawn dashed across the plot (e.g. an alert threshold), with their
            label in the legend.
        vlines: ``(x, label)`` markers drawn as dashed vertical lines labelled at the top (e.g. an alert epoch).
        ylim: fixed y range (still widened to hold the data), e.g. ``(0, 1)`` for similarities.
        font_size: size of the title (the other text is one point smaller); larger for pictures shown shrunk.

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
    bands = dict(bands or {})
    unknown = [b for b in bands if b not in curves]
    if unknown:
        raise ValueError(f"bands {unknown} name no curve; give bands for curves among {list(curves)}")

    font, small = _font(font_size), _font(font_size - 1)
    lh, slh = _line_height(font), _line_height(small)
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)

    band_arrays = {name: (_floats(lo), _floats(hi)) for name, (lo, hi) in bands.items()}
    finite_x = np.concatenate([s[1][np.isfinite(s[1]) & np.isfinite(s[2])] for s in series])
    include = [v for lo_hi in band_arrays.values() for v in lo_hi for v in v.tolist()] + [v for v, _ in hlines]
    ys = [float(v) for s in series for v in s[2][np.isfinite(s[1]) & np.isfinite(s[2])]]
    x_axis = epoch_axis(finite_x.tolist(), include=[v for v, _ in vlines], target=max(2, min(8, (width - 80) // 60)))

    # legend entries (swatch + name) flow under the plot, wrapping onto as many lines as needed
    swatch, gap = 18, 14
    names = [_ellipsize(n, width - 20 - swatch - 4, small) for n, _, _ in series]
    names += [_ellipsize(label, width - 20 - swatch - 4, small) for _, label in hlines]
    entry_w = [swatch + 4 + _text_width(n, small) for n in names]
    legend_lines = _wrap_flow(entry_w, width - 20, gap)

    top = 6 + (lh + 4 if title else 0) + (slh if ylabel else 0) + slh // 2 + (slh if vlines else 0)
    bottom = height - (6 + len(legend_lines) * slh + 4 + (slh if xlabel else 0) + slh + 6)
    # as many y ticks as the plot's height holds, a line of tick text and some air each (3 to 5)
    y_axis = value_axis(ys, include=include, ylim=ylim, target=max(3, min(5, int((bottom - top) / (1.5 * slh)))))
    x_lo, x_hi, y_lo, y_hi = x_axis.lo, x_axis.hi, y_axis.lo, y_axis.hi
    xt, yt, xt_labels, yt_labels = x_axis.ticks, y_axis.ticks, x_axis.labels, y_axis.labels
    left = 8 + max(_text_width(s, small) for s in yt_labels) + 6
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
        y_label_y = top - slh - slh // 2 + 2 - (slh if vlines else 0)  # above the markers' labels
        draw.text((4, y_label_y), _ellipsize(ylabel, width - 8, small), fill=(60, 60, 60), font=small)
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

    for k, (name, xs, _) in enumerate(series):
        if name not in band_arrays:
            continue
        lo, hi = band_arrays[name]
        band_rgb = tint(PALETTE[k % len(PALETTE)])
        ok = np.isfinite(xs) & np.isfinite(lo) & np.isfinite(hi)
        for j in range(len(xs)):  # a bar per point, joined into a band between neighbours
            if ok[j]:
                draw.rectangle((px(xs[j]) - 2, py(hi[j]), px(xs[j]) + 2, py(lo[j])), fill=band_rgb)
            if j + 1 < len(xs) and ok[j] and ok[j + 1]:
                a, b = j, j + 1
                draw.polygon(
                    [(px(xs[a]), py(hi[a])), (px(xs[b]), py(hi[b])), (px(xs[b]), py(lo[b])), (px(xs[a]), py(lo[a]))],
                    fill=band_rgb,
                )
    n_curves = len(series)
    for j, (value, _) in enumerate(hlines):
        colour = _REFERENCE_RGB[j % len(_REFERENCE_RGB)]
        _dashed(draw, (left, py(value)), (right, py(value)), colour)
    for value, label in vlines:
        x0 = px(value)
        _dashed(draw, (x0, top), (x0, bottom), ALERT_RGB)
        label = _ellipsize(label, width - 8, small)
        tx = min(max(2, x0 - _text_width(label, small) / 2), width - _text_width(label, small) - 3)
        draw.text((tx, top - slh - 1), label, fill=ALERT_RGB, font=small)
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
            colour = PALETTE[i % len(PALETTE)] if i < n_curves else _REFERENCE_RGB[(i - n_curves) % 2]
            if i < n_curves:
                draw.line((lx, ly + slh // 2, lx + swatch, ly + slh // 2), fill=colour, width=3)
            else:  # a reference line: dashed as in the plot
                _dashed(draw, (lx, ly + slh // 2), (lx + swatch, ly + slh // 2), colour)
            draw.text((lx + swatch + 4, ly), names[i], fill=(0, 0, 0), font=small)
            lx += entry_w[i] + gap
        ly += slh
    return _from_pil(img)
