"""A float64 model is explained in float64: maps keep the dtype and LRP conserves at float64 precision (issue 30.7);
half-precision models are still explained in float32 (LRP's epsilon underflows in float16)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lit_xai.explainers import CRP, LRP, GradCAM


def _net(dtype: torch.dtype) -> nn.Module:
    """A bias-free conv net: LRP-epsilon/ZPlus with 1e-30 stabilizers must conserve the logit but for rounding."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, bias=False),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 3, bias=False),
    )
    return net.to(dtype).eval()


def _images(dtype: torch.dtype) -> torch.Tensor:
    return torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)).to(dtype)


def test_float64_model_gives_float64_maps_that_conserve_at_float64_precision() -> None:
    net, x, target = _net(torch.float64), _images(torch.float64), torch.tensor([0, 2])
    lrp = LRP("epsilon_plus", canonizers=[], composite_kwargs={"epsilon": 1e-30, "stabilizer": 1e-30})
    relevance = lrp.relevance(net, x, target)
    assert relevance.dtype == torch.float64
    with torch.no_grad():
        logits = net(x)[torch.arange(2), target]
    ratio = relevance.flatten(1).sum(1) / logits
    # float32 would leave ~1e-6 here; float64 rounding over these ~1e3-term sums and the 1e-30 stabilizers leave ~1e-15
    assert torch.allclose(ratio, torch.ones_like(ratio), rtol=0, atol=1e-10), ratio - 1
    assert lrp(net, x, target).dtype == torch.float64
    assert GradCAM(layer="2")(net, x, target).dtype == torch.float64
    concepts = CRP(layer="2", top_k=2)(net, x, target)
    assert concepts.maps.dtype == torch.float64
    assert next(net.parameters()).dtype == torch.float64  # the caller's model is untouched


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_models_are_explained_in_float32(dtype: torch.dtype) -> None:
    net = _net(dtype)
    maps = LRP("epsilon_plus", canonizers=[])(net, _images(dtype), torch.tensor([0, 1]))
    assert maps.dtype == torch.float32 and torch.isfinite(maps).all()
    assert next(net.parameters()).dtype == dtype
