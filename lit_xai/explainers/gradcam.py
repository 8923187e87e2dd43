"""Grad-CAM (Selvaraju et al., 2017) and an attention-weighted variant, without pytorch_grad_cam's side effects.

``cam = ReLU(sum_c w_c * A_c)`` with ``w_c`` the spatial mean of ``d logit_target / d A_c`` and ``A`` the output
of the target layer, bilinearly upsampled to the input size. Unlike ``pytorch_grad_cam`` this never calls
``model.zero_grad()``/``loss.backward()`` on the caller's model (it differentiates a deep copy with respect to
the captured activation only), never leaves the model in ``eval()``, and keeps the maps *unnormalised* by
default, so their scale stays comparable across images and epochs (drift tracking). ``normalize=True`` gives the
per-image min-max scaling that ``pytorch_grad_cam`` always applies.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ._core import (
    check_logit_shape,
    default_attention_layer,
    default_gradcam_layer,
    explanation_model,
    prepare_input,
    resolve_layer_name,
    resolve_module,
)
from .base import Explainer, register_explainer
from .crp import capture_output
from .inputs import check_images, warn_if_nonfinite
from .targets import validate_targets

__all__ = ["AttentionGradCAM", "GradCAM", "minmax_normalize", "tokens_to_grid"]


def tokens_to_grid(tokens: torch.Tensor, max_prefix: int = 8) -> torch.Tensor:
    """Transformer tokens ``(N, T, C)`` as a map ``(N, C, h, w)``: the leading class/register tokens dropped, the
    ``h * w`` patch tokens (a square grid) reshaped in row-major order, as ViTs flatten their patch embedding.

    Example:
        >>> tokens_to_grid(torch.zeros(2, 1 + 16, 8)).shape
        torch.Size([2, 8, 4, 4])
    """
    n, t, c = tokens.shape
    side = math.isqrt(t)
    prefix = t - side * side
    if side == 0 or prefix > max_prefix:
        raise ValueError(
            f"cannot read {t} tokens as a square patch grid after at most {max_prefix} class/register tokens; pick a "
            "layer whose output is (N, C, h, w) or square-grid tokens"
        )
    return tokens[:, prefix:].transpose(1, 2).reshape(n, c, side, side)


def minmax_normalize(maps: torch.Tensor) -> torch.Tensor:
    """Per-map min-max scaling to ``[0, 1]`` over the last two dims; constant maps become 0."""
    flat = maps.reshape(*maps.shape[:-2], -1)
    lo = flat.amin(-1, keepdim=True)
    span = flat.amax(-1, keepdim=True) - lo
    scaled = torch.where(span > 0, (flat - lo) / span.clamp_min(torch.finfo(maps.dtype).tiny), torch.zeros_like(flat))
    return scaled.reshape(maps.shape)


@register_explainer("gradcam")
class GradCAM(Explainer):
    """Grad-CAM heatmaps ``(N, H, W)`` at input resolution, non-negative.

    Args:
        layer: target layer (module name, relative to the registry network or a unique suffix); ``None`` takes the
            registry's ``gradcam_layer`` or the last block of a known torchvision family. Its output must be
            ``(N, C, h, w)``, or transformer tokens ``(N, T, C)`` (read as the patch grid, :func:`tokens_to_grid`).
        normalize: per-image min-max scaling to ``[0, 1]`` (off by default: raw maps keep their scale, which
            drift and faithfulness metrics need; a constant map becomes 0 when normalised).
        batch_size: images per forward/backward pass.
        copy_model: explain a deep copy (default) so the caller's model cannot change.

    Example:
        >>> import torch
        >>> from lit_xai.models.architectures import build_architecture
        >>> net = build_architecture("tiny_resnet", num_classes=3)
        >>> cam = GradCAM(layer="layer4")(net, torch.rand(2, 3, 32, 32), torch.tensor([0, 2]))
        >>> cam.shape, bool((cam >= 0).all())
        (torch.Size([2, 32, 32]), True)
    """

    signed = False  # ReLU of a weighted activation sum: non-negative

    def __init__(
        self, layer: str | None = None, normalize: bool = False, batch_size: int = 32, copy_model: bool = True
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.layer = layer
        self.normalize = normalize
        self.batch_size = batch_size
        self.copy_model = copy_model

    def layer_for(self, model: nn.Module) -> str:
        """The target layer used for ``model`` (explicit, else the explanation profile's)."""
        return resolve_layer_name(model, self.layer) if self.layer is not None else default_gradcam_layer(model)

    def describe(self, model: nn.Module | None = None) -> str:
        layer = self.layer if model is None else self.layer_for(model)
        return f"Grad-CAM at {layer or 'profile layer'}"

    def check(self, model: nn.Module) -> None:
        self.layer_for(model)

    def channel_weights(self, net: nn.Module, gradients: torch.Tensor) -> torch.Tensor:
        """Channel weights ``(N, C)`` from the gradients ``(N, C, h, w)``: their spatial mean (Grad-CAM)."""
        return gradients.mean(dim=(2, 3))

    def _cams(self, net: nn.Module, images: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Low-resolution maps ``(n, K, h, w)`` for one chunk; ``classes`` is ``(n, K)``."""
        module = resolve_module(net, self.layer_for(net))
        x = prepare_input(images, net)
        with capture_output(module) as state:
            out = check_logit_shape(net(x))
            validate_targets(classes, out.shape[1], type(self).__name__)
            act = state["out"]
            if act.ndim not in (3, 4):
                raise ValueError(
                    f"Grad-CAM layer {self.layer_for(net)!r} must output (N, C, h, w) or transformer tokens "
                    f"(N, T, C), got {tuple(act.shape)}; pick a convolutional or transformer block"
                )
            rows = torch.arange(out.shape[0], device=out.device)
            cams = []
            for k in range(classes.shape[1]):
                # clone: class ids made under inference_mode are inference tensors, which autograd may not save
                score = out[rows, classes[:, k].to(out.device).clone()].sum()  # images are independent in eval mode
                # gradient w.r.t. the captured activation only: no parameter .grad, no tensor hook left behind
                (grad,) = torch.autograd.grad(score, act, retain_graph=k < classes.shape[1] - 1)
                grid, grad = (tokens_to_grid(act), tokens_to_grid(grad)) if act.ndim == 3 else (act, grad)
                weights = self.channel_weights(net, grad)
                cams.append(F.relu((weights[:, :, None, None] * grid).sum(1)).detach())
        return torch.stack(cams, dim=1)

    def per_class(self, model: nn.Module, images: torch.Tensor, classes: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """One map per class, ``(N, K, H, W)`` — e.g. every label of a multi-label task, from one forward pass.

        Args:
            model: classifier (or a LightningModule holding it).
            images: ``(N, C, H, W)`` normalized model input.
            classes: ``K`` class ids used for every image, or an ``(N, K)`` tensor of per-image class ids.
        """
        n = check_images(images, type(self).__name__).shape[0]
        cls = torch.as_tensor(classes).long().cpu()
        if cls.ndim == 1:
            cls = cls.unsqueeze(0).expand(n, -1)
        if cls.ndim != 2 or cls.shape[0] != n or cls.shape[1] == 0:
            raise ValueError(f"classes must be K ids or an (N={n}, K) tensor, got shape {tuple(cls.shape)}")
        with explanation_model(model, self.copy_model) as net:
            cams = self.per_class_on(net, images, cls)
        return cams.to(images.device)

    def per_class_on(self, net: nn.Module, images: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """:meth:`per_class` on a prepared ``net``; ``classes`` is ``(N, K)``."""
        chunks = []
        for i in range(0, images.shape[0], self.batch_size):
            low = self._cams(net, images[i : i + self.batch_size], classes[i : i + self.batch_size])
            chunks.append(F.interpolate(low, size=images.shape[-2:], mode="bilinear", align_corners=False))
        cams = torch.cat(chunks)
        warn_if_nonfinite(cams, type(self).__name__)
        return minmax_normalize(cams) if self.normalize else cams

    def explain(self, net: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.per_class_on(net, images, targets[:, None])[:, 0]


@register_explainer("attention_gradcam")
class AttentionGradCAM(GradCAM):
    """Grad-CAM whose channel weights are multiplied by a channel-attention module's weights.

    ``cam = ReLU(sum_c a_c * w_c * A_c)`` with ``w_c`` the Grad-CAM weight (spatial mean of the gradient of the
    target logit w.r.t. ``A_c``), ``A`` the target layer's output (``layer4``) and ``a_c`` the attention weight of
    channel ``c`` for that image, read from ``<attention_layer>.last_weights`` ``(N, C)`` after the forward pass.
    Channels the attention gate suppresses thus contribute less, as users of attention ResNets did by hand. With
    all ``a_c = 1`` it equals :class:`GradCAM`.

    Args:
        layer: target layer whose channels the attention weights index (default: registry ``gradcam_layer``).
        attention_layer: module keeping ``last_weights``; default: the registry extra ``attention_layer``, else
            ``"attention"``.
        normalize, batch_size, copy_model: as for :class:`GradCAM`.

    Example:
        >>> import torch
        >>> from lit_xai.models.architectures import build_architecture
        >>> net = build_architecture("tiny_resnet_attention", num_classes=2)
        >>> AttentionGradCAM()(net, torch.rand(2, 3, 32, 32), torch.tensor([0, 1])).shape
        torch.Size([2, 32, 32])
    """

    def __init__(
        self,
        layer: str | None = None,
        attention_layer: str | None = None,
        normalize: bool = False,
        batch_size: int = 32,
        copy_model: bool = True,
    ) -> None:
        super().__init__(layer=layer, normalize=normalize, batch_size=batch_size, copy_model=copy_model)
        self.attention_layer = attention_layer

    def attention_layer_for(self, model: nn.Module) -> str:
        """The attention module: explicit, else the explanation profile's (``"attention"`` when none is named)."""
        return self.attention_layer if self.attention_layer is not None else default_attention_layer(model)

    def describe(self, model: nn.Module | None = None) -> str:
        return "attention-weighted " + super().describe(model)

    def check(self, model: nn.Module) -> None:
        super().check(model)
        resolve_module(model, self.attention_layer_for(model))

    def channel_weights(self, net: nn.Module, gradients: torch.Tensor) -> torch.Tensor:
        name = self.attention_layer_for(net)
        try:
            attention = resolve_module(net, name)
        except ValueError as err:
            raise ValueError(
                f"AttentionGradCAM needs a channel-attention module ({err}); pass attention_layer='<name>' or use "
                "GradCAM for networks without attention"
            ) from None
        weights = getattr(attention, "last_weights", None)
        if not isinstance(weights, torch.Tensor) or weights.shape != gradients.shape[:2]:
            shape = tuple(weights.shape) if isinstance(weights, torch.Tensor) else None
            raise ValueError(
                f"{name}.last_weights must be an (N, C) = {tuple(gradients.shape[:2])} tensor set by the forward "
                f"pass (C = channels of the Grad-CAM layer), got {shape}"
            )
        return gradients.mean(dim=(2, 3)) * weights.detach().to(gradients)

    @contextlib.contextmanager
    def _keep_attention_state(self, model: nn.Module) -> Iterator[None]:
        # explaining in place runs forwards on the caller's model: keep its attention state as it was
        if self.copy_model:
            yield
            return
        attention = resolve_module(model, self.attention_layer_for(model))
        saved = getattr(attention, "last_weights", None)
        try:
            yield
        finally:
            attention.last_weights = saved

    def per_class(self, model: nn.Module, images: torch.Tensor, classes: Sequence[int] | torch.Tensor) -> torch.Tensor:
        with self._keep_attention_state(model):
            return super().per_class(model, images, classes)

    def __call__(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor | int) -> torch.Tensor:
        with self._keep_attention_state(model):
            return super().__call__(model, images, targets)
