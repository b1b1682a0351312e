"""Model package format: a folder with ``manifest.json`` and the files it lists (no torch).

Written by ``gpedge export`` (see ``gpedge.export``), read by the runtime. Every file the
runtime loads is checked against the sha256 recorded in the manifest.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Sequence
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
_ASSETS = Path(__file__).resolve().parent / "assets"
#: Model packages shipped with gpedge, by name (``--model NAME``, ``Predictor(model=NAME)``):
#: ``default``: GP-UNet on one FLAIR slice, what ``gpedge infer`` runs when no model is given;
#: ``gp-unet-t1ce``: GP-UNet on one T1CE slice (the default model before FLAIR);
#: ``gp-unet-synth``: GP-UNet on T1, T2, T1CE and FLAIR, the network :mod:`gpedge.pretrained` ships
#: as training weights under the same name (model cards: the README).
BUNDLED: dict[str, Path] = {
    "default": _ASSETS / "default_model",
    "gp-unet-t1ce": _ASSETS / "models" / "gp-unet-t1ce",
    "gp-unet-synth": _ASSETS / "models" / "gp-unet-synth",
}
#: The fused graphs a package may hold, by the precision of the network's compute.
GRAPHS = {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx"}


_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _is_int(value: Any, low: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _names(value: Any, least: int) -> bool:
    return (isinstance(value, list) and len(value) >= least and len(set(map(str, value))) == len(value)
            and all(isinstance(v, str) and v for v in value))


def manifest_problems(manifest: dict[str, Any]) -> list[str]:
    """What is wrong with a manifest's fields (types, ranges, consistency); empty when it is valid.

    The typed schema of docs/package-format.md: fields the runtime reads must be present and of
    the right type; optional fields are checked when present.
    """
    problems: list[str] = []

    def need(ok: bool, field: str, what: str) -> bool:
        if not ok:
            problems.append(f"'{field}' {what}")
        return ok

    for key, kind in (("model", dict), ("classes", list), ("input", dict), ("mask_rule", dict), ("files", dict)):
        if key not in manifest:
            problems.append(f"required field '{key}' is missing")
        elif not isinstance(manifest[key], kind):
            problems.append(f"'{key}' must be a JSON {'object' if kind is dict else 'array'}, got {type(manifest[key]).__name__}")
    if problems:
        return problems
    need(isinstance(manifest["model"].get("arch"), str), "model.arch", "must be a string")
    classes = manifest["classes"]
    need(_names(classes, 2), "classes", f"must list at least two distinct class names, got {classes!r}")
    inp = manifest["input"]
    need(_names(inp.get("channels"), 1), "input.channels", f"must list the channel names, got {inp.get('channels')!r}")
    for key in ("height", "width", "max_batch"):
        need(_is_int(inp.get(key), 1), f"input.{key}", f"must be a whole number >= 1, got {inp.get(key)!r}")
    for key, expected in (("name", "image"), ("dtype", "float32"), ("layout", "NCHW")):
        if key in inp:
            need(inp[key] == expected, f"input.{key}", f"must be {expected!r}, got {inp[key]!r}")
    rule = manifest["mask_rule"]
    need(rule.get("method", "multiotsu") == "multiotsu", "mask_rule.method",
         f"is {rule.get('method')!r}, which this gpedge does not know (it knows 'multiotsu'); upgrade gpedge")
    need(_is_number(rule.get("offset")), "mask_rule.offset", f"must be a finite number, got {rule.get('offset')!r}")
    if need(isinstance(rule.get("rule"), str), "mask_rule.rule", f"must be a mask rule's name, got {rule.get('rule')!r}"):
        try:
            parse_mask_rule(rule["rule"])
        except GpedgeError as exc:
            need(False, "mask_rule.rule", f"is not a rule this gpedge knows ({exc})")
    empty = rule.get("empty_for_class")
    need(empty is None or (_is_int(empty) and isinstance(classes, list) and empty < len(classes)),
         "mask_rule.empty_for_class", f"must be null or a class index below {len(classes)}, got {empty!r}")
    for name, entry in manifest["files"].items():
        inside = not (Path(name).is_absolute() or ".." in Path(name).parts)
        need(inside, f"files.{name}", "must be a path inside the package")
        if need(isinstance(entry, dict), f"files.{name}", f"must be an object with 'sha256', got {entry!r}"):
            need(isinstance(entry.get("sha256"), str) and bool(_SHA256.match(entry["sha256"])), f"files.{name}.sha256",
                 f"must be 64 lower-case hex digits, got {entry.get('sha256')!r}")
    need(isinstance(manifest.get("engines", []), list), "engines", "must be a JSON array")
    bias = manifest.get("class_bias")
    if bias is not None and need(isinstance(bias, dict), "class_bias", "must be an object with 'values', or null"):
        values = bias.get("values")
        need(isinstance(values, list) and len(values) == len(classes) and all(map(_is_number, values)),
             "class_bias.values", f"must be {len(classes)} finite numbers (one per class), got {values!r}")
    stats = manifest.get("input_statistics")
    if stats is not None and need(isinstance(stats, dict), "input_statistics", "must be an object or null"):
        features = stats.get("features")
        need(_names(features, 1), "input_statistics.features", "must list the statistics' names")
        shape = (len(inp.get("channels") or []), len(features) if isinstance(features, list) else 0)
        need(stats.get("channels") == inp.get("channels"), "input_statistics.channels", "must equal input.channels")
        for key in ("low", "high"):
            value = stats.get(key)
            ok = (isinstance(value, list) and len(value) == shape[0]
                  and all(isinstance(row, list) and len(row) == shape[1] and all(map(_is_number, row)) for row in value))
            need(ok, f"input_statistics.{key}", f"must be {shape[0]} x {shape[1]} finite numbers")
    return problems


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def bundled_package(name: str) -> Path:
    """The folder of the bundled package ``name`` (:data:`BUNDLED`); a clear error when it is not installed."""
    if name not in BUNDLED:
        raise PackageError(f"no bundled model is called {name!r}; use one of {', '.join(BUNDLED)} or a package folder")
    folder = BUNDLED[name]
    if not (folder / MANIFEST).is_file():
        raise PackageError(
            f"the bundled {name} model ({folder}) is missing; reinstall gpedge, or pass a package folder written by "
            "'gpedge export' (Predictor(model=PATH) or --model PATH)"
        )
    return folder


def adopted_class_bias(record: dict[str, Any] | None) -> list[float] | None:
    """The class bias a manifest's ``class_bias`` record puts in the graph, one value per class; None when there is
    no record or its values are all 0 (the export chose none)."""
    return None if record is None or not any(record["values"]) else [float(v) for v in record["values"]]


def class_bias_text(classes: Sequence[str], values: Sequence[float] | None) -> str:
    """A class bias as people read it: ``Healthy +0, LGG +0, HGG -2`` (``none`` without one)."""
    return ", ".join(f"{name} {float(value):+g}" for name, value in zip(classes, values or ())) or "none"


@dataclass
class ModelPackage:
    """A model package folder whose manifest was read and checked (files are verified when opened).

    ``manifest`` is the parsed ``manifest.json``; see docs/package-format.md for its fields.
    """

    root: Path
    manifest: dict[str, Any]

    @classmethod
    def load(cls, root: str | os.PathLike) -> "ModelPackage":
        """Read and validate the manifest of the package folder ``root``, or of the bundled package of
        that name (:data:`BUNDLED`; a folder of the same name is then given as ``./NAME``). Files are
        verified when opened."""
        root = bundled_package(str(root)) if str(root) in BUNDLED else Path(root)
        path = root / MANIFEST
        if not root.is_dir():
            raise PackageError(f"model package {root} is not a folder; pass the folder written by 'gpedge export' "
                               f"or a bundled model's name ({', '.join(BUNDLED)})")
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
        problems = manifest_problems(manifest)
        if problems:
            raise PackageError(f"{path}: {'; '.join(problems[:5])}; re-export the package (see docs/package-format.md)")
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
    def flip_average(self) -> bool:
        """Whether the graph averages each slice with its left-right mirror image (absent in older packages: no)."""
        return bool(self.manifest.get("flip_average", False))

    @property
    def class_bias(self) -> list[float] | None:
        """The graph's class bias (:class:`gpedge.graph.bias.ClassBias`), one value per class; None when it has none
        (:func:`adopted_class_bias`)."""
        return adopted_class_bias(self.manifest.get("class_bias"))

    @property
    def no_tumour_class(self) -> int | None:
        return self.manifest["mask_rule"].get("empty_for_class")

    @property
    def offset(self) -> float:
        """The mask rule's parameter to use (``gpedge evaluate --offsets`` may change it after export)."""
        return float(self.manifest["mask_rule"]["offset"])

    def offset_for(self, rule: str) -> float:
        """The parameter of mask rule ``rule`` when none is given: :attr:`offset` when ``rule`` thresholds as
        :attr:`mask_rule` does (both absolute or both relative), else that rule's default."""
        wanted = parse_mask_rule(rule)
        return self.offset if parse_mask_rule(self.mask_rule).threshold == wanted.threshold else wanted.default_offset

    @property
    def mask_rule(self) -> str:
        """The mask rule's name (``gpedge evaluate --mask-rules`` may change it after export)."""
        return str(self.manifest["mask_rule"]["rule"])
