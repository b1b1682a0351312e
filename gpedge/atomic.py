"""Atomic file writes: a file is either absent, its old version, or complete (no torch).

Every writer of gpedge (packages, run folders, weights, checkpoints, caches, reports, scan
outputs) goes through :func:`atomic_write`.
"""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None], durable: bool = False) -> None:
    """Let ``write`` fill a temporary file in ``path``'s folder, then rename it to ``path``.

    The temporary name is unique (concurrent writers never share it); the file gets the usual
    permissions (0666 less the umask), not mkstemp's private 0600; nothing is left behind if
    ``write`` fails. ``durable``: the file's data is flushed to disk before the rename and the
    rename itself afterwards (fsync of file and folder), so the file survives a power loss once
    this returns.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def fsync_dir(folder: str | os.PathLike) -> None:
    """Flush a folder's entries (creations, renames, removals) to disk."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, durable: bool = False) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda fh: fh.write(data), durable)


def atomic_write_json(path: str | os.PathLike, obj: Any, durable: bool = False) -> None:
    """Write ``obj`` as indented JSON, atomically (see :func:`atomic_write`)."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode(), durable)
