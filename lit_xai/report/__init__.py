"""Sharing a run: one self-contained HTML report per run (verdict first, pictures embedded, no network, no
server), read from TensorBoard event files or from the fallback folder, and the fallback folder's index page.

``lit-xai report RUN_DIR -o report.html`` on the command line; :class:`lit_xai.callbacks.RunReport` at fit end.
"""

from .build import BuiltReport, write_report
from .index import write_index
from .render import render_report
from .run_data import ImageEntry, RunData, TextEntry, read_run

__all__ = ["BuiltReport", "ImageEntry", "RunData", "TextEntry", "read_run", "render_report", "write_index",
           "write_report"]
