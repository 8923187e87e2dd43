"""Build a run's self-contained report file: read the run folder, render the page, write it, time it.

Example:
    >>> import tempfile, pathlib
    >>> run_dir = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (run_dir / "xai_images").mkdir()
    >>> _ = (run_dir / "xai_images" / "scalars.csv").write_text("step,tag,value\\n1,XAI/x,0.5\\n")
    >>> built = write_report(run_dir)
    >>> built.path.name, built.size_bytes > 1000, built.path.read_text().count("<svg")
    ('report.html', True, 1)
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from .render import render_report
from .run_data import read_run

__all__ = ["BuiltReport", "write_report"]


@dataclass(frozen=True)
class BuiltReport:
    """A written report: where, how large, how long it took, and what went into it."""

    path: Path
    size_bytes: int
    seconds: float
    pictures: int
    texts: int
    scalar_series: int
    purged: int = 0

    def summary(self) -> str:
        """One line for the terminal."""
        resumed = (
            f"; {self.purged} points of a resumed run's earlier event file dropped (logged again after its checkpoint)"
            if self.purged
            else ""
        )
        return (
            f"wrote {self.path} ({self.size_bytes / 1e6:.2f} MB, {self.pictures} pictures, {self.texts} texts, "
            f"{self.scalar_series} scalar series) in {self.seconds:.2f} s{resumed}"
        )


def write_report(
    run_dir: Union[str, Path],
    output: Optional[Union[str, Path]] = None,
    title: Optional[str] = None,
    lossless: bool = False,
) -> BuiltReport:
    """Write the self-contained HTML report of a run folder.

    Args:
        run_dir: a TensorBoard run folder, a run folder with ``xai_images/``, or an ``xai_images/`` folder.
        output: the HTML file to write; default ``<run_dir>/report.html``.
        title: the page title; default names the run folder.
        lossless: embed the pictures as logged (PNG; about four times larger), see
            :func:`~lit_xai.report.render.render_report`.

    Returns:
        A :class:`BuiltReport`.

    Raises:
        FileNotFoundError: the folder holds no run (the message says what to pass instead).
    """
    start = time.perf_counter()
    path = Path(output) if output is not None else Path(run_dir) / "report.html"
    if path.is_dir():  # checked before the (seconds-long) build, so nothing is left behind
        raise IsADirectoryError(f"{path} is a folder; pass the report's file name, e.g. -o {path / 'report.html'}")
    run = read_run(run_dir)
    page = render_report(run, title=title, lossless=lossless)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(path, page)
    return BuiltReport(
        path=path,
        size_bytes=path.stat().st_size,
        seconds=time.perf_counter() - start,
        pictures=sum(map(len, run.images.values())),
        texts=sum(map(len, run.texts.values())),
        scalar_series=len(run.scalars),
        purged=run.purged,
    )


def _write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file beside it: a reader never sees half a page, and the
    temporary file is removed whatever fails (a full disk, a folder in the way)."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the report from the other users of a shared machine
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
