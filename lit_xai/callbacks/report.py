"""``RunReport``: write the run's self-contained HTML report (:mod:`lit_xai.report`) when fit ends, and again after
``trainer.test`` (so the test pictures and metrics are in it). Works in any Lightning project: it reads what was
logged (TensorBoard event files, or the ``xai_images/`` fallback folder of a run without an image-capable logger),
whichever callbacks logged it.

Example:
    >>> callback = RunReport()  # Trainer(callbacks=[..., callback]) writes <run folder>/report.html
    >>> callback.filename, callback.after_test
    ('report.html', True)
"""

from __future__ import annotations

from pathlib import Path, PurePath
from typing import Optional

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn

from .sinks import fallback_dir, find_tensorboard, notify

__all__ = ["RunReport"]


class RunReport(Callback):
    """Write ``<run folder>/report.html`` (verdict, audit, alert timeline, probes, concepts, charts; pictures
    embedded, no network, no server) at the end of fit and of test.

    The run folder is the TensorBoard logger's ``log_dir`` when the trainer has one, else the folder holding the
    fallback ``xai_images/``. Rank 0 only. It never fails the training: an error becomes a warning that says how to
    build the report later (``lit-xai report RUN_DIR``). Put it after the monitors in ``callbacks``; it runs in
    ``teardown``, after every callback's ``on_fit_end``, so their last results are in the report either way.

    Args:
        filename: the report's file name inside the run folder (sub-folders allowed, never ``..`` or an absolute
            path: to write elsewhere, run ``lit-xai report RUN_DIR -o PATH`` after the training).
        after_test: write it again after ``trainer.test`` (the demo's CLI tests the best checkpoint after fit).
        lossless: embed the pictures as logged (PNG, about four times larger) instead of compact JPEGs.
        verbose: print where the report went, its size and its build time.
    """

    def __init__(
        self, filename: str = "report.html", after_test: bool = True, lossless: bool = False, verbose: bool = True
    ) -> None:
        if not isinstance(filename, str) or not filename.strip():
            raise ValueError(f"filename must be a file name like 'report.html', got {filename!r}")
        parts = PurePath(filename).parts
        if PurePath(filename).is_absolute() or ".." in parts or filename.endswith(("/", "\\")) or not parts:
            raise ValueError(
                f"RunReport(filename={filename!r}) must name a file inside the run folder, like 'report.html' or "
                "'reports/report.html' (no '..', no absolute path); to write elsewhere, run `lit-xai report RUN_DIR "
                "-o PATH` after the training"
            )
        self.filename = filename
        self.after_test = after_test
        self.lossless = lossless
        self.verbose = verbose
        self.last_path: Optional[Path] = None

    def run_dir(self, trainer: Trainer) -> Path:
        """The folder the report is built from (no collective call: safe on rank 0 alone)."""
        tensorboard = find_tensorboard(trainer)
        if tensorboard is not None:
            return Path(tensorboard.log_dir)
        return fallback_dir(trainer).parent

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage not in ("fit", "test") or (stage == "test" and not self.after_test):
            return
        if not trainer.is_global_zero or trainer.fast_dev_run:
            return
        self.write(trainer)
        if stage == "test" or not self.after_test:  # no later report reads the re-encoded pictures
            from ..report.render import clear_image_cache

            clear_image_cache()

    def write(self, trainer: Trainer) -> Optional[Path]:
        """Build the report now (rank 0); returns its path, or None (with a warning) when it could not be built."""
        from ..report import write_report

        run_dir = self.run_dir(trainer)
        try:
            tensorboard = find_tensorboard(trainer)
            if tensorboard is not None:
                tensorboard.experiment.flush()  # the last pictures into the event file before it is read
            built = write_report(run_dir, run_dir / self.filename, lossless=self.lossless)
        except Exception as err:  # the report is a by-product: the training's result must not depend on it
            rank_zero_warn(
                f"RunReport: could not write the report of {run_dir} ({type(err).__name__}: {err}); the training is "
                f"not affected; build it later with `lit-xai report {run_dir}`"
            )
            return None
        self.last_path = built.path
        if self.verbose:
            notify(trainer, f"[RunReport] {built.summary()}")
        return built.path
