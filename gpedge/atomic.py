"""Atomic file writes: a file is either absent, its old version, or complete (no torch).

Every writer of gpedge (packages, run folders, weights, checkpoints, caches, reports) goes through
:func:`atomic_write`; the results of one scan are written as a set with :class:`OutputFiles`.
"""
from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from gpedge.errors import OutputError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_temp(path: Path, write: Callable[[BinaryIO], None], durable: bool) -> Path:
    """Fill a new temporary file beside ``path`` (usual permissions) and return its path; nothing is left on failure."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


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
    tmp = _write_temp(path, write, durable)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


class OutputFiles:
    """The output files of one input, written as a set: all of them or none.

    Each :meth:`write` fills a temporary file beside its target; :meth:`commit` renames them all
    into place; :meth:`discard` (or an exception inside ``with``) removes them, so a failed input
    leaves no partial set. ``overwrite``: whether an existing file not written in this call may be
    replaced (otherwise :class:`~gpedge.errors.OutputError`). ``committed``: paths committed
    earlier in the same call, shared by the inputs of one call and extended by :meth:`commit`;
    they are never replaced (:class:`FileCollision`, so that the caller can choose another name).
    Every ``OSError`` becomes an ``OutputError`` naming the file.
    """

    def __init__(self, overwrite: bool = False, committed: set[Path] | None = None) -> None:
        self.overwrite = overwrite
        self.committed = committed if committed is not None else set()
        self._pending: dict[Path, Path] = {}

    def write(self, path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
        """Stage ``path``, filled by ``write``; returns ``path``."""
        path = Path(path)
        key = path.absolute()
        if key in self.committed or key in self._pending:
            raise FileCollision(f"{path} is already an output of this call")
        try:
            if not self.overwrite and (path.exists() or path.is_symlink()):
                raise OutputError(
                    f"{path} already exists and was not written by this call; pass --overwrite (overwrite=True) "
                    "to replace it, or choose another output folder"
                )
            path.parent.mkdir(parents=True, exist_ok=True)
            self._pending[key] = _write_temp(path, write, durable=False)
        except OSError as exc:
            raise _output_error(path, exc) from exc
        return path

    def write_bytes(self, path: str | os.PathLike, data: bytes) -> Path:
        """Stage ``path`` with the contents ``data``."""
        return self.write(path, lambda fh: fh.write(data))

    def write_json(self, path: str | os.PathLike, obj: Any) -> Path:
        """Stage ``path`` holding ``obj`` as indented JSON."""
        return self.write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())

    def commit(self) -> None:
        """Rename every staged file into place (on failure, the ones already renamed are removed again)."""
        done: list[Path] = []
        try:
            for target, tmp in self._pending.items():
                os.replace(tmp, target)
                done.append(target)
        except OSError as exc:
            for target in done:
                target.unlink(missing_ok=True)
            self.discard()
            raise _output_error(target, exc) from exc
        self.committed.update(done)
        self._pending.clear()

    def discard(self) -> None:
        """Remove every staged file."""
        for tmp in self._pending.values():
            tmp.unlink(missing_ok=True)
        self._pending.clear()

    def __enter__(self) -> "OutputFiles":
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


class FileCollision(OutputError):
    """An output path that another input of the same call already wrote."""


def _output_error(path: Path, exc: OSError) -> OutputError:
    reason = exc.strerror or str(exc)
    hint = {
        errno.ENOSPC: "free some space or choose another output folder",
        errno.EDQUOT: "free some space or choose another output folder",
        errno.EACCES: "choose a folder you may write to",
        errno.EPERM: "choose a folder you may write to",
        errno.EROFS: "choose a folder on a writable file system",
        errno.ENOTDIR: "the output folder path runs through a file: choose another output folder",
        errno.EEXIST: "the output folder path is a file: choose another output folder",
        errno.ENAMETOOLONG: "choose a shorter output folder or input file name",
    }.get(exc.errno or 0, "check the output folder")
    return OutputError(f"{path}: cannot write ({reason}); {hint}. No output of this input was kept")


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
