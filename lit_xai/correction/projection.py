"""P-ClArC: project the artifact direction out of a layer's activations (Anders et al. 2022), no retraining.

``h' = h - v (v . (h - m))`` with the unit CAV ``v`` and the clean mean ``m``: every activation keeps all of itself
except its component along ``v``, which is set to the clean images' value. For a ``"mean"`` CAV of a ``(N, C, H, W)``
map the same projection acts on the channel vector at every position (so the mean-pooled activations are projected
exactly too); a ``"flatten"`` CAV acts on the whole flattened map.

* :func:`project` — the pure tensor function.
* :func:`projection_hook` — a context manager that applies it to a layer of a model and removes the hook afterwards
  (optionally only for the images a gate flags, e.g. where the detector finds the artifact).
* :class:`ActivationProjection` / :class:`ProjectedModel` — the projection as a module with registered buffers, baked
  into a wrapper that saves and loads like any ``nn.Module`` (``state_dict``).

Example:
    >>> import torch
    >>> from lit_xai.correction import fit_cav, pool
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    >>> x = torch.randn(64, 4)
    >>> labels = x[:, 0] > 0
    >>> cav = fit_cav(net[:2](x), labels, layer="1")
    >>> with projection_hook(net, cav):
    ...     y = net(x)
    >>> len(net[1]._forward_hooks)
    0
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Optional

import torch
from torch import nn

from .cav import CAV
from .layers import resolve_layer

__all__ = ["ActivationProjection", "ProjectedModel", "project", "projection_hook"]


def project(
    activations: torch.Tensor,
    direction: torch.Tensor,
    clean_mean: torch.Tensor,
    pooling: str = "flatten",
    gate: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Remove the component along the unit ``direction`` relative to ``clean_mean``: ``h - v (v . (h - m))``.

    With a ``(k, D)`` ``direction`` of orthonormal rows (a subspace, e.g. :attr:`CAV.basis`), every component in the
    subspace is removed: ``h - V^T V (h - m)``.

    Args:
        activations: a layer's output ``(N, ...)``.
        direction: ``(D,)`` unit vector or ``(k, D)`` orthonormal rows, in the pooled space of ``pooling`` (see
            :func:`lit_xai.correction.pool`).
        clean_mean: ``(D,)``.
        pooling: ``"flatten"`` (``D`` = all values of one sample) or ``"mean"`` (``D = C``, applied per position).
        gate: optional ``(N,)`` bool; only these samples are projected, the others pass unchanged.

    Example:
        >>> import torch
        >>> v = torch.tensor([1.0, 0.0]); m = torch.tensor([5.0, 0.0])
        >>> project(torch.tensor([[1.0, 2.0]]), v, m)
        tensor([[5., 2.]])
        >>> project(torch.tensor([[1.0, 2.0]]), torch.eye(2), m)
        tensor([[5., 0.]])
    """
    h = activations
    v, m = direction.to(h), clean_mean.to(h)
    basis = v.reshape(-1, v.shape[-1])  # (k, D)
    if pooling == "mean" and h.ndim == 4:
        centred = h - m[None, :, None, None]
        coeff = torch.einsum("nchw,kc->nkhw", centred, basis)
        out = h - torch.einsum("nkhw,kc->nchw", coeff, basis)
    elif pooling in ("flatten", "mean"):
        flat = h.flatten(1)
        if flat.shape[1] != basis.shape[1]:
            raise ValueError(
                f"the CAV has {basis.shape[1]} dimensions but the layer gives {flat.shape[1]} per sample "
                f"(output {tuple(h.shape)}); refit the CAV on this layer and input size"
            )
        out = (flat - ((flat - m) @ basis.T) @ basis).view_as(h)
    else:
        raise ValueError(f"unknown pooling {pooling!r}; choose 'flatten' or 'mean'")
    if gate is not None:
        g = gate.to(device=h.device, dtype=torch.bool).view(-1, *([1] * (h.ndim - 1)))
        out = torch.where(g, out, h)
    return out


class ActivationProjection(nn.Module):
    """P-ClArC as a module: the CAV held in registered buffers (``direction``, ``clean_mean``), so it moves with
    ``.to()`` and saves/loads with ``state_dict``.

    Example:
        >>> import torch
        >>> p = ActivationProjection(torch.tensor([0.0, 1.0]), torch.tensor([0.0, 3.0]))
        >>> p(torch.tensor([[1.0, 7.0]]))
        tensor([[1., 3.]])
        >>> sorted(p.state_dict())
        ['clean_mean', 'direction']
    """

    def __init__(self, direction: torch.Tensor, clean_mean: torch.Tensor, pooling: str = "flatten") -> None:
        super().__init__()
        self.register_buffer("direction", direction.detach().clone().float())
        self.register_buffer("clean_mean", clean_mean.detach().clone().float())
        self.pooling = pooling

    @classmethod
    def from_cav(cls, cav: CAV) -> ActivationProjection:
        return cls(cav.directions if cav.basis is not None else cav.direction, cav.clean_mean, cav.pooling)

    def forward(self, activations: torch.Tensor, gate: Optional[torch.Tensor] = None) -> torch.Tensor:
        return project(activations, self.direction, self.clean_mean, self.pooling, gate)

    def extra_repr(self) -> str:
        k = 1 if self.direction.ndim == 1 else self.direction.shape[0]
        return f"dim={self.direction.shape[-1]}, directions={k}, pooling={self.pooling!r}"


@contextlib.contextmanager
def projection_hook(
    model: nn.Module,
    cav: CAV,
    layer: Optional[str] = None,
    gate: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
) -> Iterator[ActivationProjection]:
    """Within the block, ``layer``'s output is projected (P-ClArC); the hooks are removed afterwards, even on error.

    Args:
        model: the model; ``layer`` (default ``cav.layer``) is a dotted name in it.
        cav: the fitted CAV.
        gate: optional ``model input -> (N,) bool``: project only these samples (e.g. where a detector finds the
            artifact, so clean images pass untouched).

    Yields:
        the :class:`ActivationProjection` in use.
    """
    projection = ActivationProjection.from_cav(cav)
    module = resolve_layer(model, layer or cav.layer)
    current: dict[str, Optional[torch.Tensor]] = {"gate": None}

    def pre_hook(_m: nn.Module, args: tuple) -> None:
        current["gate"] = gate(args[0]) if gate is not None else None

    def hook(_m: nn.Module, _inp: object, out: torch.Tensor) -> torch.Tensor:
        return projection.to(out.device)(out, current["gate"])

    handles = [module.register_forward_hook(hook)]
    if gate is not None:
        handles.append(model.register_forward_pre_hook(pre_hook))
    try:
        yield projection
    finally:
        for handle in handles:
            handle.remove()


class ProjectedModel(nn.Module):
    """``model`` with a P-ClArC projection baked in at ``layer``: a plain module whose ``state_dict`` is the model's
    (under ``model.``) plus the projection's buffers (under ``projection.``).

    Args:
        model: the network mapping inputs to logits.
        cav: the fitted CAV (its ``layer`` names the layer inside ``model``).
        gate: optional ``input -> (N,) bool`` (e.g. a detector on the de-normalised input); only flagged samples are
            projected. It is code, not state: pass it again after loading.

    Example:
        >>> import torch
        >>> from lit_xai.correction import fit_cav
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
        >>> x = torch.randn(64, 4)
        >>> wrapped = ProjectedModel(net, fit_cav(net[:2](x), x[:, 0] > 0, layer="1"))
        >>> wrapped(x).shape, sorted(k for k in wrapped.state_dict() if k.startswith("projection"))
        (torch.Size([64, 2]), ['projection.clean_mean', 'projection.direction'])
    """

    def __init__(
        self, model: nn.Module, cav: CAV, gate: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
    ) -> None:
        super().__init__()
        self.model = model
        self.projection = ActivationProjection.from_cav(cav)
        self.layer = cav.layer
        self.gate = gate
        self._gate_value: Optional[torch.Tensor] = None
        self._active = False
        # the hook acts only inside this wrapper's forward: ``model`` called on its own stays the original
        resolve_layer(model, cav.layer).register_forward_hook(self._project)

    def _project(self, _m: nn.Module, _inp: object, out: torch.Tensor) -> Optional[torch.Tensor]:
        return self.projection(out, self._gate_value) if self._active else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._gate_value = self.gate(x) if self.gate is not None else None
        self._active = True
        try:
            return self.model(x)
        finally:
            self._active, self._gate_value = False, None
