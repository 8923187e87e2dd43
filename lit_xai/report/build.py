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

    def summary(self) -> str:
        """One line for the terminal."""
        return (
            f"wrote {self.path} ({self.size_bytes / 1e6:.2f} MB, {self.pictures} pictures, {self.texts} texts, "
            f"{self.scalar_series} scalar series) in {self.seconds:.2f} s"
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
    run = read_run(run_dir)
    page = render_report(run, title=title, lossless=lossless)
    path = Path(output) if output is not None else Path(run_dir) / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)  # a reader never sees half a page
    return BuiltReport(
        path=path,
        size_bytes=path.stat().st_size,
        seconds=time.perf_counter() - start,
        pictures=sum(map(len, run.images.values())),
        texts=sum(map(len, run.texts.values())),
        scalar_series=len(run.scalars),
    )
