"""Moved to :mod:`lit_xai.shortcuts.audit` (issue 34), split by job (scan, statistics, report, items, cache); this
old path is kept for one release, then removed."""

from .._moved import forward_all

__getattr__ = forward_all(
    __name__,
    "lit_xai.shortcuts.audit",
    "lit_xai.shortcuts.audit.scan",
    "lit_xai.shortcuts.audit.statistics",
    "lit_xai.shortcuts.audit.report",
    "lit_xai.shortcuts.audit.items",
    "lit_xai.shortcuts.audit.cache",
)
