"""Model package format: a folder with ``manifest.json`` and the files it lists (no torch).

Written by ``gpedge export`` (see ``gpedge.export``), read by the runtime. Every file the
runtime loads is checked against the sha256 recorded in the manifest.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpedge.atomic import atomic_write_bytes  # noqa: F401  (gpedge.data.synthetic imports it from here)
from gpedge.errors import PackageError

#: 2: the mask offset is a true graph input (``mask_rule.inputs``); 1 had it as an overridable initializer.
SCHEMA_VERSION = 2
MANIFEST = "manifest.json"
#: The fused graphs a package may hold, by the precision of the network's compute.
GRAPHS = {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx"}


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class ModelPackage:
    """A model package folder whose manifest was read and checked (files are verified when opened).

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
        if isinstance(version, int) and version < SCHEMA_VERSION:
            raise PackageError(
                f"{path}: the package was written by an older gpedge (schema_version {version}; this gpedge reads "
                f"{SCHEMA_VERSION}); re-export it from its run folder with 'gpedge export'"
            )
        if version != SCHEMA_VERSION:
            raise PackageError(
                f"{path}: unknown schema_version {version!r} (this gpedge reads {SCHEMA_VERSION}); "
                "re-export the package with this gpedge version or upgrade gpedge"
            )
        for key in ("model", "classes", "input", "mask_rule", "files"):
            if key not in manifest:
                raise PackageError(f"{path}: required field '{key}' is missing; re-export the package")
        if not isinstance(manifest["mask_rule"], dict) or "offset" not in manifest["mask_rule"]:
            raise PackageError(f"{path}: 'mask_rule' has no 'offset'; re-export the package")
        return cls(root=root, manifest=manifest)

    def path(self, name: str) -> Path:
        """Path of a file the manifest lists, refused unless it lies inside the package folder."""
        if name not in self.manifest["files"]:
            raise PackageError(f"{self.root}: '{name}' is not listed in {MANIFEST}; re-export the package")
        path = self.root / name
        if Path(name).is_absolute() or not path.resolve().is_relative_to(self.root.resolve()):
            raise PackageError(
                f"{self.root / MANIFEST} lists {name!r}, which lies outside the package folder; "
                "the manifest is damaged or hostile, re-export the package"
            )
        if not path.is_file():
            raise PackageError(f"{path} is missing from the model package; re-export the package or restore the file")
        return path

    def file(self, name: str, verify: bool = True) -> Path:
        """Path of a packaged file, after checking that it lies inside the package, exists and matches its sha256."""
        path = self.path(name)
        if verify:
            self._check_sha256(name, sha256_file(path))
        return path

    def read_bytes(self, name: str) -> bytes:
        """The contents of a packaged file, checked against its sha256 (the very bytes returned)."""
        data = self.path(name).read_bytes()
        self._check_sha256(name, hashlib.sha256(data).hexdigest())
        return data

    def _check_sha256(self, name: str, digest: str) -> None:
        if digest != self.manifest["files"][name].get("sha256"):
            raise PackageError(
                f"{self.root / name} does not match the sha256 in {MANIFEST} (damaged or edited); "
                "restore it or re-export the package"
            )

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
