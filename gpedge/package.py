"""Model package format: a folder with ``manifest.json`` and the files it lists (no torch).

Written by ``gpedge export`` (see ``gpedge.export``), read by the runtime. Every file the
runtime loads is checked against the sha256 recorded in the manifest.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpedge.errors import GpedgeError, PackageError
from gpedge.graph.contract import parse_mask_rule

#: 3: named mask rules chosen by the graph inputs ``offset`` and ``mask_rule``, a ``score`` output;
#: 2: the paper's rule only, the offset a graph input; 1: the offset an overridable initializer.
SCHEMA_VERSION = 3
#: What each older schema lacks, for the message that asks to re-export.
_OLD_SCHEMAS = {
    1: "its mask offset is baked into the graph",
    2: "its graph has only the paper's mask rule (no 'mask_rule' input, no 'score' output)",
}
MANIFEST = "manifest.json"


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
                f"{SCHEMA_VERSION}): {_OLD_SCHEMAS.get(version, 'its graph contract has changed')}; "
                "re-export it from its run folder with 'gpedge export' (the mask offset an earlier "
                "'gpedge evaluate --offsets' chose is then set again with 'gpedge export --offset')"
            )
        if version != SCHEMA_VERSION:
            raise PackageError(
                f"{path}: unknown schema_version {version!r} (this gpedge reads {SCHEMA_VERSION}); "
                "re-export the package with this gpedge version or upgrade gpedge"
            )
        for key in ("model", "classes", "input", "mask_rule", "files"):
            if key not in manifest:
                raise PackageError(f"{path}: required field '{key}' is missing; re-export the package")
        rule = manifest["mask_rule"]
        if not isinstance(rule, dict) or "offset" not in rule or "rule" not in rule:
            raise PackageError(f"{path}: 'mask_rule' needs 'rule' and 'offset'; re-export the package")
        try:
            parse_mask_rule(rule["rule"])
            offset = float(rule["offset"])
        except (GpedgeError, TypeError, ValueError) as exc:
            raise PackageError(f"{path}: 'mask_rule' is invalid ({exc}); set it with 'gpedge evaluate' or re-export") from exc
        if not math.isfinite(offset):
            raise PackageError(f"{path}: 'mask_rule.offset' is {offset}; set a finite offset with 'gpedge evaluate' or re-export")
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
        """The mask rule's parameter to use (``gpedge evaluate --offsets`` may change it after export)."""
        return float(self.manifest["mask_rule"]["offset"])

    @property
    def mask_rule(self) -> str:
        """The mask rule's name (``gpedge evaluate --mask-rules`` may change it after export)."""
        return str(self.manifest["mask_rule"]["rule"])
