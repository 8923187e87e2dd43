"""The one renderer: signed relevance to RGB, overlays, legends, captioned uint8 grids, line plots and tables.

Everything is torch in, torch out, channels first. Relevance is signed, so colours are centred on zero: a symmetric
scale per image (a high percentile of ``|heat|``, robust to the few extreme pixels LRP produces) maps ``-s..s`` onto
a diverging colour map whose middle is the neutral colour. Min-max normalisation (``make_grid(normalize=True)``)
would move zero to an arbitrary colour and is avoided. ``zennit.image.imgify`` is not used: it fails with pillow 13.

One module per job: :mod:`~lit_xai.visualization.colors` (colour maps, overlays), :mod:`~lit_xai.visualization.text`
(fonts, caption wrapping), :mod:`~lit_xai.visualization.grids` (explanation, concept and timeline grids with their
legend), :mod:`~lit_xai.visualization.charts` (line plots), :mod:`~lit_xai.visualization.tables`,
:mod:`~lit_xai.visualization.verdict` (the shortcut verdict) and :mod:`~lit_xai.visualization.monitor` (the
ExplanationMonitor's pictures); the white canvas they share is in ``_canvas``;
axis ranges, ticks and the palette of every chart (these PNG charts and the report's SVG ones) in
:mod:`~lit_xai.visualization.axes`. Import from the package:
``from lit_xai.visualization import explanation_grid``. Imports nothing of lit_xai. The names load on first use
(PEP 562), so ``lit_xai.visualization.axes`` imports without torch (the report uses it).

Example:
    >>> import torch
    >>> images, heat = torch.rand(2, 3, 32, 32), torch.randn(2, 32, 32)
    >>> grid = explanation_grid(images, heat, ["true 1 | pred 0", "true 0 | pred 0"], method="LRP", tile=48)
    >>> grid.dtype, grid.shape[0]
    (torch.uint8, 3)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: each public name and the submodule it lives in (loaded on first use)
_HOME = {
    "_nice_ticks": "charts",  # tested directly
    "line_plot": "charts",
    "COLORMAPS": "colors",
    "MASK_RGB": "colors",
    "NEGATIVE_RGB": "colors",
    "PALETTE": "axes",
    "POSITIVE_RGB": "colors",
    "channel_note": "colors",
    "dimmed": "colors",
    "heatmap_to_rgb": "colors",
    "negative_share": "colors",
    "overlay": "colors",
    "symmetric_scale": "colors",
    "to_float01": "colors",
    "visible_share": "colors",
    "NEAR_BLANK": "grids",
    "concept_grid": "grids",
    "concept_label": "grids",
    "explanation_grid": "grids",
    "legend_strip": "grids",
    "timeline_grid": "grids",
    "drift_chart": "monitor",
    "outcome_grid": "monitor",
    "probe_grids": "monitor",
    "timeline_grids": "monitor",
    "table_image": "tables",
    "_font": "text",  # used by tests
    "_text_width": "text",  # used by tests
    "caption_lines": "text",
    "draw_text": "text",
    "CandidateStrip": "verdict",
    "ProbeStrip": "verdict",
    "candidate_strip": "verdict",
    "verdict_picture": "verdict",
}

if TYPE_CHECKING:  # what type checkers and IDEs see
    from .axes import PALETTE
    from .charts import _nice_ticks, line_plot  # noqa: F401
    from .colors import (
        COLORMAPS,
        MASK_RGB,
        NEGATIVE_RGB,
        POSITIVE_RGB,
        channel_note,
        dimmed,
        heatmap_to_rgb,
        negative_share,
        overlay,
        symmetric_scale,
        to_float01,
        visible_share,
    )
    from .grids import NEAR_BLANK, concept_grid, concept_label, explanation_grid, legend_strip, timeline_grid
    from .monitor import drift_chart, outcome_grid, probe_grids, timeline_grids
    from .tables import table_image
    from .text import _font, _text_width, caption_lines, draw_text  # noqa: F401
    from .verdict import CandidateStrip, ProbeStrip, candidate_strip, verdict_picture


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value  # once loaded, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME))


__all__ = [
    "COLORMAPS",
    "MASK_RGB",
    "NEAR_BLANK",
    "NEGATIVE_RGB",
    "PALETTE",
    "POSITIVE_RGB",
    "CandidateStrip",
    "ProbeStrip",
    "candidate_strip",
    "caption_lines",
    "channel_note",
    "concept_grid",
    "concept_label",
    "dimmed",
    "draw_text",
    "drift_chart",
    "explanation_grid",
    "heatmap_to_rgb",
    "legend_strip",
    "line_plot",
    "negative_share",
    "outcome_grid",
    "overlay",
    "probe_grids",
    "symmetric_scale",
    "table_image",
    "timeline_grid",
    "timeline_grids",
    "to_float01",
    "verdict_picture",
    "visible_share",
]
