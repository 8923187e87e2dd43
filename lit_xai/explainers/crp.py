"""Concept Relevance Propagation (CRP) on plain zennit 0.5.1.

CRP (Achtibat et al., 2023) splits an LRP heatmap by the *concepts* (channels) of one layer: the conditional
heatmap of channel ``c`` is the input relevance that flows through channel ``c`` of that layer only.

How it is computed here (zennit-crp's ``exclude_parallel=True`` semantics, without depending on zennit-crp):

1. each chunk of images is sent through the model *once*, inside the zennit composite context (Conv2d/Linear
   rules run as the single-pass layers of ``_fast_rules``, the same arithmetic), with a forward hook on the layer
   registered **after** the composite, so the captured tensor is the one zennit's rules see (on zennit 0.5.1 and 1.x
   alike, where a mask registered before the composite is silently ignored);
2. first backward stage, once per image: ``autograd.grad`` from the target logit to the layer output gives the
   relevance *at* the layer — and with it the ranking: :class:`CRP` picks the top-k concepts from its per-channel
   sums inside the same pass (no separate LRP pass to rank them);
3. second stage, once per concept: ``autograd.grad`` from the layer output only (the part of the network below the
   layer), with that relevance masked to the concept's channel as the incoming gradient (no tensor hook is needed,
   none can be left behind). The forward and the part above the layer are shared by all concepts of an image, and
   the rule layers keep their gradient-independent factors (stabilised denominators) after the first concept, so
   each further concept costs one transposed convolution and two elementwise products per layer.

Starting the second stage at the layer output means relevance that bypasses the layer (the skip path of a residual
block when the layer sits inside the block) never reaches the input, which is what makes conditional heatmaps of
layers inside residual branches differ from each other (zennit-crp issue #16). At a graph cut (a block output such
as ``layer3``) the sum of the conditional heatmaps over *all* channels equals the full LRP heatmap; inside a branch
it equals the branch's share of it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn
from zennit.core import Composite

from ._core import (
    as_targets,
    build_composite,
    default_composite,
    default_concept_layer,
    explanation_model,
    prepare_input,
    resolve_layer_name,
    target_init,
)
from ._fast_rules import FastRules
from .base import ConceptExplainer, Concepts, register_explainer
from .conservation import ConservationCheck, confirm, conservation_check, network_name, warn_if_not_conserved
from .inputs import check_images

__all__ = [
    "CRP",
    "capture_output",
    "channel_relevances",
    "crp_heatmaps",
    "layer_relevance",
]

ChannelSpec = Sequence[int] | torch.Tensor


@contextlib.contextmanager
def capture_output(module: nn.Module) -> Iterator[dict[str, torch.Tensor]]:
    """Forward hook keeping ``module``'s output tensor in the yielded dict under ``"out"``.

    The rest of the network receives a *clone* of the output, so an in-place operation downstream (``F.relu(x,
    inplace=True)``) cannot change the captured tensor or its ``grad_fn``. Register it after a zennit composite so
    the captured tensor is the one the composite's rules see. The hook is removed and the dict cleared on exit, so
    the tensor and the autograd graph it holds are freed by reference counting as soon as the caller drops them
    (zennit-crp-style cleanup outside ``finally``, with a tensor hook closing over such state, forms a reference
    cycle that grows memory until the cyclic collector happens to run).

    Raises:
        RuntimeError: if the module runs more than once per forward (reused modules have no single output).
    """
    state: dict[str, torch.Tensor] = {}

    def hook(mod: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        if not isinstance(output, torch.Tensor):
            raise TypeError(
                f"layer {type(mod).__name__} returns {type(output).__name__}; pick a module returning a tensor"
            )
        if "out" in state:
            raise RuntimeError(
                f"layer {type(mod).__name__} runs more than once per forward pass (a reused module); "
                "pick a module that is called exactly once"
            )
        state["out"] = output
        return output.clone()

    handle = module.register_forward_hook(hook)
    try:
        yield state
    finally:
        handle.remove()
        state.clear()


@contextlib.contextmanager
def _rules_context(composite: Composite, net: nn.Module, cache: bool = False) -> Iterator[nn.Module]:
    """Register ``composite`` on ``net`` (zennit's Conv2d/Linear rule hooks swapped for the fast rule layers) and
    always remove it, also when registering fails half-way (zennit's own ``composite.context`` removes only after a
    clean ``__enter__``, leaving hooks and merged batch-norm weights behind)."""
    rules = FastRules(composite, cache=cache)
    try:
        rules.register(net)
        yield net
    finally:
        rules.remove()


def layer_relevance(
    net: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    layer: str,
    composite: str = "epsilon_plus_flat",
    canonizers: list | None = None,
    composite_kwargs: dict[str, Any] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Relevance at ``layer`` and at the input from one LRP pass on an already prepared ``net`` (no copy/restore).

    Returns:
        ``(layer_rel, input_rel)``: relevance at the layer output (shape of the layer output, e.g. ``(N, C, h, w)``)
        and input relevance ``(N, C_in, H, W)`` — the full LRP attribution, skip paths included.
    """
    with _layer_pass(net, layer, composite, canonizers, composite_kwargs) as run:
        return run(images, targets, with_input=True)


@contextlib.contextmanager
def _layer_pass(
    net: nn.Module, layer: str, composite: str, canonizers: list | None, composite_kwargs: dict[str, Any] | None
) -> Iterator[Any]:
    """The composite's rules registered on ``net`` once, yielding ``run(images, targets, with_input)``: one LRP pass
    of a chunk, returning the relevance at ``layer``'s output and, ``with_input``, at the input (else ``None``; the
    backward then stops at the layer)."""
    module = dict(net.named_modules())[resolve_layer_name(net, layer)]
    comp = build_composite(composite, net, canonizers, composite_kwargs)
    with _rules_context(comp, net) as modified, capture_output(module) as state:

        def run(images: torch.Tensor, targets: torch.Tensor, with_input: bool) -> tuple[torch.Tensor, Any]:
            x = prepare_input(images, net)
            try:
                out = modified(x)
                init = target_init(out, as_targets(targets, x.shape[0], out.device), "CRP")
                wrt = (state["out"], x) if with_input else (state["out"],)
                grads = torch.autograd.grad(out, wrt, grad_outputs=init)
            finally:
                state.clear()  # the captured output holds this chunk's graph
            return grads[0].detach(), grads[1].detach() if with_input else None

        yield run


def _channel_mask(channels: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    mask = torch.zeros(channels.shape[0], shape[1], *([1] * (len(shape) - 2)), dtype=torch.float32)
    mask[torch.arange(channels.shape[0]), channels.cpu()] = 1.0
    return mask


def crp_heatmaps(
    net: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    layer: str,
    channels: torch.Tensor,
    composite: str = "epsilon_plus_flat",
    canonizers: list | None = None,
    batch_size: int = 16,
    exclude_parallel: bool = True,
    composite_kwargs: dict[str, Any] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Conditional heatmaps on an already prepared ``net`` (no copy, no restore; see :class:`CRP`).

    Args:
        net: model in eval mode with gradients enabled (e.g. from :func:`~lit_xai.explainers.explanation_model`).
        images: ``(N, C, H, W)`` model input.
        targets: ``(N,)`` class indices whose logits start the relevance.
        layer: module name of the concept layer.
        channels: ``(N, K)`` channel ids; row ``i`` lists the concepts to condition image ``i`` on.
        composite: zennit composite name.
        canonizers: zennit canonizers (``None``: registry / torchvision family).
        batch_size: bounds (image, channel) pairs per pass: ``max(1, batch_size // K)`` images run one shared
            forward and first stage, then one second-stage backward per concept.
        exclude_parallel: two-stage backward (default). ``False`` only masks the layer output during one plain
            backward pass, so relevance bypassing the layer leaks into every map (zennit-crp < 0.6, issue #16);
            kept to demonstrate that failure.
        composite_kwargs: extra arguments of the zennit composite (e.g. ``zero_params="bias"``).

    Returns:
        ``(heatmaps (N, K, H, W), relevances (N, K))``: conditional input relevance summed over colour channels, and
        the relevance each channel receives at the layer (with a conservative rule set below the layer each
        heatmap sums to its relevance).
    """
    if channels.ndim != 2 or channels.shape[0] != images.shape[0]:
        raise ValueError(f"channels must have one row per image ({images.shape[0]}), got shape {tuple(channels.shape)}")
    heat, rels, _, _ = _conditional_pass(
        net, images, targets, layer, channels, channels.shape[1], composite, canonizers, batch_size, exclude_parallel,
        composite_kwargs,
    )  # fmt: skip
    return heat, rels


def _conditional_pass(
    net: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    layer: str,
    channels: torch.Tensor | None,
    top_k: int,
    composite: str,
    canonizers: list | None,
    batch_size: int,
    exclude_parallel: bool,
    composite_kwargs: dict[str, Any] | None,
    logits: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Conditional heatmaps for given ``channels``, or for the ``top_k`` most relevant ones (``channels=None``).

    Ranking needs the relevance at the layer, which is exactly the first backward stage: with ``channels=None`` the
    concepts are chosen from it inside the same pass (one forward, one first stage, one second stage per concept)
    instead of a separate LRP pass beforehand.

    Returns:
        ``(heatmaps (N, K, H, W), relevances (N, K), channel ids (N, K), all channel relevances (N, C))``; the last
        is the per-channel (spatial) sum of the relevance at the layer, ``None`` without ``exclude_parallel``.
        A given ``logits`` tensor ``(N,)`` receives the explained logits (for the conservation guard).
    """
    n = images.shape[0]
    if channels is None and not exclude_parallel:
        raise ValueError("ranking concepts inside the pass needs exclude_parallel=True (the first backward stage)")
    module = dict(net.named_modules())[resolve_layer_name(net, layer)]
    targets = as_targets(targets, n, torch.device("cpu"))
    # ranking: top_k is clipped to the layer's channel count once the first forward has shown it
    k = top_k if channels is None else channels.shape[1]
    ids = None if channels is None else channels.cpu()
    dtype = next(net.parameters()).dtype  # the dtype prepare_input gives the images (float32 unless the net differs)
    heat = torch.empty(n, k, *images.shape[2:], dtype=dtype)
    rels = torch.empty(n, k, dtype=dtype)
    all_rels: torch.Tensor | None = None
    comp = build_composite(composite, net, canonizers, composite_kwargs)
    # images per pass: batch_size bounds (image, channel) pairs, but the part above the layer runs once per image
    per_pass = max(1, batch_size // k)
    # one composite context for all chunks: canonizing (BatchNorm merge) once, not once per chunk; with several
    # concepts the rule layers keep their gradient-independent factors for the concepts after the first
    with _rules_context(comp, net, cache=k > 1) as modified, capture_output(module) as state:
        for start in range(0, n, per_pass):
            rows = torch.arange(start, min(n, start + per_pass))
            x = prepare_input(images[rows.to(images.device)], net)
            try:
                # one forward and one first-stage backward per image, shared by all of its concepts
                out = modified(x)
                init = target_init(out, targets[rows].to(out.device), "CRP")
                if logits is not None:
                    logits[rows] = init.sum(1).detach().cpu().to(logits)
                layer_out = state["out"]
                n_channels = layer_out.shape[1] if layer_out.ndim >= 2 else 0
                if exclude_parallel:
                    (layer_rel,) = torch.autograd.grad(out, layer_out, grad_outputs=init, retain_graph=True)
                    if layer_out.ndim >= 2:
                        per_channel = layer_rel.detach()
                        if per_channel.ndim > 2:
                            per_channel = per_channel.reshape(*per_channel.shape[:2], -1).sum(2)
                        if all_rels is None:
                            all_rels = torch.empty(n, n_channels, dtype=dtype)
                        all_rels[rows] = per_channel.cpu()
                        if channels is None:
                            if ids is None:
                                k = min(k, n_channels)
                                ids, heat, rels = torch.empty(n, k, dtype=torch.long), heat[:, :k], rels[:, :k]
                            ids[rows] = per_channel.topk(k, dim=1).indices.cpu()
                if ids is None:  # a layer output without channels: reported just below
                    ids = torch.zeros(n, k, dtype=torch.long)
                chans = ids[rows]
                if layer_out.ndim < 2 or int(chans.max()) >= n_channels or int(chans.min()) < 0:
                    raise ValueError(
                        f"channel ids must lie in [0, {n_channels}) for layer {layer!r} with output shape "
                        f"{tuple(layer_out.shape)}, got {chans.tolist()}"
                    )
                for j in range(k):
                    mask = _channel_mask(chans[:, j], layer_out.shape).to(layer_out)
                    last = j == k - 1
                    if exclude_parallel:
                        # second stage only: the part below the layer, once per concept
                        masked = layer_rel * mask
                        (rel_in,) = torch.autograd.grad(layer_out, x, grad_outputs=masked, retain_graph=not last)
                    else:
                        captured: dict[str, torch.Tensor] = {}

                        def mask_hook(
                            grad: torch.Tensor, mask: torch.Tensor = mask, captured: dict = captured
                        ) -> torch.Tensor:
                            captured["masked"] = grad * mask
                            return captured["masked"]

                        handle = layer_out.register_hook(mask_hook)
                        try:
                            (rel_in,) = torch.autograd.grad(out, x, grad_outputs=init, retain_graph=not last)
                        finally:
                            handle.remove()
                        masked = captured.pop("masked")
                    heat[rows, j] = rel_in.detach().sum(1).cpu()
                    rels[rows, j] = masked.detach().reshape(masked.shape[0], -1).sum(1).cpu()
            finally:
                # the captured output references the whole graph of this chunk: drop it before the next forward
                state.clear()
    return heat.contiguous().to(images.device), rels.contiguous().to(images.device), ids, all_rels


def channel_relevances(
    net: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    layer: str,
    composite: str = "epsilon_plus_flat",
    canonizers: list | None = None,
    batch_size: int = 16,
    composite_kwargs: dict[str, Any] | None = None,
) -> torch.Tensor:
    """Relevance of every channel of ``layer``, ``(N, C)``, on an already prepared ``net`` (plain LRP, chunked).

    The per-channel spatial sum of the relevance at the layer (zennit-crp's ``ChannelConcept.attribute`` without
    normalisation) equals the total of that channel's conditional heatmap when the rules below are conservative.
    """
    targets = as_targets(targets, images.shape[0], torch.device("cpu"))
    chunks = []
    # one composite context for all chunks (canonizing once), and the backward stops at the layer: the part below it
    # (the high-resolution layers, most of an LRP backward) is not run for relevances that are never read there. The
    # same pass as :func:`layer_relevance`, so the same numbers
    with _layer_pass(net, layer, composite, canonizers, composite_kwargs) as run:
        for i in range(0, images.shape[0], batch_size):
            rel, _ = run(images[i : i + batch_size], targets[i : i + batch_size], with_input=False)
            chunks.append(rel.reshape(rel.shape[0], rel.shape[1], -1).sum(2) if rel.ndim > 2 else rel)
    return torch.cat(chunks)


def _shares(rel: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``|rel|`` of the chosen channels over the total ``|rel|`` of all channels, per image."""
    total = rel.abs().sum(1, keepdim=True).clamp_min(1e-12)
    return (rel.gather(1, ids.to(rel.device)).abs() / total).cpu()


def _as_channel_tensor(channels: ChannelSpec, n: int) -> torch.Tensor:
    ids = torch.as_tensor(channels).long().cpu()
    if ids.ndim == 0:
        ids = ids.reshape(1)
    if ids.ndim == 1:
        ids = ids.unsqueeze(0).expand(n, -1)
    if ids.ndim != 2 or ids.shape[0] != n or ids.shape[1] == 0:
        raise ValueError(f"channels must be a list of ids or an (N={n}, K) tensor, got shape {tuple(ids.shape)}")
    return ids.clone()


@register_explainer("crp")
class CRP(ConceptExplainer):
    """Concept Relevance Propagation: one conditional LRP heatmap per (image, concept channel).

    Args:
        layer: concept layer (module name, relative to the profiled network or a unique suffix). ``None`` takes the
            first concept layer of the model's explanation profile.
        composite: zennit composite name; ``None`` takes the profile's default (``epsilon_plus_flat`` otherwise).
        canonizers: zennit canonizers; ``None`` takes them from the explanation profile, ``[]`` for none.
        top_k: number of concepts per image when no channels are given (most relevant first).
        batch_size: (image, channel) pairs per forward/backward pass; bounds memory.
        exclude_parallel: two-stage backward so relevance bypassing the layer is excluded (see module docstring).
        copy_model: explain a deep copy (default) so the caller's model cannot change.
        composite_kwargs: extra arguments of the zennit composite, e.g. ``{"zero_params": "bias"}``.
        rank_by: ``"relevance"`` ranks concepts by their relevance at the layer; ``"attention"`` by the channel
            weights of the profile's attention module (attention networks; the layer must be the gated one).

    In the default one-pass mode every call runs the conservation guard (:mod:`lit_xai.explainers.conservation`) on
    an estimate of the input total that costs nothing extra; ``last_check`` holds the result, and a
    :class:`~lit_xai.explainers.conservation.ConservationWarning` is issued once per network class on failure.

    Example:
        >>> import torch
        >>> from lit_xai.models.architectures import build_architecture
        >>> net = build_architecture("tiny_resnet", num_classes=3)
        >>> concepts = CRP(layer="layer3", top_k=4)(net, torch.rand(2, 3, 32, 32), torch.tensor([0, 2]))
        >>> concepts.maps.shape, concepts.channels.shape, concepts.layer
        (torch.Size([2, 4, 32, 32]), torch.Size([2, 4]), 'layer3')
    """

    def __init__(
        self,
        layer: str | None = None,
        composite: str | None = None,
        canonizers: list | None = None,
        top_k: int = 4,
        batch_size: int = 16,
        exclude_parallel: bool = True,
        copy_model: bool = True,
        composite_kwargs: dict[str, Any] | None = None,
        rank_by: str = "relevance",
    ) -> None:
        if top_k < 1 or batch_size < 1:
            raise ValueError(f"top_k and batch_size must be >= 1, got top_k={top_k}, batch_size={batch_size}")
        if rank_by not in ("relevance", "attention"):
            raise ValueError(f"rank_by must be 'relevance' or 'attention', got {rank_by!r}")
        self.layer = layer
        self.composite = composite
        self.canonizers = canonizers
        self.top_k = top_k
        self.batch_size = batch_size
        self.exclude_parallel = exclude_parallel
        self.copy_model = copy_model
        self.composite_kwargs = dict(composite_kwargs or {})
        self.rank_by = rank_by
        self.last_check: ConservationCheck | None = None

    @property
    def label(self) -> str:
        return "crp" if self.rank_by == "relevance" else "crp_attention"

    def describe(self, model: nn.Module | None = None) -> str:
        layer = self.layer if model is None else self.layer_for(model)
        return f"CRP top-{self.top_k} at {layer or 'profile layer'}" + (
            " (by attention)" if self.rank_by != "relevance" else ""
        )

    def layer_for(self, model: nn.Module) -> str:
        """The concept layer used for ``model`` (explicit, else the explanation profile's)."""
        return resolve_layer_name(model, self.layer) if self.layer is not None else default_concept_layer(model)

    def composite_for(self, model: nn.Module) -> str:
        """The composite name used for ``model``: the explicit one, else the profile default."""
        return self.composite if self.composite is not None else default_composite(model)

    def check(self, model: nn.Module) -> None:
        self.layer_for(model)
        build_composite(self.composite_for(model), model, self.canonizers, self.composite_kwargs)
        if self.rank_by == "attention":
            from ._core import default_attention_layer, resolve_module

            resolve_module(model, default_attention_layer(model))

    def relevances_on(self, net: nn.Module, images: torch.Tensor, targets: torch.Tensor, layer: str) -> torch.Tensor:
        """:func:`channel_relevances` with this instance's settings on an already prepared ``net``."""
        return channel_relevances(
            net, images, targets, layer, self.composite_for(net), self.canonizers, self.batch_size,
            self.composite_kwargs,
        )  # fmt: skip

    def heatmaps_on(
        self, net: nn.Module, images: torch.Tensor, targets: torch.Tensor, layer: str, channels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`crp_heatmaps` with this instance's settings on an already prepared ``net``."""
        return crp_heatmaps(
            net, images, targets, layer, channels, self.composite_for(net), self.canonizers, self.batch_size,
            self.exclude_parallel, self.composite_kwargs,
        )  # fmt: skip

    def concept_relevances(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Relevance of every channel of the concept layer, ``(N, C)`` (spatial sum, signed), from plain LRP.

        Row ``i`` ranks the concepts of image ``i``; ``rel[i, c]`` equals the total of the conditional heatmap of
        channel ``c`` (up to what biases below the layer absorb).
        """
        check_images(images, "CRP")
        targets = as_targets(targets, images.shape[0], torch.device("cpu"))
        with explanation_model(model, self.copy_model, share_tensors=True) as net:
            return self.relevances_on(net, images, targets, self.layer_for(net)).to(images.device)

    def _attention_ranking(self, net: nn.Module, images: torch.Tensor) -> torch.Tensor:
        from ._core import default_attention_layer, resolve_module

        attention = resolve_module(net, default_attention_layer(net))
        with torch.no_grad():
            net(prepare_input(images, net))
        weights = getattr(attention, "last_weights", None)
        if not isinstance(weights, torch.Tensor) or weights.ndim != 2:
            raise ValueError("rank_by='attention' needs an attention module keeping last_weights (N, C)")
        return weights.detach().float().cpu()

    def explain_channels(
        self, net: nn.Module, images: torch.Tensor, targets: torch.Tensor, channels: ChannelSpec | None = None
    ) -> Concepts:
        """:class:`Concepts` on a prepared ``net``, for the given channels or the top-k ranked ones."""
        layer = self.layer_for(net)
        if self.exclude_parallel and (channels is not None or self.rank_by == "relevance"):
            # one pass: the ranking relevance is the first backward stage of the conditional heatmaps
            ids = None if channels is None else _as_channel_tensor(channels, images.shape[0])
            logits = torch.empty(images.shape[0], dtype=torch.float64)
            heat, rels, ids, rel = _conditional_pass(
                net, images, targets, layer, ids, self.top_k, self.composite_for(net), self.canonizers,
                self.batch_size, True, self.composite_kwargs, logits,
            )  # fmt: skip
            self._guard(net, images, targets, logits, rel, heat, rels)
            return Concepts(heat, ids, layer, _shares(rel, ids))
        self.last_check = None  # two-pass modes: no free estimate of the input relevance
        rel = self.relevances_on(net, images, targets, layer)
        if channels is None:
            ranking = self._attention_ranking(net, images) if self.rank_by == "attention" else rel
            if ranking.shape != rel.shape:
                raise ValueError(
                    f"attention weights {tuple(ranking.shape)} do not index the channels of {layer!r} "
                    f"{tuple(rel.shape)}; set layer= to the gated layer"
                )
            ids = ranking.topk(min(self.top_k, ranking.shape[1]), dim=1).indices.cpu()
        else:
            ids = _as_channel_tensor(channels, images.shape[0])
        heat, _ = self.heatmaps_on(net, images, targets, layer, ids)
        return Concepts(heat, ids, layer, _shares(rel, ids))

    def _guard(
        self,
        net: nn.Module,
        images: torch.Tensor,
        targets: torch.Tensor,
        logits: torch.Tensor,
        layer_rel: torch.Tensor | None,
        heat: torch.Tensor,
        rels: torch.Tensor,
    ) -> None:
        """Conservation guard from what the pass computed anyway: the relevance reaching the concept layer
        (``Σ_c layer_rel``, checks the rules above it) times the share of the chosen concepts' relevance that
        reached the input (``Σ_k heatmap / Σ_k relevance``, checks the rules below it) estimates the input total."""
        if layer_rel is None:
            self.last_check = None
            return
        total = layer_rel.double().sum(1)
        chosen = rels.double().sum(1).cpu()
        arrived = heat.double().flatten(1).sum(1).cpu()
        below = torch.where(chosen.abs() > 1e-12, arrived / torch.where(chosen.abs() > 1e-12, chosen, 1.0), 1.0)
        check = conservation_check(total * below, logits, network=network_name(net))
        t = as_targets(targets, images.shape[0], torch.device("cpu"))
        confirm(check, net, images, t, self.composite_for(net), self.canonizers, self.composite_kwargs)
        warn_if_not_conserved(check, "CRP", stacklevel=6)
        self.last_check = check

    def explain(self, net: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> Concepts:
        return self.explain_channels(net, images, targets)

    def __call__(  # type: ignore[override]
        self,
        model: nn.Module,
        images: torch.Tensor,
        targets: torch.Tensor | int,
        channels: ChannelSpec | None = None,
        top_k: int | None = None,
    ) -> Concepts:
        """:class:`Concepts`: conditional heatmaps ``(N, K, H, W)``, channel ids ``(N, K)``, layer and shares.

        Args:
            model: classifier (or a LightningModule holding it).
            images: ``(N, C, H, W)`` normalized model input.
            targets: ``(N,)`` class indices (an int is broadcast).
            channels: condition on these channel ids (a list used for every image, or an ``(N, K)`` tensor) instead
                of the most relevant ones.
            top_k: concepts per image when ``channels`` is None (default: the instance's ``top_k``); clipped to the
                layer's channel count. Channels are ranked by their relevance at the layer, highest first.
        """
        check_images(images, "CRP")
        targets = as_targets(targets, images.shape[0], torch.device("cpu"))
        k = self.top_k if top_k is None else top_k
        if k < 1:
            raise ValueError(f"top_k must be >= 1, got {k}")
        saved, self.top_k = self.top_k, k
        try:
            with explanation_model(model, self.copy_model, share_tensors=True) as net:
                out = self.explain_channels(net, images, targets, channels)
        finally:
            self.top_k = saved
        return out.to(images.device)
