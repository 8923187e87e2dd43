"""The grouped settings of :class:`lit_xai.callbacks.ShortcutCorrection` (pure dataclasses, YAML: plain mappings).

Each group is one concept, named like the other callbacks' settings (``every_n_epochs``, ``max_samples``, ``seed``,
``targets``, ``layer``): :class:`CAVSettings` (where and how often the artifact direction is fitted),
:class:`PenaltySettings` (the RR-ClArC / RRR penalty's hyper-parameters) and :class:`CorrectionBudget` (how much
of the training set is sampled, and the seed). Imports nothing of lit_xai but its own package's types.

Example:
    >>> CAVSettings(layer="net.layer3").every_n_epochs, PenaltySettings(weight=2.0).targets
    (1, 'all')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional, Union

__all__ = ["CAVSettings", "CorrectionBudget", "PenaltySettings", "penalty_output"]


@dataclass
class CAVSettings:
    """Where the artifact's direction (the CAV) is fitted and how often (RR-ClArC; YAML: a plain mapping).

    Args:
        layer: dotted name of the layer whose activations carry the CAV, relative to the module that returns logits
            (the LightningModule, or ``ModelSpec.module_attr``). ``None``: the architecture's Grad-CAM layer for a
            :class:`lit_xai.models.ImageClassifier` (``net.<layer>``), like the Grad-CAM explainer's ``layer``.
        pooling: CAV space: ``"flatten"`` (spatial, default) or ``"mean"`` (channels).
        every_n_epochs: refit the CAV at the start of every N-th epoch (the model changes, so does the direction).
        within_class: fit the CAV on images of this class only (index, or a class name when the datamodule, the
            module or ``ModelSpec.class_names`` name the classes): artifact vs clean within the class the artifact
            co-occurs with, so the direction does not also carry that class's features; ``None``: all classes.

    Example:
        >>> CAVSettings(pooling="mean", within_class=1).layer is None
        True
    """

    layer: Optional[str] = None
    pooling: Literal["flatten", "mean"] = "flatten"
    every_n_epochs: int = 1
    within_class: Optional[Union[int, str]] = None

    def __post_init__(self) -> None:
        if self.pooling not in ("flatten", "mean"):
            raise ValueError(f"CAVSettings: unknown pooling {self.pooling!r}; choose 'flatten' or 'mean'")
        if self.every_n_epochs < 1:
            raise ValueError(f"CAVSettings: every_n_epochs must be >= 1, got {self.every_n_epochs}")


@dataclass
class PenaltySettings:
    """The right-reason penalty of ``method="rrclarc"`` / ``"rrr"`` (not used by ``"aclarc"``; YAML: a mapping).

    Args:
        weight: lambda, the penalty's weight in the loss.
        targets: which output's derivative RR-ClArC penalises: ``"all"`` logits, the ``"true"`` or the
            ``"predicted"`` class (the ExplanationMonitor's ``targets`` words).
        scale: ``"shift"`` (default) differentiates along ``cav.shift * v``, the artifact's mean shift at the layer,
            so the penalty is the squared first-order change of the logits when an average artifact is added
            (logit^2 units; ``weight`` ~ 0.1-10 whatever the layer's size); ``"unit"`` uses the unit CAV as in the
            paper (then ``weight`` depends on the layer's scale and dimension).
        subspace: RR-ClArC: penalise the derivative along a ``k``-dimensional artifact subspace (the top paired moves
            when the registered inserter draws the artifact into the sample's clean images,
            :func:`lit_xai.correction.paired_basis`; each scaled like the CAV) instead of the one CAV direction.

    Example:
        >>> PenaltySettings(targets="pred").targets  # the old word is read as the new one
        'predicted'
    """

    weight: float = 1.0
    targets: Literal["all", "true", "predicted"] = "all"
    scale: Literal["shift", "unit"] = "shift"
    subspace: int = 1

    def __post_init__(self) -> None:
        if self.targets == "pred":  # type: ignore[comparison-overlap] - the ShortcutCorrection(output=) word
            self.targets = "predicted"
        if self.targets not in ("all", "true", "predicted"):
            raise ValueError(f"PenaltySettings: unknown targets {self.targets!r}; choose 'all', 'true' or 'predicted'")
        if self.scale not in ("shift", "unit"):
            raise ValueError(f"PenaltySettings: unknown scale {self.scale!r}; choose 'shift' or 'unit'")
        if self.weight < 0:
            raise ValueError(f"PenaltySettings: weight must be >= 0, got {self.weight}")
        if self.subspace < 1:
            raise ValueError(f"PenaltySettings: subspace must be >= 1, got {self.subspace}")
        self.weight = float(self.weight)
        self.subspace = int(self.subspace)


@dataclass
class CorrectionBudget:
    """How much of the training set the correction samples (YAML: a plain mapping), like the ShortcutMonitor's
    :class:`~lit_xai.shortcuts.watch.ShortcutBudget`.

    Args:
        max_samples: images sampled for each CAV fit, and for A-ClArC's estimate of the per-class artifact rates
            (all DDP ranks together).
        seed: seed of those samples (combined with the epoch and the rank) and of A-ClArC's insertions.

    Example:
        >>> CorrectionBudget(max_samples=128).seed
        0
    """

    max_samples: int = 512
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_samples < 4:
            raise ValueError(f"CorrectionBudget: max_samples must be >= 4, got {self.max_samples}")
        self.max_samples = int(self.max_samples)
        self.seed = int(self.seed)


def penalty_output(targets: str) -> Literal["all", "true", "pred"]:
    """The :func:`lit_xai.correction.rrclarc_penalty` ``output`` word for a :class:`PenaltySettings` ``targets``.

    Example:
        >>> penalty_output("predicted"), penalty_output("all")
        ('pred', 'all')
    """
    return "pred" if targets == "predicted" else targets  # type: ignore[return-value]
