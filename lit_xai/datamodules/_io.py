"""File helpers shared by the real-dataset DataModules: finding files, reading CSVs, decoding images fast.

Pure functions on paths and arrays (no Lightning, no torch). Real datasets are distributed with doubled folders,
case-duplicated folders, spaces in names and images from 256 x 256 to 6000 x 4000, so:

* :func:`index_images` maps lower-cased file stems to paths over a whole tree (first path in sorted order wins);
* :func:`find_files` / :func:`find_dirs` search recursively by exact (case-insensitive) name;
* :func:`read_csv` reads by column *name*, checks the required columns and keeps the line number of every row so
  errors can name the row;
* :func:`decode_image` decodes JPEGs at reduced scale (``PIL.Image.draft``) close to the training size, applies the
  EXIF orientation, and turns 8/16-bit grayscale X-rays into 3-channel uint8 RGB.

Example:
    >>> import numpy as np, tempfile, pathlib
    >>> from PIL import Image
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> Image.fromarray(np.full((30, 40), 60000, np.uint16)).save(d / "xray.png")
    >>> decode_image(d / "xray.png").shape, sorted(index_images(d))
    ((30, 40, 3), ['xray'])
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

__all__ = [
    "IMAGE_EXTENSIONS",
    "CsvTable",
    "DataFormatError",
    "check_image",
    "check_inside",
    "decode_image",
    "decode_mask",
    "find_dirs",
    "find_files",
    "index_images",
    "is_inside",
    "natural_key",
    "read_csv",
    "require_root",
]

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


class DataFormatError(ValueError):
    """The files on disk do not match the documented layout or schema (the message says where and how to fix)."""


def require_root(root: str | os.PathLike, looking_for: str) -> Path:
    """``root`` as a ``Path`` if it is an existing folder, else an error telling how to configure it."""
    path = Path(root).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(
            f"dataset folder {str(path)!r} does not exist; set data.init_args.root to the folder that contains "
            f"{looking_for} (e.g. --data.init_args.root=/data/...)"
        )
    return path


def is_inside(root: str | os.PathLike, path: str | os.PathLike) -> bool:
    """Whether ``path`` stays inside ``root`` once ``..`` is resolved (lexically: links inside ``root`` may point
    anywhere, since datasets are often trees of links, but a ``..`` or an absolute path in a CSV may not).

    Example:
        >>> is_inside("/data/x", "/data/x/a/../b.jpg"), is_inside("/data/x", "/data/x/../../etc/hostname")
        (True, False)
    """
    base = os.path.normpath(os.path.abspath(root))
    target = os.path.normpath(os.path.abspath(path))
    return target == base or target.startswith(base.rstrip(os.sep) + os.sep)


def check_inside(root: str | os.PathLike, path: str | os.PathLike, where: str) -> Path:
    """``path`` if it stays inside ``root``, else a :class:`DataFormatError` naming ``where`` it came from.

    Args:
        root: the dataset folder.
        path: a file path built from metadata (a CSV value joined to a folder).
        where: the row and value it came from, e.g. ``"train.csv, line 7, Path '../../etc/hostname'"``.

    Example:
        >>> check_inside("/data/x", "/data/x/../y.jpg", "t.csv, line 2, Path '../y.jpg'")
        Traceback (most recent call last):
        ...
        lit_xai.datamodules._io.DataFormatError: t.csv, line 2, Path '../y.jpg' resolves to '/data/y.jpg', outside ...
    """
    if not is_inside(root, path):
        resolved = os.path.normpath(os.path.abspath(path))
        raise DataFormatError(
            f"{where} resolves to {resolved!r}, outside the dataset folder {os.path.abspath(root)!r}; fix that row "
            "(image paths must stay inside data.init_args.root)"
        )
    return Path(path)


def _walk(root: Path) -> Iterable[tuple[str, list[str], list[str]]]:
    # sorted, so every index and search is deterministic whatever the file system's order
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        filenames.sort()
        yield dirpath, dirnames, filenames


def find_files(root: Path, names: Sequence[str]) -> list[Path]:
    """All files under ``root`` (recursively) whose name equals one of ``names``, case-insensitively."""
    wanted = {n.lower() for n in names}
    return [Path(d) / f for d, _, files in _walk(root) for f in files if f.lower() in wanted]


def find_dirs(root: Path, names: Sequence[str]) -> list[Path]:
    """All folders under ``root`` (including ``root``) whose name equals one of ``names``, case-insensitively."""
    wanted = {n.lower() for n in names}
    found = [root] if root.name.lower() in wanted else []
    return found + [Path(d) / s for d, subs, _ in _walk(root) for s in subs if s.lower() in wanted]


def index_images(root: Path, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> dict[str, Path]:
    """Lower-cased file stem -> path of every image under ``root``.

    Duplicates (HAM10000's Kaggle zip holds each part folder twice, in two spellings) resolve to the first path in
    sorted order, so the index is deterministic.
    """
    exts = tuple(e.lower() for e in extensions)
    index: dict[str, Path] = {}
    for d, _, files in _walk(Path(root)):
        for f in files:
            stem, ext = os.path.splitext(f)
            if ext.lower() in exts:
                index.setdefault(stem.lower(), Path(d) / f)
    return index


def natural_key(name: str) -> list[object]:
    """Sort key that orders ``Normal (2).png`` before ``Normal (10).png``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


class CsvTable:
    """Rows of a CSV file as dicts, with the file name and the 1-based line number of each row.

    Attributes:
        path: the file.
        columns: header names (stripped; a trailing empty column is dropped).
        rows: one dict per data row.
        lines: the file line number of each row (header is line 1).
    """

    def __init__(self, path: Path, columns: list[str], rows: list[dict[str, str]], lines: list[int]) -> None:
        self.path, self.columns, self.rows, self.lines = path, columns, rows, lines

    def __len__(self) -> int:
        return len(self.rows)

    def where(self, i: int) -> str:
        """``file, line n`` of row ``i``, for error messages."""
        return f"{self.path}, line {self.lines[i]}"

    def column(self, name: str) -> list[str]:
        """All values of column ``name`` (stripped strings; blank = ``""``)."""
        return [r.get(name, "") for r in self.rows]


def read_csv(path: Path, required: Sequence[str] = (), aliases: dict[str, Sequence[str]] | None = None) -> CsvTable:
    """Read a CSV by column names, checking that every ``required`` column is present.

    Args:
        path: the CSV file.
        required: columns that must exist; the error names the missing column and the file.
        aliases: alternative spellings, e.g. ``{"sex": ["gender"]}``; a found alias is renamed to the canonical name.

    Raises:
        DataFormatError: a required column is missing, or the file is empty.
    """
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise DataFormatError(f"{path} is empty; expected a header with columns {list(required)}") from None
        while header and not header[-1]:
            header.pop()  # NIH-style trailing comma
        for canonical, alts in (aliases or {}).items():
            if canonical not in header:
                for alt in alts:
                    if alt in header:
                        header[header.index(alt)] = canonical
                        break
        missing = [c for c in required if c not in header]
        if missing:
            raise DataFormatError(
                f"{path} has no column {missing[0]!r} (columns: {', '.join(header)}); expected the columns "
                f"{', '.join(required)}: is this the right file, unmodified?"
            )
        rows: list[dict[str, str]] = []
        lines: list[int] = []
        for values in reader:
            if not any(v.strip() for v in values):
                continue
            rows.append({h: (values[k].strip() if k < len(values) else "") for k, h in enumerate(header)})
            lines.append(reader.line_num)
    return CsvTable(Path(path), header, rows, lines)


def _to_uint8(im: Image.Image) -> np.ndarray:
    """Any Pillow mode -> uint8 ``(H, W, 3)``; 16-bit grayscale is scaled by its bit depth, not truncated."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(im).astype(np.float32)
        # 12-bit detector data stored in 16-bit PNGs is scaled by 4095, anything brighter by the full 16-bit range
        top = 65535.0 if a.max() > 4095 else 4095.0
        gray = np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if im.mode == "F":
        a = np.asarray(im)
        gray = np.clip(a * 255.0 + 0.5 if a.max() <= 1.0 else a, 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if im.mode in ("L", "LA", "1"):
        gray = np.asarray(im.convert("L"), dtype=np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def decode_image(path: str | os.PathLike, size_hint: int | None = None) -> np.ndarray:
    """Decode an image file to uint8 ``(H, W, 3)`` RGB, upright (EXIF orientation applied).

    Args:
        path: the image file.
        size_hint: the training side length. JPEGs are decoded at the smallest DCT scale (1/2, 1/4, 1/8) that keeps
            both sides >= ``2 * size_hint``, so a 6000 x 4000 photograph costs about as much as a 750 x 500 one.
            Larger images are then shrunk to at most ``4 * size_hint`` on the short side, so augmentation never
            runs on full-size originals. ``None`` decodes at full size.

    Raises:
        OSError: the file is missing, not an image, or truncated (the message names the file).
    """
    try:
        with Image.open(path) as im:
            if size_hint is not None and im.format == "JPEG":
                # draft() keeps the aspect ratio; ask for >= 2x the target on the *short* side
                w, h = im.size
                scale = 2 * size_hint / max(1, min(w, h))
                im.draft(im.mode, (max(1, int(w * scale)), max(1, int(h * scale))))
            im.load()
            im = ImageOps.exif_transpose(im)
            if size_hint is not None:
                limit = 4 * size_hint
                w, h = im.size
                if min(w, h) > limit:
                    r = limit / min(w, h)
                    size = (max(1, round(w * r)), max(1, round(h * r)))
                    im = im.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
            return _to_uint8(im)
    except FileNotFoundError:
        raise FileNotFoundError(f"image file {str(path)!r} is listed but missing") from None
    except Exception as err:  # PIL raises several types (UnidentifiedImageError, OSError, SyntaxError, ...)
        raise OSError(f"cannot read image file {str(path)!r}: {type(err).__name__}: {err}") from err


def decode_mask(path: str | os.PathLike, shape: tuple[int, int]) -> np.ndarray:
    """Read a segmentation mask (any mode, 1 or 3 channels) as bool ``shape`` = ``(H, W)`` of its image.

    Masks are often stored at another size (COVID-19 Radiography: 256 x 256 masks for 299 x 299 images); they are
    resized with nearest-neighbour sampling, which keeps them binary.
    """
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            gray = im.convert("L")
            if gray.size != (shape[1], shape[0]):
                gray = gray.resize((shape[1], shape[0]), Image.Resampling.NEAREST)
            return np.asarray(gray) > 127
    except FileNotFoundError:
        raise FileNotFoundError(f"mask file {str(path)!r} is missing") from None
    except Exception as err:
        raise OSError(f"cannot read mask file {str(path)!r}: {type(err).__name__}: {err}") from err


#: bytes read from the end of a JPEG to find its end-of-image marker (some writers pad a little after it)
_JPEG_TAIL = 4096


def check_image(path: str | os.PathLike, decode: bool = False) -> str | None:
    """Why the image file ``path`` cannot be read, or ``None`` if it looks whole.

    The quick check (default) reads the header and the end of the file: it finds missing and empty files, files that
    are not images, and truncated JPEGs (no end-of-image marker in the last 4 KiB) and PNGs (chunk checksums up to
    ``IEND``), the usual damage of an interrupted download or unzip, at thousands of files per second. Damage inside
    a JPEG's compressed data that leaves its end intact is only found by decoding: ``decode=True`` decodes JPEGs at
    1/8 scale (about 5x slower on small files, more on large ones; see ``benchmarks/bad_image_check.py``).

    Example:
        >>> import tempfile, pathlib
        >>> from PIL import Image
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> Image.linear_gradient("L").save(d / "ok.jpg")
        >>> data = (d / "ok.jpg").read_bytes()
        >>> _ = (d / "cut.jpg").write_bytes(data[: len(data) // 2])
        >>> check_image(d / "ok.jpg"), check_image(d / "cut.jpg")
        (None, 'truncated JPEG: no end-of-image marker')
    """
    try:
        with Image.open(path) as im:
            fmt = im.format
            if decode:
                if fmt == "JPEG":
                    im.draft(im.mode, (1, 1))  # smallest DCT scale: entropy decoding still reads every byte
                im.load()
                return None
            if fmt == "PNG":
                im.verify()  # walks the chunks to IEND checking CRCs; raises on a truncated file
                return None
        if fmt == "JPEG":
            with open(path, "rb") as fh:
                size = fh.seek(0, os.SEEK_END)
                fh.seek(max(0, size - _JPEG_TAIL))
                if b"\xff\xd9" not in fh.read():
                    return "truncated JPEG: no end-of-image marker"
        return None
    except FileNotFoundError:
        return "listed but missing"
    except Exception as err:  # PIL raises several types (UnidentifiedImageError, OSError, SyntaxError, ...)
        return f"{type(err).__name__}: {err}"
