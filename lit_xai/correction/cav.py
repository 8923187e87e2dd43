"""Concept activation vectors (CAVs) for an artifact: collect a layer's activations, fit the signal-pattern CAV.

**Estimator: the signal pattern, not a classifier's weights.** A linear classifier (SVM, logistic regression) that
separates artifact from clean activations learns a *filter*: its weights also cancel distractor directions that
happen to correlate with the labels, so its direction can point far from the direction in which the artifact
actually *moves* the activations (Haufe et al. 2014, "On the interpretation of weight vectors of linear models";
Pahde et al. 2024, "Navigating Neural Space", who show that such filter CAVs diverge from the true concept direction
and that signal-pattern CAVs correct artifacts better). Projection (P-ClArC) and the right-reason penalty
(RR-ClArC) both need that movement direction, so we use the pattern

``v ∝ cov(a, t) = E[(a - E a)(t - E t)]``

with activations ``a`` and artifact labels ``t`` in {0, 1}; for binary labels it is the difference of the class
means scaled by ``p (1 - p)``, so it is closed form, deterministic and needs no training or tuning. ``v`` is
normalised to unit length.

**Pooling.** ``"flatten"`` (default) keeps the spatial layout (``D = C*H*W``): a ring lives at the image border, and a
spatial CAV can tell "dark at the border" from "dark in the lesion". ``"mean"`` averages over positions (``D = C``),
cheaper and translation invariant; the projection then acts at every position.

Example:
    >>> import torch
    >>> acts = torch.randn(200, 5)
    >>> labels = torch.arange(200) % 2 == 0
    >>> acts[labels] += torch.tensor([0.0, 3.0, 0.0, 0.0, 0.0])
    >>> cav = fit_cav(acts, labels, layer="fc", pooling="mean")
    >>> int(cav.direction.abs().argmax()), round(float(cav.direction.norm()), 4), cav.separability > 0.95
    (1, 1.0, True)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Literal, Optional

import torch
from scipy import stats
from torch import nn

from .layers import resolve_layer

__all__ = ["CAV", "Pooling", "collect_activations", "fit_cav", "paired_basis", "pool", "separability"]

Pooling = Literal["flatten", "mean"]


def pool(activations: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    """``(N, ...)`` layer output -> ``(N, D)``: ``"flatten"`` keeps every value, ``"mean"`` averages the positions of a
    ``(N, C, H, W)`` map (2-d outputs are kept as they are)."""
    if pooling == "flatten" or activations.ndim == 2:
        return activations.flatten(1)
    if pooling == "mean":
        if activations.ndim != 4:
            raise ValueError(
                f"pooling='mean' expects a (N, C, H, W) or (N, C) output, got {tuple(activations.shape)}; "
                "use pooling='flatten'"
            )
        return activations.mean((2, 3))
    raise ValueError(f"unknown pooling {pooling!r}; choose 'flatten' or 'mean'")


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        yield
    finally:
        for module, mode in modes:
            module.training = mode


def collect_activations(
    model: nn.Module,
    layer: str,
    images: torch.Tensor,
    pooling: Pooling = "flatten",
    batch_size: int = 64,
) -> torch.Tensor:
    """Pooled activations ``(N, D)`` (float32, CPU) of ``layer`` for model inputs ``images``.

    Runs in eval mode under ``torch.no_grad()``; the hook is removed and the modules' ``training`` flags restored
    afterwards, also on error.

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten())
        >>> collect_activations(net, "1", torch.rand(5, 3, 8, 8), pooling="mean").shape
        torch.Size([5, 4])
    """
    module = resolve_layer(model, layer)
    captured: list[torch.Tensor] = []

    def hook(_m: nn.Module, _inp: object, out: torch.Tensor) -> None:
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"layer {layer!r} returns {type(out).__name__}, not a tensor; choose another layer")
        captured.append(pool(out.detach().float(), pooling).cpu())

    param = next(model.parameters(), None)
    handle = module.register_forward_hook(hook)
    try:
        with _eval_mode(model), torch.no_grad():
            for i in range(0, images.shape[0], batch_size):
                x = images[i : i + batch_size]
                if param is not None:
                    x = x.to(param.device, param.dtype if param.is_floating_point() else x.dtype)
                model(x)
    finally:
        handle.remove()
    if not captured:
        raise ValueError("no images given; pass at least one artifact and one clean image")
    return torch.cat(captured)


def separability(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """AUC of ``scores`` for ``labels`` (Mann-Whitney U / (n1 n0); ties count half): 1 = the CAV separates perfectly,
    0.5 = not at all. NaN when a group is empty."""
    labels = labels.bool().cpu()
    pos, neg = scores[labels].double().cpu().numpy(), scores[~labels].double().cpu().numpy()
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    u = stats.mannwhitneyu(pos, neg, alternative="two-sided").statistic
    return float(u / (len(pos) * len(neg)))


@dataclass
class CAV:
    """A unit concept direction at a layer, with the clean mean that P-ClArC projects onto.

    Attributes:
        direction: unit vector ``(D,)`` in pooled activation space.
        clean_mean: mean pooled activation ``(D,)`` of the clean (artifact-free) images.
        layer: the layer's dotted name (relative to the model the activations came from).
        pooling: how the layer's output was pooled (see :func:`pool`).
        separability: AUC of the scores ``(a - clean_mean) . direction`` on the fitting data.
        counts: ``(n_artifact, n_clean)`` used for the fit.
        shape: the layer's output shape without the batch (needed to apply a ``"flatten"`` CAV).
        shift: length of the artifact's mean shift, ``|mean(artifact) - mean(clean)|``, in pooled activations;
            ``shift * direction`` is how far the artifact moves an average image at this layer.
        basis: optional ``(k, D)`` orthonormal rows: a subspace of the directions in which the artifact moves the
            activations (:func:`paired_basis`); P-ClArC then projects all of it out instead of ``direction``.
    """

    direction: torch.Tensor
    clean_mean: torch.Tensor
    layer: str
    pooling: Pooling = "flatten"
    separability: float = float("nan")
    counts: tuple[int, int] = (0, 0)
    shape: tuple[int, ...] = field(default_factory=tuple)
    shift: float = float("nan")
    basis: Optional[torch.Tensor] = None

    @property
    def directions(self) -> torch.Tensor:
        """``(k, D)``: the :attr:`basis`, or the direction alone (``k = 1``)."""
        return self.basis if self.basis is not None else self.direction[None]

    def scores(self, activations: torch.Tensor) -> torch.Tensor:
        """``(a - clean_mean) . direction`` of pooled ``(N, D)``: the component along the CAV from the clean mean."""
        a = activations.float()
        return (a - self.clean_mean.to(a)) @ self.direction.to(a)

    def to_dict(self) -> dict:
        """Plain, ``torch.save``-able record (tensors on CPU)."""
        return {
            "direction": self.direction.detach().cpu(),
            "clean_mean": self.clean_mean.detach().cpu(),
            "layer": self.layer,
            "pooling": self.pooling,
            "separability": float(self.separability),
            "counts": tuple(int(c) for c in self.counts),
            "shape": tuple(int(s) for s in self.shape),
            "shift": float(self.shift),
            "basis": self.basis.detach().cpu() if self.basis is not None else None,
        }

    @classmethod
    def from_dict(cls, record: dict) -> CAV:
        """Inverse of :meth:`to_dict`."""
        return cls(
            direction=record["direction"],
            clean_mean=record["clean_mean"],
            layer=record["layer"],
            pooling=record["pooling"],
            separability=record.get("separability", float("nan")),
            counts=tuple(record.get("counts", (0, 0))),
            shape=tuple(record.get("shape", ())),
            shift=float(record.get("shift", float("nan"))),
            basis=record.get("basis"),
        )


def fit_cav(
    activations: torch.Tensor,
    labels: torch.Tensor,
    layer: str = "",
    pooling: Pooling = "flatten",
    shape: tuple[int, ...] = (),
) -> CAV:
    """Fit the signal-pattern CAV ``v = cov(a, t) / |cov(a, t)|`` on pooled activations ``(N, D)`` and labels ``(N,)``.

    Args:
        activations: pooled activations, e.g. from :func:`collect_activations`.
        labels: ``True``/1 for images with the artifact.
        layer, pooling, shape: recorded in the result (how to apply it later).

    Raises:
        ValueError: with fewer than 2 artifact or 2 clean images, or when the two groups have the same mean.
    """
    if activations.ndim != 2 or labels.shape != activations.shape[:1]:
        raise ValueError(
            f"activations must be (N, D) and labels (N,), got {tuple(activations.shape)} and {tuple(labels.shape)}"
        )
    t = labels.detach().bool().cpu()
    n_art, n_clean = int(t.sum()), int((~t).sum())
    if n_art < 2 or n_clean < 2:
        raise ValueError(
            f"a CAV needs >= 2 artifact and >= 2 clean images, got {n_art} and {n_clean}; sample more images or "
            "check the artifact labels (detector threshold, the dataset's 'artifact' field, the index list)"
        )
    a = activations.detach().double().cpu()
    tf = t.double()
    pattern = ((a - a.mean(0)) * (tf - tf.mean())[:, None]).mean(0)  # cov(a, t), the Haufe pattern
    norm = pattern.norm()
    if not torch.isfinite(norm) or norm <= 0:
        raise ValueError("artifact and clean activations have the same mean at this layer; choose another layer")
    direction = (pattern / norm).float()
    clean_mean = a[~t].mean(0).float()
    shift = float((a[t].mean(0) - a[~t].mean(0)).norm())
    cav = CAV(direction, clean_mean, layer, pooling, counts=(n_art, n_clean), shape=tuple(shape), shift=shift)
    cav.separability = separability(cav.scores(a.float()), t)
    return cav


def paired_basis(cav: CAV, clean: torch.Tensor, inserted: torch.Tensor, k: int) -> CAV:
    """The CAV with a ``k``-dimensional artifact subspace: the ``k`` main directions in which inserting the artifact
    moves the activations.

    An artifact that varies (a ring's radius and offset) does not move every image's activations along one line.
    With the same images before and after the registered inserter drew the artifact, the paired differences
    ``d_i = a(inserted_i) - a(clean_i)`` show every way it moves them, and nothing else (the images are the same):
    their top ``k`` right singular vectors (uncentred: the typical *moves*, not their spread around a mean) span the
    artifact. Unlike the signal-pattern ``direction`` -- fitted on images that differ in more than the artifact (on
    the demo every ringed training image is a melanoma) -- they carry no class features, so projecting several of
    them out leaves the clean accuracy alone. Each is signed so that the mean move is positive along it.

    Args:
        cav: the fitted CAV (its ``direction``, ``clean_mean`` and record are kept; ``basis`` is set).
        clean, inserted: pooled activations ``(N, D)`` of the same images without and with the artifact.
        k: dimension of the subspace.

    Example:
        >>> import torch
        >>> cav = CAV(torch.tensor([1.0, 0.0, 0.0]), torch.zeros(3), "fc")
        >>> clean = torch.zeros(8, 3)
        >>> moves = torch.tensor([[3.0, 0.0, 0.0], [0.0, 1.0, 0.0]]).repeat(4, 1)
        >>> paired_basis(cav, clean, clean + moves, 2).basis
        tensor([[1., 0., 0.],
                [0., 1., 0.]])
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if clean.shape != inserted.shape or clean.ndim != 2 or clean.shape[1] != cav.direction.numel():
        raise ValueError(
            f"clean and inserted must be the same (N, {cav.direction.numel()}) pooled activations, got "
            f"{tuple(clean.shape)} and {tuple(inserted.shape)}"
        )
    d = (inserted.double() - clean.double()).cpu()
    _, singular, vh = torch.linalg.svd(d, full_matrices=False)
    keep = vh[:k][singular[:k] > singular.max().clamp_min(1e-12) * 1e-6]
    if len(keep) == 0:
        raise ValueError("inserting the artifact does not change the activations at this layer; choose another layer")
    sign = torch.sign(keep @ d.mean(0))
    keep = keep * torch.where(sign == 0, torch.ones_like(sign), sign)[:, None]
    return replace(cav, basis=keep.float())
