"""Where the callbacks' pictures, text and scalars go: every logger of the trainer that can take them, else
PNG/Markdown files; plus the progress-bar notice and the callback metrics other callbacks read.

TensorBoard, Weights & Biases and MLflow each get images and text through their own API; a run with no
image-capable logger (only ``CSVLogger``, or ``logger=False``) gets the same pictures as PNG files under its log
folder, with one warning saying where, an ``index.html`` there linking them by tag and step, and the monitors'
scalars in ``scalars.csv`` beside them (``step,tag,value``). Nothing is dropped silently: each call returns a
:class:`SinkReport`.

wandb and mlflow are never imported here: loggers are recognised with ``isinstance`` against
``lightning.pytorch.loggers`` classes, whose import does not import those packages.

Example:
    In a callback, on every rank (the sink itself only acts on global rank 0)::

        def on_validation_epoch_end(self, trainer, pl_module):
            grid = explanation_grid(images01, maps, captions, method="LRP")
            log_image(trainer, "xai/lrp/heatmaps", grid, trainer.global_step, caption="probes 0-7")
            log_text(trainer, "xai/probes", "| probe | class |\\n|---|---|\\n| 0 | nevus |", trainer.global_step)
"""

from __future__ import annotations

import csv
import io
import re
import warnings
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Optional, Union

import numpy as np
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import Logger, MLFlowLogger, TensorBoardLogger, WandbLogger
from lightning.pytorch.loggers.logger import DummyLogger
from PIL import Image

__all__ = [
    "FALLBACK_FOLDER",
    "SCALARS_CSV",
    "Picture",
    "SinkReport",
    "emit",
    "fallback_dir",
    "find_tensorboard",
    "log_image",
    "log_scalars",
    "log_text",
    "notify",
    "publish",
    "scalars_of",
]

#: sub-folder of the run's log folder that receives images and text no logger could take
FALLBACK_FOLDER = "xai_images"
#: the fallback folder's table of the monitors' scalars (columns ``step,tag,value``), written when no logger shows
#: pictures (with ``logger=False`` the only place they are kept)
SCALARS_CSV = "scalars.csv"

# trainer -> warning keys already issued, so each kind of fallback warns once per trainer (not once per process:
# two runs in one session each deserve to be told where their pictures went)
_WARNED: weakref.WeakKeyDictionary[Trainer, set[str]] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class SinkReport:
    """Where one image or text went.

    Attributes:
        tag: the tag it was logged under.
        step: the step it was logged at.
        loggers: class names of the loggers that took it through their own API.
        files: fallback files written (PNG, Markdown, caption text).
        skipped: why nothing was written at all (``"not global rank 0"``, ``"fast_dev_run"``), else ``None``.
    """

    tag: str
    step: int
    loggers: tuple[str, ...] = ()
    files: tuple[Path, ...] = field(default_factory=tuple)
    skipped: str | None = None

    @property
    def delivered(self) -> bool:
        """True when a logger or a fallback file holds the item."""
        return bool(self.loggers or self.files)


def _warn_once(trainer: Trainer, key: str, message: str) -> None:
    seen = _WARNED.setdefault(trainer, set())
    if key not in seen:
        seen.add(key)
        warnings.warn(message, UserWarning, stacklevel=3)


def _check_tag(tag: str) -> str:
    if not isinstance(tag, str) or not tag.strip("/ "):
        raise ValueError(f"tag must be a non-empty string like 'xai/lrp/heatmaps', got {tag!r}")
    return tag


def _as_chw_uint8(image: torch.Tensor) -> torch.Tensor:
    if not isinstance(image, torch.Tensor) or image.ndim != 3 or image.shape[0] != 3:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(
            f"image must be a (3, H, W) torch tensor (uint8, or float in [0, 1]), got {shape}; "
            "lit_xai.visualization's grids return exactly that"
        )
    x = image.detach().cpu()
    if x.dtype != torch.uint8:
        if not x.is_floating_point():
            raise ValueError(f"image must be uint8 or float in [0, 1], got dtype {x.dtype}")
        x = (x.float().clamp(0, 1) * 255).round().to(torch.uint8)
    return x.contiguous()


#: zlib level of the PNGs written here: level 1 encodes the explanation grids about 3x faster than PIL's default 6
#: (measured on the demo's grids: 21 vs 64 ms each) for files about 12 % larger
PNG_COMPRESS_LEVEL = 1


def _png(hwc: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(hwc)).save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def _tensorboard_image(experiment: object, tag: str, hwc: np.ndarray, step: int) -> None:
    """``add_image`` with a faster PNG encoding: the image summary written directly (same event, same plugin)."""
    writer = getattr(experiment, "_get_file_writer", None)
    if writer is None:  # not a (torch / tensorboardX) SummaryWriter: its own add_image
        experiment.add_image(tag, hwc, step, dataformats="HWC")
        return
    from tensorboard.compat.proto.summary_pb2 import Summary

    h, w, c = hwc.shape
    image = Summary.Image(height=h, width=w, colorspace=c, encoded_image_string=_png(hwc))
    writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)


def _safe_relpath(tag: str) -> Path:
    """A tag as a relative path: ``/`` nests folders, anything else odd becomes ``_``, no ``..`` escapes."""
    parts = [re.sub(r"[^A-Za-z0-9_.\-]+", "_", p) for p in tag.split("/") if p.strip()]
    parts = [p if p not in {".", ".."} else "_" for p in parts]
    return Path(*parts)


def fallback_dir(trainer: Trainer) -> Path:
    """The folder for fallback files: ``<first logger's log_dir, else trainer.default_root_dir>/xai_images``.

    ``trainer.log_dir`` is not used: it is a collective (a broadcast) and would hang when called on rank 0 only.
    """
    for lg in trainer.loggers:
        log_dir = getattr(lg, "log_dir", None)
        if log_dir:
            return Path(log_dir) / FALLBACK_FOLDER
    return Path(trainer.default_root_dir) / FALLBACK_FOLDER


def _skip_reason(trainer: Trainer) -> str | None:
    if not trainer.is_global_zero:
        return "not global rank 0"
    if trainer.fast_dev_run or (trainer.loggers and all(isinstance(lg, DummyLogger) for lg in trainer.loggers)):
        return "fast_dev_run"  # Lightning disables logging there on purpose; writing files would surprise
    return None


def _skipped(trainer: Trainer, tag: str, step: int) -> SinkReport | None:
    """The report of a call that must not log (not rank 0, fast_dev_run), warning once under fast_dev_run."""
    reason = _skip_reason(trainer)
    if reason is None:
        return None
    if reason == "fast_dev_run":
        _warn_once(trainer, "fast_dev_run", "lit_xai: fast_dev_run disables loggers; XAI images and text are not kept")
    return SinkReport(tag, step, skipped=reason)


def _fallback(trainer: Trainer, kind: str, tag: str, others: list[Logger]) -> Path:
    folder = fallback_dir(trainer)
    names = ", ".join(type(lg).__name__ for lg in others) or "no logger"
    _warn_once(
        trainer,
        "fallback",
        f"lit_xai: none of the trainer's loggers ({names}) can take images or text; writing the explanation "
        f"{kind}s (and any later ones) as files under {folder} instead. Add a TensorBoardLogger, WandbLogger or "
        "MLFlowLogger to see them in a dashboard.",
    )
    return folder / _safe_relpath(tag)


def log_image(trainer: Trainer, tag: str, image: torch.Tensor, step: int, caption: str | None = None) -> SinkReport:
    """Log a uint8 ``(3, H, W)`` picture to every logger of ``trainer`` that can show images.

    TensorBoard: an image summary as ``add_image`` writes it, PNG encoded at zlib level 1 (and the caption with
    ``add_text`` under ``<tag>/caption``); W&B: ``log_image`` with the caption; MLflow: an artifact
    ``<tag>/step_<step>.png`` (caption as ``.txt`` beside it). With no such logger the PNG goes to
    ``<log folder>/xai_images/<tag>/step_<step:06d>.png`` and a warning says so (once).

    Args:
        trainer: the running trainer.
        tag: e.g. ``"xai/lrp/heatmaps"``; ``/`` groups tags (TensorBoard) and nests folders (files).
        image: ``(3, H, W)`` uint8 (float in ``[0, 1]`` is converted).
        step: the x value, normally ``trainer.global_step``.
        caption: optional text shown with the picture.

    Returns:
        A :class:`SinkReport` naming the loggers and files that received it.
    """
    tag = _check_tag(tag)
    chw = _as_chw_uint8(image)
    step = int(step)
    skipped = _skipped(trainer, tag, step)
    if skipped is not None:
        return skipped
    hwc = chw.permute(1, 2, 0).numpy()
    took: list[str] = []
    others: list[Logger] = []
    for lg in trainer.loggers:
        if isinstance(lg, TensorBoardLogger):
            _tensorboard_image(lg.experiment, tag, hwc, step)
            if caption:
                lg.experiment.add_text(f"{tag}/caption", caption, step)
        elif isinstance(lg, WandbLogger):
            lg.log_image(key=tag, images=[hwc], step=step, **({"caption": [caption]} if caption else {}))
        elif isinstance(lg, MLFlowLogger):
            lg.experiment.log_image(lg.run_id, hwc, artifact_file=f"{tag}/step_{step:06d}.png")
            if caption:
                lg.experiment.log_text(lg.run_id, caption, artifact_file=f"{tag}/step_{step:06d}.txt")
        else:
            others.append(lg)
            continue
        took.append(type(lg).__name__)
    if took:
        return SinkReport(tag, step, loggers=tuple(took))
    folder = _fallback(trainer, "image", tag, others)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step_{step:06d}.png"
    path.write_bytes(_png(hwc))
    files = [path]
    if caption:
        files.append(folder / f"step_{step:06d}.txt")
        files[-1].write_text(caption + "\n", encoding="utf-8")
    _refresh_index(trainer)
    return SinkReport(tag, step, files=tuple(files))


def log_text(trainer: Trainer, tag: str, text: str, step: int) -> SinkReport:
    """Log (Markdown) text to every logger of ``trainer`` that can take text.

    TensorBoard: ``add_text``; W&B: ``log_text`` as a one-column table; MLflow: an artifact
    ``<tag>/step_<step>.md``. Otherwise ``<log folder>/xai_images/<tag>/step_<step:06d>.md`` with one warning.
    Acts on global rank 0 only.

    Returns:
        A :class:`SinkReport` naming the loggers and files that received it.
    """
    tag = _check_tag(tag)
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    step = int(step)
    skipped = _skipped(trainer, tag, step)
    if skipped is not None:
        return skipped
    took: list[str] = []
    others: list[Logger] = []
    for lg in trainer.loggers:
        if isinstance(lg, TensorBoardLogger):
            lg.experiment.add_text(tag, text, step)
        elif isinstance(lg, WandbLogger):
            lg.log_text(key=tag, columns=["text"], data=[[text]], step=step)
        elif isinstance(lg, MLFlowLogger):
            lg.experiment.log_text(lg.run_id, text, artifact_file=f"{tag}/step_{step:06d}.md")
        else:
            others.append(lg)
            continue
        took.append(type(lg).__name__)
    if took:
        return SinkReport(tag, step, loggers=tuple(took))
    folder = _fallback(trainer, "text", tag, others)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step_{step:06d}.md"
    path.write_text(text + ("" if text.endswith("\n") else "\n"), encoding="utf-8")
    _refresh_index(trainer)
    return SinkReport(tag, step, files=(path,))


def _refresh_index(trainer: Trainer) -> None:
    """(Re)write the fallback folder's ``index.html``; a failure warns once and never stops the training."""
    try:
        from ..report.index import write_index

        write_index(fallback_dir(trainer))
    except Exception as err:  # an index is a convenience: the pictures are written already
        _warn_once(trainer, "index", f"lit_xai: could not write the index of {fallback_dir(trainer)}: {err}")


def find_tensorboard(trainer: Trainer) -> Optional[TensorBoardLogger]:
    """The first TensorBoard logger of the trainer, or None."""
    return next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)


def log_scalars(trainer: Trainer, scalars: Mapping[str, float], step: int) -> None:
    """Log scalars at ``step`` through every logger's ``log_metrics`` (rank 0; any Lightning logger); when no logger
    shows pictures (``logger=False``, only ``CSVLogger``) they are also appended to the fallback folder's
    :data:`SCALARS_CSV`, beside the pictures."""
    if not scalars or not trainer.is_global_zero:
        return
    for logger in trainer.loggers:
        logger.log_metrics(dict(scalars), step=step)
    if _skip_reason(trainer) is None and not any(isinstance(lg, _PICTURE_LOGGERS) for lg in trainer.loggers):
        folder = fallback_dir(trainer)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / SCALARS_CSV
        new = not path.exists()
        with open(path, "a", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            if new:
                writer.writerow(["step", "tag", "value"])
            writer.writerows([int(step), tag, repr(float(value))] for tag, value in scalars.items())
        if new:
            _refresh_index(trainer)  # the index links the table


#: the loggers that take pictures through their own API (the others get the fallback folder)
_PICTURE_LOGGERS = (TensorBoardLogger, WandbLogger, MLFlowLogger)


def publish(trainer: Trainer, scalars: Optional[Mapping[str, float]]) -> None:
    """Make scalars visible to other callbacks (``trainer.callback_metrics``: checkpointing, early stopping) on
    every rank, without logging them a second time at Lightning's own step."""
    for name, value in (scalars or {}).items():
        trainer.callback_metrics[name] = torch.tensor(float(value))


def notify(trainer: Trainer, message: str) -> None:
    """Print through the progress bar while one is shown (keeps the bar intact), else plain print on rank 0."""
    if not trainer.is_global_zero:
        return
    bar = trainer.progress_bar_callback
    if bar is not None and hasattr(bar, "print") and _bar_shown(bar):
        bar.print(message)
    else:
        print(message, flush=True)


_TQDM_BARS = ("_train_progress_bar", "_val_progress_bar", "_test_progress_bar", "_predict_progress_bar")


def _bar_shown(bar: object) -> bool:
    """Whether the progress bar's ``print`` reaches the console: Lightning's TQDM bar drops the message once its
    bars are closed (at fit end, where the summary and the report's path are printed); other bars are trusted."""
    if not any(hasattr(bar, name) for name in _TQDM_BARS):
        return True
    return any(getattr(bar, name, None) is not None and not getattr(bar, name).disable for name in _TQDM_BARS)


class Picture(NamedTuple):
    """A rendered ``(3, H, W)`` uint8 picture with an optional caption (a value of :func:`emit`'s outputs)."""

    image: torch.Tensor
    caption: Optional[str] = None


Output = Union[float, int, str, torch.Tensor, Picture]


def emit(trainer: Trainer, outputs: Mapping[str, Union[Output, list[Output]]], step: int) -> None:
    """Log what a monitor's ``render`` returned, all at ``step``: numbers as scalars (one ``log_metrics`` call),
    strings as (Markdown) text, tensors and :class:`Picture` as images; a list logs each of its items under the
    tag (e.g. a scalar and a text of the same name)."""
    for tag, values in outputs.items():
        for value in values if isinstance(values, list) else [values]:
            if isinstance(value, Picture):
                log_image(trainer, tag, value.image, step, caption=value.caption)
            elif isinstance(value, torch.Tensor):
                log_image(trainer, tag, value, step)
            elif isinstance(value, str):
                log_text(trainer, tag, value, step)
            elif not _is_number(value):
                raise TypeError(f"cannot log {tag!r}: {type(value).__name__} is no scalar, text or picture")
    log_scalars(trainer, scalars_of(outputs), step)


def scalars_of(outputs: Mapping[str, Union[Output, list[Output]]]) -> dict[str, float]:
    """The numbers among ``outputs`` (what other ranks and callbacks receive)."""
    found: dict[str, float] = {}
    for tag, values in outputs.items():
        for value in values if isinstance(values, list) else [values]:
            if _is_number(value):
                found[tag] = float(value)
    return found


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
