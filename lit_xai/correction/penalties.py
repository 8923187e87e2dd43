"""Right-for-the-right-reasons penalties, added to the training loss to unlearn an artifact.

* :func:`rrclarc_penalty` — RR-ClArC (Dreyer et al. 2024, "From Hope to Safety"): the squared directional
  derivative of the model output along the artifact CAV at a layer, ``(v . d output / d h)^2``, averaged over the
  batch. Zero means: moving the activations along the artifact direction no longer changes the output.
* :func:`rrr_penalty` — RRR (Ross et al. 2017, "Right for the Right Reasons"): the squared input gradient of the
  summed log-probabilities inside the artifact mask, ``sum((M * d sum_k log p_k / d x)^2)``, averaged over the batch.

Both take tensors of a live graph (the training step's own forward) and return a differentiable scalar, so the
training loop adds ``weight * penalty`` to its loss (or its gradients) without an extra forward pass.

**Which output (RR-ClArC).** ``output="all"`` (default) penalises every logit's derivative (mean over the classes):
with softmax the decision depends on logit differences, and an artifact can raise one logit while lowering another,
so penalising one logit alone leaves a way around. ``"true"`` (the true class's logit, as in the paper's
experiments) and ``"pred"`` (the predicted class) cost one derivative instead of ``K``.

Example:
    >>> import torch
    >>> lin = torch.nn.Linear(3, 2)
    >>> h = torch.randn(4, 3, requires_grad=True)
    >>> v = torch.tensor([1.0, 0.0, 0.0])
    >>> p = rrclarc_penalty(h, lin(h), v)
    >>> bool(torch.isclose(p, (lin.weight[:, 0] ** 2).mean()))
    True
"""

from __future__ import annotations

from typing import Literal, Optional

import torch

__all__ = ["PenaltyOutput", "directional_derivative", "rrclarc_penalty", "rrr_penalty"]

PenaltyOutput = Literal["all", "true", "pred"]


def directional_derivative(gradient: torch.Tensor, direction: torch.Tensor, pooling: str = "flatten") -> torch.Tensor:
    """``(N,)`` derivative of the output along the CAV from its gradient ``(N, ...)`` at the layer (``(N, k)`` for a
    ``(k, D)`` subspace ``direction``).

    ``"flatten"``: ``g . v`` over all values. ``"mean"`` on ``(N, C, H, W)``: the derivative for shifting every position
    along ``v`` at once, ``sum_{y,x} g[:, :, y, x] . v`` (the direction a mean-pooled CAV describes).
    """
    g = gradient.float()
    v = direction.to(g)
    basis = v.reshape(-1, v.shape[-1])
    if pooling == "mean" and g.ndim == 4:
        out = torch.einsum("nchw,kc->nk", g, basis)
    else:
        flat = g.flatten(1)
        if flat.shape[1] != basis.shape[1]:
            raise ValueError(
                f"the CAV has {basis.shape[1]} dimensions but the layer gives {flat.shape[1]} per sample; refit the CAV"
            )
        out = flat @ basis.T
    return out[:, 0] if v.ndim == 1 else out


def rrclarc_penalty(
    activations: torch.Tensor,
    logits: torch.Tensor,
    direction: torch.Tensor,
    pooling: str = "flatten",
    output: PenaltyOutput = "all",
    targets: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """RR-ClArC: mean over the batch of ``(v . d output / d h)^2`` (differentiable; ``create_graph=True``).

    Args:
        activations: the layer's output ``h`` in the graph that produced ``logits``.
        logits: ``(N, K)`` model outputs computed from ``activations``.
        direction: the CAV ``(D,)`` (pooled space of ``pooling``; unit, or scaled to the artifact shift), or ``(k, D)``
            subspace rows (the squared derivatives along them are summed).
        output: ``"all"`` (mean over the K logits), ``"true"`` (needs ``targets``) or ``"pred"``.
        targets: ``(N,)`` class indices for ``output="true"``.

    Returns:
        a float32 scalar tensor.
    """
    if logits.ndim != 2:
        raise ValueError(f"logits must be (N, K), got {tuple(logits.shape)}")
    if output == "all":
        objectives = [logits[:, k].sum() for k in range(logits.shape[1])]
    elif output in ("true", "pred"):
        if output == "true":
            if targets is None:
                raise ValueError("output='true' needs the targets (class indices); or use output='all' or 'pred'")
            index = targets.long().view(-1, 1)
        else:
            index = logits.detach().argmax(1, keepdim=True)
        objectives = [logits.gather(1, index.to(logits.device)).sum()]
    else:
        raise ValueError(f"unknown output {output!r}; choose 'all', 'true' or 'pred'")
    total = logits.new_zeros((), dtype=torch.float32)
    for objective in objectives:
        (gradient,) = torch.autograd.grad(objective, activations, create_graph=True, retain_graph=True)
        derivative = directional_derivative(gradient, direction, pooling)
        total = total + derivative.pow(2).reshape(len(derivative), -1).sum(1).mean()  # summed over a subspace
    return total / len(objectives)


def rrr_penalty(inputs: torch.Tensor, logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """RRR: mean over the batch of ``sum((M * d sum_k log softmax_k / d x)^2)`` (differentiable).

    Args:
        inputs: ``(N, C, H, W)`` model inputs with ``requires_grad=True``, from which ``logits`` were computed.
        logits: ``(N, K)``.
        masks: ``(N, H, W)`` or ``(N, C, H, W)`` artifact masks (1 = "the model must not look here").

    Example:
        >>> import torch
        >>> x = torch.rand(2, 3, 4, 4, requires_grad=True)
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 2))
        >>> rrr_penalty(x, net(x), torch.zeros(2, 4, 4)).item()
        0.0
    """
    if not inputs.requires_grad:
        raise ValueError("inputs must require grad before the forward pass (inputs.requires_grad_(True))")
    log_probs = torch.log_softmax(logits.float(), dim=1).sum()
    (gradient,) = torch.autograd.grad(log_probs, inputs, create_graph=True, retain_graph=True)
    m = masks.to(gradient.device, gradient.dtype)
    if m.ndim == 3:
        m = m[:, None]
    return (gradient.float() * m).pow(2).flatten(1).sum(1).mean()
