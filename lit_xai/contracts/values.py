"""The value range of model inputs: conversions to and from images in [0, 1] (display, detectors, inserters)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Optional

import torch

__all__ = ["ValueRange", "minmax01", "value_range"]


class ValueRange:
    """Conversions between model inputs and images in [0, 1] (for display, detectors and inserters).

    Args:
        to01: model input -> [0, 1].
        from01: [0, 1] -> model input.
        source: where the conversion came from (for messages).
    """

    def __init__(
        self,
        to01: Callable[[torch.Tensor], torch.Tensor],
        from01: Callable[[torch.Tensor], torch.Tensor],
        source: str,
    ) -> None:
        self.to01, self.from01, self.source = to01, from01, source


def value_range(
    datamodule: Any,
    normalization: Optional[tuple[Sequence[float], Sequence[float]]] = None,
    input_range: Optional[tuple[float, float]] = None,
) -> Optional[ValueRange]:
    """How model inputs map to [0, 1]: an explicit ``normalization=(mean, std)`` or ``input_range=(lo, hi)``,
    else the datamodule's ``normalize``/``denormalize``; ``None`` when nothing says.

    Example:
        >>> vr = value_range(None, input_range=(0, 255))
        >>> vr.to01(torch.tensor([0.0, 127.5, 300.0])).tolist(), vr.source
        ([0.0, 0.5, 1.0], 'input_range')
    """
    if normalization is not None and input_range is not None:
        raise ValueError("give normalization=(mean, std) or input_range=(low, high), not both")
    if normalization is not None:
        mean = torch.as_tensor(normalization[0], dtype=torch.float32)[None, :, None, None]
        std = torch.as_tensor(normalization[1], dtype=torch.float32)[None, :, None, None]
        return ValueRange(
            lambda x: (x * std.to(x) + mean.to(x)).clamp(0, 1),
            lambda x: (x - mean.to(x)) / std.to(x),
            "normalization=(mean, std)",
        )
    if input_range is not None:
        lo, hi = float(input_range[0]), float(input_range[1])
        if hi <= lo:
            raise ValueError(f"input_range must be (low, high) with high > low, got {input_range}")
        return ValueRange(lambda x: ((x - lo) / (hi - lo)).clamp(0, 1), lambda x: x * (hi - lo) + lo, "input_range")
    if (
        datamodule is not None
        and callable(getattr(datamodule, "denormalize", None))
        and callable(getattr(datamodule, "normalize", None))
    ):
        return ValueRange(lambda x: datamodule.denormalize(x).clamp(0, 1), datamodule.normalize, "the datamodule")
    return None


def minmax01(x: torch.Tensor) -> torch.Tensor:
    """Per-image min-max scaling to [0, 1] (display fallback when the value range is unknown).

    Example:
        >>> minmax01(torch.tensor([[[[2.0, 4.0]]]])).tolist()
        [[[[0.0, 1.0]]]]
    """
    flat = x.flatten(1)
    lo, hi = flat.amin(1)[:, None, None, None], flat.amax(1)[:, None, None, None]
    return ((x - lo) / (hi - lo).clamp_min(1e-12)).clamp(0, 1)
