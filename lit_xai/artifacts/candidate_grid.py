"""Moved to :mod:`lit_xai.shortcuts.candidate_grid` (issue 34); this old path is kept for one release, then removed."""

from .._moved import forward_all

__getattr__ = forward_all(__name__, "lit_xai.shortcuts.candidate_grid")
