"""Atomic file writes: a reader sees the old file or the new one, never a part.

Every file the app replaces while it may be read (labels and images, the datastore index,
weights and their versions, train stats, splits, reports, generated studies) is written to a
hidden temporary file in the destination folder and renamed over the destination with
``os.replace``; a failure (a full disk, a kill, Ctrl-C) removes the temporary file and leaves
the destination as it was. ``durable=True`` also fsyncs the file and its folder, so the new
content survives a power cut or a killed server; generated data skips it for speed.

Staging and committing are separate steps for callers that must write several files and
change nothing unless all were written (``lib.data.datastore.safe``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable


def stage(path, write: Callable[[BinaryIO], None], durable: bool = True) -> Path:
    """Run ``write(file)`` on a hidden temporary file next to ``path`` and return its path;
    nothing at ``path`` changes yet. On any failure the temporary file is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; data files are readable like any other
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def stage_bytes(path, data: bytes | None = None, durable: bool = True, src=None) -> Path:
    """``stage`` of ``data``, or of a copy of the file ``src``."""
    if src is None:
        return stage(path, lambda f: f.write(data), durable)

    def copy(f: BinaryIO) -> None:
        with open(src, "rb") as source:
            shutil.copyfileobj(source, f, 1 << 20)

    return stage(path, copy, durable)


def commit_staged(tmp, path, durable: bool = True) -> Path:
    """Rename a staged file over ``path`` (atomic), then ``fsync`` the folder so the rename lasts."""
    path = Path(path)
    try:
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return path


def write_atomic(path, write: Callable[[BinaryIO], None], durable: bool = False) -> Path:
    """``write(file)`` to ``path`` through ``stage`` and ``commit_staged``."""
    return commit_staged(stage(path, write, durable), path, durable)


def write_bytes_atomic(path, data: bytes, durable: bool = False) -> Path:
    """``data`` to ``path``, atomically (see the module doc)."""
    return commit_staged(stage_bytes(path, data, durable), path, durable)


def write_json_atomic(path, data, durable: bool = False, **dump_kwargs) -> Path:
    """``json.dumps(data)`` written with ``write_bytes_atomic`` (indented by default)."""
    return write_bytes_atomic(path, json.dumps(data, **{"indent": 2, **dump_kwargs}).encode(), durable)


def copy_atomic(src, dest, durable: bool = False) -> Path:
    """Copy ``src`` over ``dest`` so that ``dest`` is never partly written."""
    return commit_staged(stage_bytes(dest, src=src, durable=durable), dest, durable)
