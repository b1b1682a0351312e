"""Model package format: a folder with ``manifest.json`` and the files it lists (no torch).

Written by ``gpedge export`` (see ``gpedge.export``), read by the runtime. Every file the
runtime loads is checked against the sha256 recorded in the manifest.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from gpedge.errors import PackageError

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None], durable: bool = False) -> None:
    """Let ``write`` fill a temporary file in ``path``'s folder, then rename it to ``path``.

    The file gets the usual permissions (0666 less the umask), not mkstemp's private 0600;
    nothing is left behind if ``write`` fails. ``durable``: the file's data is flushed to disk
    before the rename and the rename itself afterwards (fsync of file and folder), so the file
    survives a power loss once this returns.
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


@dataclass
class ModelPackage:
    """A verified model package folder.

    ``manifest`` is the parsed ``manifest.json``; see docs/package-format.md for its fields.
    """

    root: Path
    manifest: dict[str, Any]

    @classmethod
    def load(cls, root: str | os.PathLike) -> "ModelPackage":
        """Read and validate the manifest of ``root`` (files are verified when opened)."""
        root = Path(root)
        path = root / MANIFEST
        if not root.is_dir():
            raise PackageError(f"model package {root} is not a folder; pass the folder written by 'gpedge export'")
        if not path.is_file():
            raise PackageError(f"{path} is missing: {root} is not a gpedge model package (re-run 'gpedge export')")
        try:
            manifest = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PackageError(f"{path} is not valid JSON ({exc}); re-export the package") from exc
        if not isinstance(manifest, dict):
            raise PackageError(f"{path} does not hold a JSON object; re-export the package")
        version = manifest.get("schema_version")
        if version != SCHEMA_VERSION:
            raise PackageError(
                f"{path}: unknown schema_version {version!r} (this gpedge reads {SCHEMA_VERSION}); "
                "re-export the package with this gpedge version or upgrade gpedge"
            )
        for key in ("model", "classes", "input", "mask_rule", "files"):
            if key not in manifest:
                raise PackageError(f"{path}: required field '{key}' is missing; re-export the package")
        return cls(root=root, manifest=manifest)

    def file(self, name: str, verify: bool = True) -> Path:
        """Path of a packaged file, after checking that it exists and matches its sha256."""
        entry = self.manifest["files"].get(name)
        if entry is None:
            raise PackageError(f"{self.root}: '{name}' is not listed in {MANIFEST}; re-export the package")
        path = self.root / name
        if not path.is_file():
            raise PackageError(f"{path} is missing from the model package; re-export the package or restore the file")
        if verify and sha256_file(path) != entry["sha256"]:
            raise PackageError(
                f"{path} does not match the sha256 in {MANIFEST} (damaged or edited); "
                "restore it or re-export the package"
            )
        return path

    def has_file(self, name: str) -> bool:
        """Whether the manifest lists ``name``."""
        return name in self.manifest["files"]

    @property
    def classes(self) -> list[str]:
        return list(self.manifest["classes"])

    @property
    def channels(self) -> list[str]:
        return list(self.manifest["input"]["channels"])

    @property
    def image_size(self) -> tuple[int, int]:
        inp = self.manifest["input"]
        return int(inp["height"]), int(inp["width"])

    @property
    def no_tumour_class(self) -> int | None:
        return self.manifest["mask_rule"].get("empty_for_class")

    @property
    def offset(self) -> float:
        """The mask-rule offset to use (``gpedge evaluate --offsets`` may change it after export)."""
        return float(self.manifest["mask_rule"]["offset"])

    @property
    def graph_offset(self) -> float | None:
        """The offset baked into the exported graphs and engines as their default (None if unrecorded)."""
        default = self.manifest["mask_rule"].get("offset_input", {}).get("default")
        return None if default is None else float(default)
