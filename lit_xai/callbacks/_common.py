"""Lightning plumbing shared by the callbacks: logger discovery, RNG preservation, scheduling, rank-0 compute."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from typing import Any, Optional

import numpy as np
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger

__all__ = ["find_tensorboard", "preserve_rng", "should_run", "explained_module", "denormalizer", "notify"]


def find_tensorboard(trainer: Trainer) -> Optional[TensorBoardLogger]:
    """The first TensorBoard logger of the trainer, or None."""
    return next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)


@contextlib.contextmanager
def preserve_rng() -> Iterator[None]:
    """Restore Python, NumPy and torch (CPU and CUDA) RNG states afterwards, so callbacks never shift training."""
    py, np_state, cpu = random.getstate(), np.random.get_state(), torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        random.setstate(py)
        np.random.set_state(np_state)
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


def should_run(trainer: Trainer, every_n_epochs: int) -> bool:
    """Every ``every_n_epochs`` epochs and at the last epoch; always under ``fast_dev_run``."""
    if trainer.fast_dev_run:
        return True
    epoch = trainer.current_epoch
    last = trainer.max_epochs is not None and trainer.max_epochs > 0 and epoch + 1 >= trainer.max_epochs
    return (epoch + 1) % max(1, every_n_epochs) == 0 or last


def explained_module(pl_module: LightningModule, module_attr: Optional[str]) -> torch.nn.Module:
    """The module mapping images to logits: ``pl_module`` itself or its attribute ``module_attr``."""
    if not module_attr:
        return pl_module
    module = pl_module
    for part in module_attr.split("."):
        if not hasattr(module, part):
            raise AttributeError(
                f"{type(pl_module).__name__} has no attribute {module_attr!r}; set module_attr to the submodule that "
                "maps images to logits (or leave it empty to explain the LightningModule's forward)"
            )
        module = getattr(module, part)
    return module


def denormalizer(trainer: Trainer) -> Any:
    """``images -> [0, 1]`` from the datamodule if it offers ``denormalize``, else per-image min-max scaling."""
    dm = getattr(trainer, "datamodule", None)
    if dm is not None and callable(getattr(dm, "denormalize", None)):
        return lambda x: dm.denormalize(x).clamp(0, 1)

    def minmax(x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        lo, hi = flat.amin(1)[:, None, None, None], flat.amax(1)[:, None, None, None]
        return ((x - lo) / (hi - lo).clamp_min(1e-12)).clamp(0, 1)

    return minmax


def notify(trainer: Trainer, message: str) -> None:
    """Print through the progress bar when there is one (keeps the bar intact), else plain print on rank 0."""
    if not trainer.is_global_zero:
        return
    bar = trainer.progress_bar_callback
    if bar is not None and hasattr(bar, "print"):
        bar.print(message)
    else:
        print(message)
