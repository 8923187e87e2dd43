"""Heatmaps to pictures: signed relevance to RGB, overlays, captioned uint8 grids for TensorBoard.

Everything is torch in, torch out, channels first. Relevance is signed, so colours are centred on zero: a symmetric
scale per image (a high percentile of ``|heat|``, robust to the few extreme pixels LRP produces) maps ``-s..s`` onto
a diverging colour map whose middle is the neutral colour. Min-max normalisation (``make_grid(normalize=True)``)
would move zero to an arbitrary colour and is avoided. ``zennit.image.imgify`` is not used: it fails with pillow 13.

Example:
    >>> import torch
    >>> images, heat = torch.rand(2, 3, 32, 32), torch.randn(2, 32, 32)
    >>> grid = make_grid_uint8([images, heatmap_to_rgb(heat), overlay(images, heat)], captions=["a", "b"])
    >>> grid.dtype, grid.shape[0]
    (torch.uint8, 3)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

__all__ = [
    "COLORMAPS",
    "PALETTE",
    "caption_lines",
    "line_plot",
    "table_image",
    "draw_text",
    "explanation_grid",
    "heatmap_to_rgb",
    "make_grid_uint8",
    "overlay",
    "symmetric_scale",
    "to_float01",
]

#: diverging colour maps as (position in [-1, 1], RGB) nodes; position 0 is the neutral colour
COLORMAPS: dict[str, tuple[tuple[float, tuple[float, float, float]], ...]] = {
    # white at zero, blue negative, red positive
    "bwr": ((-1.0, (0.0, 0.0, 1.0)), (0.0, (1.0, 1.0, 1.0)), (1.0, (1.0, 0.0, 0.0))),
    # zennit's 'coldnhot': black at zero, cyan..blue negative, red..yellow..white positive
    "coldnhot": (
        (-1.0, (0.0, 1.0, 1.0)),
        (-0.5, (0.0, 0.0, 1.0)),
        (0.0, (0.0, 0.0, 0.0)),
        (1 / 3, (1.0, 0.0, 0.0)),
        (2 / 3, (1.0, 1.0, 0.0)),
        (1.0, (1.0, 1.0, 1.0)),
    ),
}


def _as_batch(heat: torch.Tensor) -> torch.Tensor:
    if heat.ndim == 2:
        heat = heat.unsqueeze(0)
    if heat.ndim != 3:
        raise ValueError(f"heatmaps must be (N, H, W) or (H, W), got shape {tuple(heat.shape)}")
    return heat.detach().float().cpu()


def symmetric_scale(heat: torch.Tensor, percentile: float = 99.5, per_image: bool = True) -> torch.Tensor:
    """Scale ``s`` (shape ``(N,)``) such that ``heat / s`` in ``[-1, 1]`` clips only the top ``100 - percentile`` %.

    It is the ``percentile`` of ``|heat|`` (per image, or over the batch with ``per_image=False``, so maps stay
    comparable). All-zero maps get ``s = 1`` so they render neutral instead of dividing by zero.
    """
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must lie in (0, 100], got {percentile}")
    mags = _as_batch(heat).abs().reshape(heat.shape[0] if heat.ndim == 3 else 1, -1)
    if not per_image:
        mags = mags.reshape(1, -1)
    # kthvalue instead of torch.quantile: no input-size limit, exact order statistic
    k = max(1, min(mags.shape[1], int(np.ceil(percentile / 100 * mags.shape[1]))))
    scale = mags.kthvalue(k, dim=1).values
    scale = torch.where(scale > 0, scale, mags.amax(1))  # sparse maps: fall back to the maximum
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    n = heat.shape[0] if heat.ndim == 3 else 1
    return scale.expand(n).clone()


def _apply_colormap(values: torch.Tensor, cmap: str) -> torch.Tensor:
    """``values`` in ``[-1, 1]`` of shape ``(N, H, W)`` to RGB ``(N, 3, H, W)`` by piecewise-linear interpolation."""
    try:
        nodes = COLORMAPS[cmap]
    except KeyError:
        raise ValueError(f"unknown colour map {cmap!r}; choose one of: {', '.join(sorted(COLORMAPS))}") from None
    pos = torch.tensor([p for p, _ in nodes])
    rgb = torch.tensor([c for _, c in nodes])
    v = values.clamp(-1, 1)
    idx = torch.bucketize(v, pos[1:-1])  # segment index 0..len-2
    lo, hi = pos[idx], pos[idx + 1]
    frac = ((v - lo) / (hi - lo)).unsqueeze(-1)
    out = rgb[idx] * (1 - frac) + rgb[idx + 1] * frac
    return out.permute(0, 3, 1, 2).contiguous()


def heatmap_to_rgb(
    heat: torch.Tensor, percentile: float = 99.5, cmap: str = "bwr", per_image: bool = True
) -> torch.Tensor:
    """Signed heatmaps ``(N, H, W)`` to RGB ``(N, 3, H, W)`` float in ``[0, 1]``, zero at the neutral colour.

    Args:
        heat: signed relevance (LRP/CRP) or non-negative maps (Grad-CAM), ``(N, H, W)`` or ``(H, W)``.
        percentile: symmetric clipping: ``|heat|`` above this percentile saturates (robust to outliers).
        cmap: ``"bwr"`` (white at zero; positive red, negative blue) or ``"coldnhot"`` (black at zero).
        per_image: scale each map on its own (default) or the batch jointly.
    """
    h = _as_batch(heat)
    scale = symmetric_scale(h, percentile, per_image)
    return _apply_colormap(h / scale[:, None, None], cmap)


def to_float01(images: torch.Tensor) -> torch.Tensor:
    """Images ``(N, C, H, W)`` as float ``[0, 1]`` with 3 channels (uint8 is divided by 255, grey is repeated)."""
    if images.ndim == 3:
        images = images.unsqueeze(0)
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be (N, 1|3, H, W), got shape {tuple(images.shape)}")
    x = images.detach().cpu()
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return x.clamp(0, 1)


def overlay(
    images01: torch.Tensor, heat: torch.Tensor, alpha: float = 0.7, percentile: float = 99.5, cmap: str = "bwr"
) -> torch.Tensor:
    """Blend heatmap colours onto images ``[0, 1]``; opacity grows with ``|relevance|``, so irrelevant pixels keep
    the image unchanged whatever the colour map's neutral colour is.

    Returns:
        ``(N, 3, H, W)`` float in ``[0, 1]``.
    """
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    img = to_float01(images01)
    h = _as_batch(heat)
    if h.shape[0] != img.shape[0] or h.shape[-2:] != img.shape[-2:]:
        raise ValueError(f"heatmaps {tuple(h.shape)} do not match images {tuple(img.shape)}")
    v = (h / symmetric_scale(h, percentile)[:, None, None]).clamp(-1, 1)
    weight = alpha * v.abs().unsqueeze(1)
    return (img * (1 - weight) + _apply_colormap(v, cmap) * weight).clamp(0, 1)


def _font(size: int = 11) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # pillow < 10.1 has no size argument
        return ImageFont.load_default()


def _text_width(text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont) -> int:
    return int(np.ceil(font.getlength(text))) if text else 0


def _line_height(font: ImageFont.ImageFont | ImageFont.FreeTypeFont) -> int:
    ascent, descent = font.getmetrics() if hasattr(font, "getmetrics") else (10, 2)
    return int(ascent + descent + 2)


def _to_pil(image: torch.Tensor) -> Image.Image:
    arr = image.detach().cpu()
    arr = arr if arr.dtype == torch.uint8 else (arr.float().clamp(0, 1) * 255).round().to(torch.uint8)
    return Image.fromarray(arr.permute(1, 2, 0).numpy())


def _from_pil(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1).contiguous()


def _ellipsize(text: str, width_px: int, font: ImageFont.ImageFont | ImageFont.FreeTypeFont) -> str:
    """``text`` shortened with an ellipsis so that it is at most ``width_px`` wide."""
    if _text_width(text, font) <= width_px:
        return text
    lo, hi = 0, len(text)
    while lo < hi:  # longest prefix that fits together with the ellipsis
        mid = (lo + hi + 1) // 2
        if _text_width(text[:mid].rstrip() + "…", font) <= width_px:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo].rstrip() + "…" if lo or _text_width("…", font) <= width_px else ""


def caption_lines(
    text: str,
    width_px: int,
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont | None = None,
    max_lines: int | None = None,
) -> list[str]:
    """Wrap ``text`` into lines at most ``width_px`` wide: the one caption function of every grid.

    Words wrap at spaces (and after ``|``, ``,``, ``;`` separators); a word wider than the line is cut with an
    ellipsis; explicit ``"\\n"`` starts a new line. With ``max_lines`` the last kept line ends with an ellipsis
    when text had to be dropped, so a caption never runs past its box.

    Example:
        >>> caption_lines("true melanoma | pred nevus | p=0.93", 90, _font(11))
        ['true melanoma |', 'pred nevus |', 'p=0.93']
    """
    font = font if font is not None else _font(11)
    if width_px <= 0:
        raise ValueError(f"width_px must be positive, got {width_px}")
    lines: list[str] = []
    for paragraph in str(text).split("\n"):
        words = paragraph.split()
        current = ""
        for word in words:
            candidate = f"{current} {word}" if current else word
            if _text_width(candidate, font) <= width_px:
                current = candidate
                continue
            if current:
                lines.append(current)
            current = word if _text_width(word, font) <= width_px else _ellipsize(word, width_px, font)
        lines.append(current)
    while len(lines) > 1 and not lines[-1]:
        lines.pop()
    if max_lines is not None and len(lines) > max_lines:
        kept = lines[:max_lines]
        kept[-1] = _ellipsize(kept[-1] + " …", width_px, font) if kept[-1] else "…"
        if not kept[-1].endswith("…"):
            kept[-1] = _ellipsize(kept[-1] + "…", width_px, font)
        lines = kept
    return lines


def draw_text(
    image: torch.Tensor,
    text: str,
    xy: tuple[int, int] = (1, 1),
    color: tuple[int, int, int] = (255, 255, 255),
    background: tuple[int, int, int] | None = (0, 0, 0),
    size: int = 10,
) -> torch.Tensor:
    """Render ``text`` with PIL's default font onto one image ``(3, H, W)`` (float ``[0, 1]`` or uint8).

    A filled background box keeps captions readable on any image. Returns a new tensor of the input's dtype.
    """
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be (3, H, W), got shape {tuple(image.shape)}")
    if not text:
        return image.clone()
    is_uint8 = image.dtype == torch.uint8
    arr = image.detach().cpu()
    arr = arr if is_uint8 else (arr.float().clamp(0, 1) * 255).round().to(torch.uint8)
    pil = Image.fromarray(arr.permute(1, 2, 0).numpy())
    draw = ImageDraw.Draw(pil)
    font = _font(size)
    if background is not None:
        box = draw.textbbox(xy, text, font=font)
        draw.rectangle((box[0] - 1, box[1] - 1, box[2] + 1, box[3] + 1), fill=background)
    draw.text(xy, text, fill=color, font=font)
    out = torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1)
    return out if is_uint8 else out.float() / 255.0


def make_grid_uint8(
    columns: Sequence[torch.Tensor],
    captions: Sequence[str | None] | None = None,
    padding: int = 2,
    pad_value: int = 255,
    text_size: int = 10,
) -> torch.Tensor:
    """A uint8 ``(3, H, W)`` grid for ``SummaryWriter.add_image``: one row per image, one column per tensor.

    Args:
        columns: tensors ``(N, 1|3, h, w)`` (float ``[0, 1]`` or uint8), e.g. ``[images, heatmap_rgb, overlays]``;
            all with the same ``N``, ``h`` and ``w``.
        captions: optional text per row (e.g. ``"true 1 | pred 0 | p=0.93"``), drawn at the row's top left (the
            text may run across the row's tiles, never onto another row).
        padding: pixels between tiles; ``pad_value`` their grey level.
        text_size: caption font size in pixels.
    """
    if not columns:
        raise ValueError("need at least one column")
    cols = [to_float01(c) for c in columns]
    n, _, h, w = cols[0].shape
    for c in cols:
        if c.shape != (n, 3, h, w):
            raise ValueError(f"all columns must have shape (N, C, H, W) = {(n, h, w)}, got {tuple(c.shape)}")
    if captions is not None and len(captions) != n:
        raise ValueError(f"need one caption per row ({n}), got {len(captions)}")
    grid = torch.full(
        (3, n * h + (n + 1) * padding, len(cols) * w + (len(cols) + 1) * padding), pad_value, dtype=torch.uint8
    )
    for i in range(n):
        top = padding + i * (h + padding)
        for j, col in enumerate(cols):
            left = padding + j * (w + padding)
            grid[:, top : top + h, left : left + w] = (col[i] * 255).round().to(torch.uint8)
        if captions is not None and captions[i]:
            # drawn across the row's band, so captions longer than one tile stay readable; clipped to the band
            band = grid[:, top : top + h, padding : -padding or None]
            grid[:, top : top + h, padding : -padding or None] = draw_text(band, str(captions[i]), size=text_size)
    return grid


def explanation_grid(
    images01: torch.Tensor,
    heat: torch.Tensor,
    captions: Sequence[str | None] | None = None,
    alpha: float = 0.7,
    percentile: float = 99.5,
    cmap: str = "bwr",
) -> torch.Tensor:
    """The standard panel ``input | heatmap | overlay`` per image as a uint8 ``(3, H, W)`` grid."""
    img = to_float01(images01)
    return make_grid_uint8(
        [img, heatmap_to_rgb(heat, percentile, cmap), overlay(img, heat, alpha, percentile, cmap)], captions
    )


# ---------------------------------------------------------------------------------------------------------------
# line plots and tables (PIL only): curves and summaries for TensorBoard's image tab, W&B and MLflow alike

#: distinct, colour-blind friendly line colours (Tableau 10)
PALETTE: tuple[tuple[int, int, int], ...] = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
)


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


def table_image(header: Sequence[str], rows: Sequence[Sequence[str]], *, title: str = "") -> torch.Tensor:
    """A table as uint8 ``(3, H, W)``; every column is as wide as its widest cell, so no text is ever clipped.

    Cells may hold several lines (``"\\n"``). Rows alternate a light shade for reading across.

    Example:
        >>> img = table_image(["method", "drift"], [["lrp", "0.12"], ["gradcam", "0.30"]], title="epoch 3")
        >>> img.dtype, img.shape[0]
        (torch.uint8, 3)
    """
    header = [str(h) for h in header]
    if not header:
        raise ValueError("table_image needs a header with at least one column")
    body = [[str(c) for c in r] for r in rows]
    for i, r in enumerate(body):
        if len(r) != len(header):
            raise ValueError(f"row {i} has {len(r)} cells but the header has {len(header)}: {r}")
    font, bold = _font(12), _font(12)
    lh = _line_height(font)
    pad_x, pad_y = 8, 3
    table = [header, *body]
    col_w = [
        max(_text_width(line, font) for r in table for line in r[j].split("\n")) + 2 * pad_x for j in range(len(header))
    ]
    row_h = [max(len(c.split("\n")) for c in r) * lh + 2 * pad_y for r in table]
    title_h = lh + 6 if title else 0
    width = max(sum(col_w), _text_width(title, font) + 2 * pad_x) + 1
    height = title_h + sum(row_h) + 1
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    if title:
        draw.text((pad_x, 3), title, fill=(0, 0, 0), font=font)
    y = title_h
    for i, (r, h) in enumerate(zip(table, row_h)):
        fill = (225, 228, 235) if i == 0 else ((246, 246, 246) if i % 2 == 0 else (255, 255, 255))
        draw.rectangle((0, y, sum(col_w), y + h), fill=fill)
        x = 0
        for j, cell in enumerate(r):
            for k, line in enumerate(cell.split("\n")):
                draw.text((x + pad_x, y + pad_y + k * lh), line, fill=(0, 0, 0), font=bold if i == 0 else font)
            x += col_w[j]
        y += h
        if i == 0:
            draw.line((0, y, sum(col_w), y), fill=(90, 90, 90))
    x = 0
    for w in col_w[:-1]:  # light column rules
        x += w
        draw.line((x, title_h, x, height - 1), fill=(200, 200, 200))
    draw.rectangle((0, title_h, sum(col_w), height - 1), outline=(90, 90, 90))
    return _from_pil(img)
