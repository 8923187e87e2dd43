"""What a finished run logged, read back from disk: a TensorBoard run folder (event files) or the fallback folder
of a run without an image-capable logger (``xai_images/``: PNGs, captions, Markdown and ``scalars.csv``).

Example:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp()) / "xai_images"
    >>> _ = (folder / "XAI" / "notes").mkdir(parents=True)
    >>> _ = (folder / "XAI" / "notes" / "step_000001.md").write_text("**ring** found")
    >>> _ = (folder / "scalars.csv").write_text("step,tag,value\\n1,XAI/x,0.5\\n2,XAI/x,0.25\\n")
    >>> run = read_run(folder.parent)
    >>> run.source, run.texts["XAI/notes"][0].text, run.scalars["XAI/x"]
    ('folder', '**ring** found', [(1, 0.5), (2, 0.25)])
"""

from __future__ import annotations

import csv
import json
import math
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

__all__ = ["FALLBACK_FOLDER", "SCALARS_CSV", "ImageEntry", "RunData", "TextEntry", "UnreadableRunError", "read_run"]

#: the fallback folder's name (the same as :data:`lit_xai.callbacks.sinks.FALLBACK_FOLDER`)
FALLBACK_FOLDER = "xai_images"
#: the CSV of scalars in the fallback folder: columns ``step,tag,value``
SCALARS_CSV = "scalars.csv"
#: the JSON report ShortcutMonitor writes into the run folder
SHORTCUT_REPORT = "shortcut_report.json"
CORRECTION_RECORD = "correction.json"

_STEP_FILE = re.compile(r"^step_(-?\d+)\.(png|md|txt)$")


@dataclass(frozen=True)
class ImageEntry:
    """One logged picture: its step, the encoded bytes (PNG as logged) and the caption, if any."""

    step: int
    data: bytes
    caption: Optional[str] = None
    mime: str = "image/png"


@dataclass(frozen=True)
class TextEntry:
    """One logged (Markdown) text and its step."""

    step: int
    text: str


@dataclass
class RunData:
    """Everything a run logged, by tag; lists are sorted by step.

    Attributes:
        path: the run folder that was read.
        source: ``"tensorboard"`` (event files) or ``"folder"`` (the fallback folder).
        images: tag -> pictures.
        texts: tag -> texts (captions of pictures are attached to the pictures, not listed here).
        scalars: tag -> ``(step, value)`` pairs.
        shortcut: the content of ``shortcut_report.json`` when the run folder holds one.
        correction: the content of ``correction.json`` (what ShortcutCorrection applied and its result), if any.
        purged: points dropped because a later event file of the same run (a resume into the same version) logged
            the same tag again from an earlier step on (see :func:`read_run`).
    """

    path: Path
    source: str
    images: dict[str, list[ImageEntry]] = field(default_factory=dict)
    texts: dict[str, list[TextEntry]] = field(default_factory=dict)
    scalars: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    shortcut: Optional[dict[str, Any]] = None
    correction: Optional[dict[str, Any]] = None
    purged: int = 0

    @property
    def empty(self) -> bool:
        """True when nothing at all was found."""
        return not (self.images or self.texts or self.scalars or self.shortcut)


def read_run(path: Union[str, Path]) -> RunData:
    """Read a run folder: TensorBoard event files if it holds any, else its ``xai_images/`` fallback folder (or the
    fallback folder itself), plus ``shortcut_report.json`` beside them.

    Args:
        path: a TensorBoard run folder (``lightning_logs/demo/version_0``), a run folder with an ``xai_images/``
            sub-folder, or an ``xai_images/`` folder.

    Returns:
        The :class:`RunData`.

    Raises:
        FileNotFoundError: the folder does not exist or holds neither event files nor a fallback folder.
        UnreadableRunError: an event file is empty, garbled or cut short (the file named).
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder; pass a run folder such as lightning_logs/demo/version_0")
    if any(root.glob("events.out.tfevents.*")):
        run = _read_tensorboard(root)
    elif (root / FALLBACK_FOLDER).is_dir():
        run = _read_folder(root / FALLBACK_FOLDER, root)
    elif root.name == FALLBACK_FOLDER or (root / SCALARS_CSV).is_file() or any(root.rglob("step_*.png")):
        root = root.parent if root.name == FALLBACK_FOLDER else root
        run = _read_folder(Path(path), root)
    else:
        runs = sorted(str(p.parent) for p in root.glob("*/events.out.tfevents.*"))
        hint = f"; runs below it: {', '.join(dict.fromkeys(runs))}" if runs else ""
        raise FileNotFoundError(
            f"{root} holds no TensorBoard event files and no {FALLBACK_FOLDER}/ folder; pass the folder of one run "
            f"(e.g. lightning_logs/<name>/version_<n>){hint}"
        )
    report = root / SHORTCUT_REPORT
    if report.is_file():
        try:
            run.shortcut = json.loads(report.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            run.shortcut = None  # half-written or foreign: the report goes on without it
    correction = root / CORRECTION_RECORD
    if correction.is_file():
        try:
            run.correction = json.loads(correction.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            run.correction = None
    return run


class UnreadableRunError(ValueError):
    """An event file of the run cannot be read to its end (empty, garbled, cut short): the report would be empty or
    partial without a word, so it is refused, naming the file."""


def _records(file: Path) -> Iterator[bytes]:
    """The records of a TFRecord file (an event file): ``uint64 length, uint32 crc, data, uint32 crc``.

    Only the length's checksum is verified (8 bytes, cheap). tensorboard's own reader, without TensorFlow installed,
    checks every byte's CRC-32C in pure Python: about 3 s per MB, minutes for a run with pictures.

    Raises:
        UnreadableRunError: the file is empty, is not an event file, or ends inside a record (naming the file, the
            byte offset and how many records were read).
    """
    size = file.stat().st_size
    if size == 0:
        raise UnreadableRunError(
            f"{file} is empty (0 bytes): not a TensorBoard event file; delete it (or move it out of the run folder) "
            "and build the report again"
        )
    count = 0
    with open(file, "rb") as fh:
        while True:
            offset = fh.tell()
            header = fh.read(12)
            if not header:
                return
            (length,) = struct.unpack("<Q", header[:8]) if len(header) >= 8 else (0,)
            if len(header) < 12 or struct.unpack("<I", header[8:])[0] != _masked_crc(header[:8]):
                what = "cut short" if len(header) < 12 else "garbled (no record starts there)"
                raise UnreadableRunError(_unreadable(file, what, offset, size, count))
            data = fh.read(length)
            if len(data) < length or len(fh.read(4)) < 4:
                raise UnreadableRunError(_unreadable(file, "cut short inside a record", offset, size, count))
            count += 1
            yield data


def _unreadable(file: Path, what: str, offset: int, size: int, count: int) -> str:
    return (
        f"{file} cannot be read to its end: {what} at byte {offset} of {size}, after {count} records; the report "
        "would be partial. If the training still runs, wait for it; else move the damaged file out of the run folder "
        "(TensorBoard shows the same gap) and build the report again"
    )


def _masked_crc(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _read_tensorboard(root: Path) -> RunData:
    """Images, texts and scalars of the event files in ``root``, oldest file first: every scalar point as written
    (as tensorboard's reader gives them); a picture or text logged twice at one step (a resume) keeps the last."""
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.util import tensor_util

    plugins: dict[str, str] = {}  # tag -> plugin name (written with a tag's first value only)
    images: dict[str, dict[int, ImageEntry]] = {}
    texts: dict[str, dict[int, TextEntry]] = {}
    scalars: dict[str, list[tuple[int, float]]] = {}
    purged = 0
    for file in sorted(root.glob("events.out.tfevents.*"), key=_event_file_order):
        first: set[str] = set()  # tags already seen in this file
        for record in _records(file):
            try:
                event = Event.FromString(record)
            except Exception as err:  # noqa: BLE001 - a protobuf DecodeError: the bytes are no event
                raise UnreadableRunError(f"{file} holds a record that is no TensorBoard event ({err})") from err
            if not event.HasField("summary"):
                continue
            step = int(event.step)
            for value in event.summary.value:
                tag = value.tag
                if tag not in first:  # a later file (a resumed run) supersedes a tag's points from its first step on
                    first.add(tag)
                    purged += _purge(tag, step, images, texts, scalars)
                if value.HasField("metadata") and value.metadata.plugin_data.plugin_name:
                    plugins[tag] = value.metadata.plugin_data.plugin_name
                kind = value.WhichOneof("value")
                if kind == "simple_value":
                    scalars.setdefault(tag, []).append((step, float(value.simple_value)))
                elif kind == "image":
                    data = bytes(value.image.encoded_image_string)
                    images.setdefault(tag, {})[step] = ImageEntry(step, data, None, _mime(data))
                elif kind == "tensor" and plugins.get(tag) == "text":
                    array = tensor_util.make_ndarray(value.tensor)
                    items = array.flatten().tolist() if hasattr(array, "flatten") else [array]
                    text = "\n".join(v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in items)
                    # torch's SummaryWriter.add_text stores "<tag>" as "<tag>/text_summary"
                    name = tag[: -len("/text_summary")] if tag.endswith("/text_summary") else tag
                    texts.setdefault(name, {})[step] = TextEntry(step, text)
                elif kind == "tensor" and plugins.get(tag) == "scalars":
                    array = tensor_util.make_ndarray(value.tensor)
                    scalars.setdefault(tag, []).append((step, float(array.reshape(-1)[0])))
    run = RunData(path=root, source="tensorboard", purged=purged)
    for tag, by_step in images.items():
        captions = texts.get(f"{tag}/caption", {})
        run.images[tag] = [
            ImageEntry(e.step, e.data, captions[s].text if s in captions else None, e.mime) for s, e in by_step.items()
        ]
    captions = {f"{tag}/caption" for tag in images}
    run.texts = {t: list(v.values()) for t, v in texts.items() if t not in captions}
    run.scalars = {t: [(s, v) for s, v in points if math.isfinite(v)] for t, points in scalars.items()}
    _sort(run)
    return run


def _event_file_order(file: Path) -> tuple:
    """Oldest event file first: ``events.out.tfevents.<seconds>.<host>.<pid>.<counter>`` ordered by its numbers, not
    as text (a process's tenth writer, counter 10, sorts before its ninth as text)."""
    parts = file.name.split(".")
    numbers = [int(p) if p.isdigit() else -1 for p in (parts[3:4] + parts[-2:])] if len(parts) >= 6 else []
    return (*numbers, file.name)


def _purge(
    tag: str,
    step: int,
    images: dict[str, dict[int, ImageEntry]],
    texts: dict[str, dict[int, TextEntry]],
    scalars: dict[str, list[tuple[int, float]]],
) -> int:
    """Drop the points of ``tag`` at ``step`` and later that earlier event files hold (as TensorBoard's
    ``purge_step`` does, per tag: a resumed run logging into the same version re-logs the epochs after its
    checkpoint); the number dropped."""
    name = tag[: -len("/text_summary")] if tag.endswith("/text_summary") else tag
    dropped = 0
    for by_step in (images.get(tag), texts.get(name)):
        if by_step:
            late = [s for s in by_step if s >= step]
            for s in late:
                del by_step[s]
            dropped += len(late)
    points = scalars.get(tag)
    if points:
        kept = [p for p in points if p[0] < step]
        dropped += len(points) - len(kept)
        scalars[tag] = kept
    return dropped


def _mime(data: bytes) -> str:
    return "image/jpeg" if data.startswith(b"\xff\xd8") else "image/gif" if data.startswith(b"GIF8") else "image/png"


def _read_folder(folder: Path, root: Path) -> RunData:
    run = RunData(path=root, source="folder")
    captions: dict[tuple[str, int], str] = {}
    pictures: list[tuple[str, int, Path]] = []
    for file in sorted(folder.rglob("step_*")):
        match = _STEP_FILE.match(file.name)
        if match is None or not file.is_file():
            continue
        tag, step, kind = file.parent.relative_to(folder).as_posix(), int(match.group(1)), match.group(2)
        if kind == "png":
            pictures.append((tag, step, file))
        elif kind == "txt":
            captions[(tag, step)] = file.read_text(encoding="utf-8").strip()
        else:
            run.texts.setdefault(tag, []).append(TextEntry(step, file.read_text(encoding="utf-8")))
    for tag, step, file in pictures:
        run.images.setdefault(tag, []).append(ImageEntry(step, file.read_bytes(), captions.get((tag, step))))
    table = folder / SCALARS_CSV
    if table.is_file():
        with open(table, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                try:
                    step, value = int(row["step"]), float(row["value"])
                except (KeyError, TypeError, ValueError):
                    continue
                if math.isfinite(value):
                    run.scalars.setdefault(row["tag"], []).append((step, value))
    _sort(run)
    return run


def _sort(run: RunData) -> None:
    for entries in (*run.images.values(), *run.texts.values()):
        entries.sort(key=lambda e: e.step)
    for points in run.scalars.values():
        points.sort(key=lambda p: p[0])
