"""The explainers' own exception, below every explainer module (the base contract and the layer lookup raise it)."""

from __future__ import annotations

__all__ = ["ExplainerNotApplicable"]


class ExplainerNotApplicable(ValueError):
    """The explainer does not apply to this kind of network by design (e.g. CRP on a Vision Transformer); a monitor
    running its default explainers skips it, while an explicitly requested one is an error."""
