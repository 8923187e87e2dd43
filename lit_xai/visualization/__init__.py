"""The one renderer: signed relevance to RGB, overlays, legends, captioned uint8 grids, line plots and tables.

Everything is torch in, torch out, channels first. Relevance is signed, so colours are centred on zero: a symmetric
scale per image (a high percentile of ``|heat|``, robust to the few extreme pixels LRP produces) maps ``-s..s`` onto
a diverging colour map whose middle is the neutral colour. Min-max normalisation (``make_grid(normalize=True)``)
would move zero to an arbitrary colour and is avoided. ``zennit.image.imgify`` is not used: it fails with pillow 13.

One module per job: :mod:`~lit_xai.visualization.colors` (colour maps, overlays), :mod:`~lit_xai.visualization.text`
(fonts, caption wrapping), :mod:`~lit_xai.visualization.grids` (explanation, concept and timeline grids with their
legend), :mod:`~lit_xai.visualization.charts` (line plots), :mod:`~lit_xai.visualization.tables`,
:mod:`~lit_xai.visualization.verdict` (the shortcut verdict) and :mod:`~lit_xai.visualization.monitor` (the
ExplanationMonitor's pictures); the white canvas they share is in ``_canvas``. Import from the package:
``from lit_xai.visualization import explanation_grid``. Imports nothing of lit_xai.

Example:
    >>> import torch
    >>> images, heat = torch.rand(2, 3, 32, 32), torch.randn(2, 32, 32)
    >>> grid = explanation_grid(images, heat, ["true 1 | pred 0", "true 0 | pred 0"], method="LRP", tile=48)
    >>> grid.dtype, grid.shape[0]
    (torch.uint8, 3)
"""

from __future__ import annotations

from .charts import _nice_ticks, line_plot  # noqa: F401  (_nice_ticks: tested directly)
from .colors import (
    COLORMAPS,
    MASK_RGB,
    NEGATIVE_RGB,
    PALETTE,
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
from .text import _font, _text_width, caption_lines, draw_text  # noqa: F401  (_font, _text_width: used by tests)
from .verdict import CandidateStrip, ProbeStrip, candidate_strip, verdict_picture

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
