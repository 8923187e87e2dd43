"""Tables as images: every column as wide as its widest cell, so no text is ever clipped."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image, ImageDraw

from ._canvas import _from_pil
from .text import _font, _line_height, _text_width

__all__ = ["table_image"]

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
