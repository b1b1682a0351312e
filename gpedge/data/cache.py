"""On-disk cache of decoded slices, so that epochs read memory-mapped ``.npy`` files, not NIfTI.

Location: the ``cache_dir`` argument, else ``$GPEDGE_CACHE``, else
``$XDG_CACHE_HOME/gpedge`` (``~/.cache/gpedge``). Entries are keyed by the source files' names,
sizes and modification times, so a changed file is decoded again. Every file is written under a
temporary name and renamed; the JSON index is written last and marks a complete entry.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from gpedge.atomic import atomic_write, atomic_write_json
from gpedge.errors import DataError
from gpedge.paths import cache_root


def files_key(paths: Iterable[Path]) -> str:
    """A short hash of the files' names, sizes and modification times."""
    digest = hashlib.sha256()
    for path in paths:
        stat = path.stat()
        digest.update(f"{path.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def folder_for(root: Path, kind: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder of one data set: ``<cache>/<kind>/<hash of its absolute path>``."""
    tag = hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:16]
    return (Path(cache_dir) if cache_dir is not None else cache_root()) / kind / tag


class ArrayCache:
    """Named entries of ``.npy`` arrays plus a JSON index, in one folder.

    An entry ``name`` with key ``key`` is the files ``name.key.json`` and ``name.key.<array>.npy``.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, name: str, key: str, suffix: str) -> Path:
        return self.folder / f"{name}.{key}.{suffix}"

    def load_index(self, name: str, key: str) -> dict[str, Any] | None:
        """The JSON index of a complete entry, or None when absent or unreadable."""
        path = self._path(name, key, "json")
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def open_array(self, name: str, key: str, array: str) -> np.ndarray:
        """Memory-map one array of an entry read-only."""
        return np.load(self._path(name, key, f"{array}.npy"), mmap_mode="r")

    def store(self, name: str, key: str, arrays: dict[str, np.ndarray], index: dict[str, Any]) -> None:
        """Write an entry atomically and delete older entries of the same name."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            for array_name, array in arrays.items():
                self._write_npy(self._path(name, key, f"{array_name}.npy"), array)
            atomic_write_json(self._path(name, key, "json"), index)
        except OSError as exc:
            raise DataError(
                f"cannot write the slice cache in {self.folder} ({exc}); "
                "set GPEDGE_CACHE or pass cache_dir to a writable folder with free space"
            ) from exc
        for stale in self.folder.glob(f"{name}.*"):
            if not stale.name.startswith(f"{name}.{key}."):
                stale.unlink(missing_ok=True)

    @staticmethod
    def _write_npy(path: Path, array: np.ndarray) -> None:
        atomic_write(path, lambda fh: np.save(fh, np.ascontiguousarray(array)))
