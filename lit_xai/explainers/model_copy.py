"""Model preparation without side effects: the copy an explainer runs on, and its input.

Every explainer runs on a *deep copy* of the model in ``eval()`` with frozen parameters, under
``torch.inference_mode(False)`` + ``torch.enable_grad()`` with autocast disabled, so that

* it works inside Lightning's validation loop (``no_grad``) and ``trainer.validate`` (``inference_mode``);
* the caller's model keeps bit-identical parameters, ``.grad``, ``requires_grad``, ``training`` flags and hooks,
  even when the explanation raises (zennit canonizers mutate weights while their context is open).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

__all__ = ["explanation_model", "prepare_input"]


#: parameter dtypes an explained copy is cast up from (to float32); float32 and float64 models are explained as they are
_HALF_DTYPES = (torch.float16, torch.bfloat16)


@contextlib.contextmanager
def explanation_model(model: nn.Module, copy_model: bool = True, share_tensors: bool = False) -> Iterator[nn.Module]:
    """Yield a model safe to explain: eval mode, frozen parameters, gradients enabled, no autocast.

    With ``copy_model=True`` (default) a deep copy is explained, so nothing about ``model`` can change. With
    ``copy_model=False`` the model itself is used and its ``training`` flags and ``requires_grad`` are restored in
    ``finally`` (for models that cannot be deep-copied).

    ``share_tensors=True`` copies the module tree but lets its parameters and buffers share storage with ``model``
    (new tensor objects, so ``requires_grad``, ``.data =`` replacements and hooks stay on the copy): no memory copy
    of the weights (0.3 s for VGG-16). Only for callers that never write weights *in place* — zennit's and lit_xai's
    canonizers replace ``.data`` and restore it, which is what the explainers need.

    Example:
        >>> net = nn.Linear(2, 2)
        >>> with explanation_model(net, share_tensors=True) as copy_:
        ...     copy_ is not net, copy_.weight is not net.weight, copy_.weight.data_ptr() == net.weight.data_ptr()
        (True, True, True)
    """
    device_type = _device_type(model)
    with torch.inference_mode(False), torch.enable_grad(), torch.autocast(device_type, enabled=False):
        if copy_model:
            try:
                target = copy.deepcopy(model, _shared_tensor_memo(model) if share_tensors else None)
            except Exception:  # e.g. modules holding non-copyable handles; fall back to restore-in-place
                target = None
            if target is not None:
                try:
                    target.eval()
                    target.requires_grad_(False)
                    if any(p.dtype in _HALF_DTYPES for p in target.parameters()):
                        target.float()  # LRP's epsilon underflows in half precision; float64 stays float64
                    yield target
                finally:
                    # no gc.collect(): the copy is freed by reference counting
                    # (tests/explainers/test_explainer_contract.py checks it); a full collection cost 0.2-1 s per call
                    # with torchvision imported
                    del target
                return
        modes = {n: m.training for n, m in model.named_modules()}
        flags = {n: p.requires_grad for n, p in model.named_parameters()}
        buffers = {n: b.detach().clone() for n, b in model.named_buffers()}  # a forward may update them (counters)
        try:
            model.eval()
            model.requires_grad_(False)
            yield model
        finally:
            for n, m in model.named_modules():
                if n in modes:
                    m.training = modes[n]
            for n, p in model.named_parameters():
                if n in flags:
                    p.requires_grad_(flags[n])
            restore_buffers(model, buffers)


def _shared_tensor_memo(model: nn.Module) -> dict[int, Any]:
    """A ``copy.deepcopy`` memo mapping each parameter / buffer to a new tensor object on the same storage."""
    memo: dict[int, Any] = {}
    for param in model.parameters():
        memo[id(param)] = nn.Parameter(param.detach(), requires_grad=param.requires_grad)
    for buffer in model.buffers():
        memo[id(buffer)] = buffer.detach()
    return memo


def _device_type(model: nn.Module) -> str:
    p = next(model.parameters(), None)
    return p.device.type if p is not None else "cpu"


def prepare_input(images: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """A fresh leaf tensor on the model's device/dtype, safe to differentiate (clones inference tensors)."""
    p = next(model.parameters())
    if images.ndim != 4:
        raise ValueError(f"images must be a (N, C, H, W) batch, got shape {tuple(images.shape)}")
    x = images.detach().to(device=p.device, dtype=p.dtype).clone()
    return x.requires_grad_(True)


def restore_buffers(model: nn.Module, saved: dict[str, torch.Tensor]) -> None:
    """Put back the values of ``model``'s buffers that changed (in place, so references to them stay valid)."""
    for name, buffer in model.named_buffers():
        old = saved.get(name)
        if old is None or buffer.shape != old.shape or torch.equal(buffer, old):
            continue
        with torch.no_grad():
            try:
                buffer.copy_(old)
            except RuntimeError:  # an inference tensor: rebind instead
                owner, _, leaf = name.rpartition(".")
                model.get_submodule(owner)._buffers[leaf] = old
