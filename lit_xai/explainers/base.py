"""The explainer contract and registry.

Two kinds of explainers, both plain objects configured in their constructor (so LightningCLI/YAML can build them
with ``class_path``/``init_args``) and called as ``explainer(model, images, targets)``:

* a **map** explainer (:class:`Explainer`) returns one signed or non-negative heatmap per image, ``(N, H, W)``;
* a **concept** explainer (:class:`ConceptExplainer`) returns :class:`Concepts`: ``(N, K, H, W)`` maps of ``K``
  concepts (channels of one layer) per image, their channel ids and the layer.

``__call__`` prepares the model once (a deep copy in eval mode with frozen parameters and gradients enabled, see
:func:`~lit_xai.explainers.explanation_model`) and hands it to :meth:`Explainer.explain`. Code that runs several
explainers on the same model (:func:`lit_xai.explainers.explain`) prepares it once and calls ``explain`` directly.

Example:
    >>> import torch
    >>> from lit_xai.models.architectures import build_architecture
    >>> net = build_architecture("tiny_resnet", num_classes=2)
    >>> [build_explainer(name).name for name in ("lrp", "gradcam")]
    ['lrp', 'gradcam']
    >>> build_explainer("lrp")(net, torch.rand(2, 3, 32, 32), torch.tensor([0, 1])).shape
    torch.Size([2, 32, 32])
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ._core import as_targets, explanation_model
from .errors import ExplainerNotApplicable
from .inputs import check_images

__all__ = [
    "EXPLAINERS",
    "ExplainerNotApplicable",
    "CallableExplainer",
    "ConceptExplainer",
    "Concepts",
    "Explainer",
    "build_explainer",
    "register_explainer",
]


class Explainer:
    """Base class of map explainers: ``explainer(model, images, targets) -> (N, H, W)``.

    Subclasses implement :meth:`explain` on an already prepared network and may override :meth:`check`, which
    resolves everything the explainer needs from a model (layers, canonizers, composite) without running it, so
    that a monitor can fail at fit start instead of after an epoch.

    Attributes:
        name: registry name (set by :func:`register_explainer`).
        kind: ``"map"`` or ``"concept"``.
        copy_model: explain a deep copy (default) so the caller's model cannot change.
        signed: True when maps carry signed relevance (LRP, CRP: render on a diverging scale centred on 0), False
            for non-negative maps (Grad-CAM: a one-sided scale). Renderers and monitors read this attribute instead
            of knowing explainers by name.
    """

    name: ClassVar[str] = ""
    kind: ClassVar[str] = "map"
    signed: bool = True
    copy_model: bool = True
    #: the copy shares parameter / buffer storage with the model (:func:`explanation_model`'s ``share_tensors``):
    #: only for explainers that never write weights in place (canonizers rebinding ``.data`` are fine)
    share_tensors: ClassVar[bool] = False

    @property
    def label(self) -> str:
        """Short unique label used in logged tags (e.g. ``"lrp"``, ``"lrp_epsilon_gamma_box"``)."""
        return self.name or type(self).__name__.lower()

    def describe(self, model: nn.Module | None = None) -> str:
        """Human-readable description for legends (method and its settings)."""
        return self.label

    def check(self, model: nn.Module) -> None:
        """Raise ``ValueError`` when this explainer cannot explain ``model`` (missing layer, unknown composite, ...)."""

    def explain(self, net: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> Any:
        """Explain ``images`` for class indices ``targets`` ``(N,)`` on a prepared ``net`` (no copy, no restore)."""
        raise NotImplementedError(f"{type(self).__name__} must implement explain(net, images, targets)")

    def __call__(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor | int) -> Any:
        check_images(images, type(self).__name__)
        targets = as_targets(targets, images.shape[0], torch.device("cpu"))
        with explanation_model(model, self.copy_model, share_tensors=self.share_tensors) as net:
            out = self.explain(net, images, targets)
        return out.to(images.device)

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({settings})"


@dataclass
class Concepts:
    """Output of a concept explainer.

    Attributes:
        maps: ``(N, K, H, W)`` conditional heatmaps, one per (image, concept).
        channels: ``(N, K)`` channel ids of the concepts at ``layer``.
        layer: full module name of the concept layer.
        shares: ``(N, K)`` each concept's share of the layer's total absolute relevance (``None`` if unknown).
    """

    maps: torch.Tensor
    channels: torch.Tensor
    layer: str
    shares: torch.Tensor | None = None

    def __iter__(self) -> Iterator[torch.Tensor]:
        # ``maps, channels = crp(...)`` keeps working for code written against the tuple return
        yield self.maps
        yield self.channels

    def to(self, device: torch.device | str) -> Concepts:
        shares = None if self.shares is None else self.shares.to(device)
        return Concepts(self.maps.to(device), self.channels.to(device), self.layer, shares)


class ConceptExplainer(Explainer):
    """Base class of concept explainers: ``explainer(model, images, targets) -> Concepts``."""

    kind: ClassVar[str] = "concept"


class CallableExplainer(Explainer):
    """Wraps a plain ``fn(model, images, targets) -> (N, H, W)`` as a map explainer.

    Args:
        fn: the function; it receives the prepared (copied, eval-mode) model.
        label: name used in logged tags.
        signed: whether ``fn`` returns signed maps (default) or non-negative ones.

    Example:
        >>> import torch
        >>> saliency = CallableExplainer(lambda m, x, t: x.abs().sum(1), label="abs_input")
        >>> saliency(torch.nn.Conv2d(3, 2, 1), torch.ones(1, 3, 4, 4), 0).shape
        torch.Size([1, 4, 4])
    """

    def __init__(
        self, fn: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor], label: str = "", signed: bool = True
    ) -> None:
        self.fn = fn
        self._label = label or getattr(fn, "__name__", "custom")
        self.signed = signed  # per instance: the function decides

    @property
    def label(self) -> str:
        return self._label

    def explain(self, net: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.fn(net, images, targets)


#: registered explainer classes by name (filled by :func:`register_explainer`)
EXPLAINERS: dict[str, type[Explainer]] = {}


def register_explainer(name: str) -> Callable[[type[Explainer]], type[Explainer]]:
    """Class decorator registering an explainer under ``name`` (duplicates raise).

    Example:
        >>> @register_explainer("input_x")
        ... class InputTimes(Explainer):
        ...     def explain(self, net, images, targets):
        ...         return images.sum(1)
        >>> "input_x" in EXPLAINERS
        True
        >>> _ = EXPLAINERS.pop("input_x")  # keep the doctest free of side effects
    """

    def add(cls: type[Explainer]) -> type[Explainer]:
        if name in EXPLAINERS:
            raise ValueError(f"an explainer named {name!r} is already registered ({EXPLAINERS[name].__name__})")
        if not issubclass(cls, Explainer):
            raise TypeError(f"{cls.__name__} must subclass lit_xai.explainers.Explainer")
        cls.name = name
        EXPLAINERS[name] = cls
        return cls

    return add


def build_explainer(spec: str | Explainer | Callable[..., torch.Tensor]) -> Explainer:
    """An explainer from a registered name, an explainer object, or a plain callable.

    Raises:
        ValueError: for an unknown name (the message lists the registered ones).
    """
    if isinstance(spec, Explainer):
        return spec
    if isinstance(spec, str):
        try:
            return EXPLAINERS[spec]()
        except KeyError:
            raise ValueError(
                f"unknown explainer {spec!r}; choose from {', '.join(sorted(EXPLAINERS))} or pass an explainer object"
            ) from None
    if callable(spec):
        return CallableExplainer(spec)
    raise TypeError(f"an explainer must be a name, an Explainer or a callable, got {type(spec).__name__}")
