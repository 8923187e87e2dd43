"""The audit's on-disk cache: what identifies a dataset (its files, its in-memory pixels, a few hashed items) and
the cache entries of :class:`~lit_xai.shortcuts.audit.AuditCounts`, written atomically."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .items import _split_item, sample_indices
from .report import AuditCounts

__all__ = ["dataset_files", "dataset_fingerprint", "dataset_identity", "default_cache_dir"]

_CACHE_VERSION = 1
_FINGERPRINT_ITEMS = 4


def default_cache_dir() -> Path:
    """Where audits are cached by default: ``$LIT_XAI_CACHE/audit``, else ``$XDG_CACHE_HOME/lit_xai/audit``, else
    ``~/.cache/lit_xai/audit`` (outside the run's log folder, so a new run over the same data hits it too)."""
    if os.environ.get("LIT_XAI_CACHE"):
        return Path(os.environ["LIT_XAI_CACHE"]) / "audit"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lit_xai" / "audit"


def dataset_files(dataset: Any) -> list[str] | None:
    """The image files of ``dataset`` in item order, where it exposes them: a ``lit_xai`` dataset's
    ``reader.paths``, ``paths`` / ``files`` attributes, torchvision's ``ImageFolder.samples``, through
    ``torch.utils.data.Subset``; ``None`` otherwise.

    Example:
        >>> from lit_xai.datamodules.base import FileImageReader
        >>> class Files:
        ...     reader = FileImageReader(["a.jpg", "b.jpg"])
        >>> dataset_files(Files())
        ['a.jpg', 'b.jpg']
    """
    inner, indices = getattr(dataset, "dataset", None), getattr(dataset, "indices", None)
    if inner is not None and indices is not None:  # torch.utils.data.Subset
        files = dataset_files(inner)
        return None if files is None else [files[int(i)] for i in indices]
    for owner, name in ((getattr(dataset, "reader", None), "paths"), (dataset, "paths"), (dataset, "files")):
        value = getattr(owner, name, None) if owner is not None else None
        if isinstance(value, (list, tuple)) and all(isinstance(v, (str, os.PathLike)) for v in value[:8]):
            return [str(v) for v in value]
    samples = getattr(dataset, "samples", None)
    if isinstance(samples, list) and samples and isinstance(samples[0], tuple):
        return [str(s[0]) for s in samples]
    return None


def dataset_identity(dataset: Any) -> str | None:
    """A trusted identity of a dataset that names no files, or ``None``: its own ``cache_identity`` string, else a
    hash of every pixel where its reader holds them in memory (``reader.images``, e.g. the generated synthetic
    splits: ~0.1 s per 50 MB), through ``torch.utils.data.Subset``.

    Example:
        >>> import numpy as np
        >>> from lit_xai.datamodules.base import ArrayImageReader
        >>> class Split:
        ...     def __init__(self, pixels):
        ...         self.reader = ArrayImageReader(pixels)
        >>> a, b = np.zeros((2, 4, 4, 3), np.uint8), np.ones((2, 4, 4, 3), np.uint8)
        >>> same, other = dataset_identity(Split(a.copy())), dataset_identity(Split(b))
        >>> dataset_identity(Split(a)) == same, dataset_identity(Split(a)) == other
        (True, False)
        >>> dataset_identity([1, 2]) is None
        True
    """
    inner, indices = getattr(dataset, "dataset", None), getattr(dataset, "indices", None)
    if inner is not None and indices is not None:  # torch.utils.data.Subset
        base = dataset_identity(inner)
        rows = np.ascontiguousarray(np.asarray(indices, dtype=np.int64)).tobytes()
        return None if base is None else f"{base}/subset-{_digest(rows)[:16]}"
    own = getattr(dataset, "cache_identity", None)
    if isinstance(own, str):
        return own
    reader = getattr(dataset, "reader", None)
    pixels = getattr(reader, "images", None)
    if isinstance(pixels, np.ndarray):
        h = hashlib.sha256(repr((pixels.shape, str(pixels.dtype))).encode())
        h.update(np.ascontiguousarray(pixels).data)
        masks = getattr(reader, "masks", None)
        if isinstance(masks, np.ndarray):
            h.update(np.ascontiguousarray(masks).data)
        return f"pixels-{h.hexdigest()}"
    return None


def dataset_fingerprint(
    dataset: Any,
    denormalize: Callable[[torch.Tensor], torch.Tensor] | None = None,
    seed: int = 0,
    num_items: int = _FINGERPRINT_ITEMS,
) -> dict[str, Any]:
    """What identifies a dataset's audit: its length; where it exposes its files (:func:`dataset_files`) a hash of
    every file's name, size and modification time (no decoding: ~1 s per 100k files) and of its ``targets``; and
    always a hash of ``num_items`` seeded items as the detectors see them (after ``denormalize``), which changes
    with the image size, the transform or the normalization. A dataset with random transforms never matches
    (safe: its audit is recomputed).

    Example:
        >>> import torch
        >>> data = [(torch.full((3, 4, 4), i / 10), i % 2) for i in range(10)]
        >>> same, fewer = dataset_fingerprint(list(data)), dataset_fingerprint(data[:9])
        >>> dataset_fingerprint(data) == same, dataset_fingerprint(data) == fewer
        (True, False)
    """
    n = len(dataset)
    out: dict[str, Any] = {"type": type(dataset).__name__, "length": n}
    files = dataset_files(dataset)
    if files is not None:
        h = hashlib.sha256()
        for path in files:
            try:
                st = os.stat(path)
                h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            except OSError as err:
                h.update(f"{path}\0{type(err).__name__}\n".encode())
        out["files"] = h.hexdigest()
    targets = getattr(dataset, "targets", None)
    if isinstance(targets, (np.ndarray, torch.Tensor, list)):
        out["targets"] = _digest(np.ascontiguousarray(np.asarray(targets, dtype=np.float64)).tobytes())
    h = hashlib.sha256()
    for i in sample_indices(n, min(num_items, n), seed + 1):
        try:
            image, target, flag = _split_item(dataset[i])
            x = torch.as_tensor(image).detach().float().cpu()
            x = denormalize(x[None] if x.ndim == 3 else x) if denormalize is not None else x
            h.update(np.ascontiguousarray(x.detach().float().cpu().numpy()).tobytes())
            h.update(repr((torch.as_tensor(target).tolist(), None if flag is None else bool(flag))).encode())
        except Exception as err:  # a failing item is part of the identity (it is counted as a failure)
            h.update(f"{i}:{type(err).__name__}".encode())
    out["items"] = h.hexdigest()
    return out


def _digest(data: str | bytes) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def _callable_name(fn: Any) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__name__)}"


def _read_cache(path: Path, key: dict[str, Any]) -> AuditCounts | None:
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # absent or torn: recompute
    if stored.get("key") != json.loads(json.dumps(key)):
        return None
    try:
        counts = AuditCounts.from_dict(stored["counts"])
    except (KeyError, TypeError):
        return None
    counts.from_cache = True
    return counts


def _write_cache(path: Path, key: dict[str, Any], counts: AuditCounts) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"key": key, "counts": counts.to_dict()}))
        os.replace(tmp, path)  # atomic: a concurrent reader sees the old entry or the new one, never half
    except OSError as err:  # a read-only cache must not stop training
        warnings.warn(f"could not write the audit cache {path}: {err}", stacklevel=3)
