"""The ``manifest.json`` of a model package (fields listed in docs/package-format.md)."""
from __future__ import annotations

from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from gpedge._version import __version__
from gpedge.graph.contract import INPUT, mask_rule, output_specs
from gpedge.package import SCHEMA_VERSION, sha256_file


def file_entry(path: Path, precision: str) -> dict[str, Any]:
    """``{sha256, bytes, precision}`` of a packaged file."""
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size, "precision": precision}


def library_versions(opset: int) -> dict[str, Any]:
    """Versions of the libraries that exported the package."""
    versions: dict[str, Any] = {}
    for name in ("torch", "onnx", "onnxruntime", "onnxscript", "tensorrt"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    versions["opset"] = opset
    return versions


def build_manifest(
    *,
    config: Any,
    model_config: dict[str, Any],
    num_params: int,
    height: int,
    width: int,
    max_batch: int,
    rule: str,
    offset: float,
    opset: int,
    files: dict[str, dict[str, Any]],
    engines: list[dict[str, Any]],
    engine_build: dict[str, Any],
    parity: dict[str, Any],
) -> dict[str, Any]:
    """Assemble the manifest of a package exported from run config ``config``."""
    return {
        "schema_version": SCHEMA_VERSION,
        "gpedge_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": {"arch": model_config["arch"], "options": dict(model_config["options"]), "num_params": num_params},
        "classes": list(config.class_names),
        "input": {
            "name": INPUT,
            "channels": list(config.channels),
            "height": height,
            "width": width,
            "dtype": "float32",
            "layout": "NCHW",
            "max_batch": max_batch,
        },
        "normalisation": {"type": config.normalisation},
        "outputs": output_specs(len(config.class_names), height, width),
        "mask_rule": mask_rule(rule, offset, config.no_tumour_class, height, width),
        "files": files,
        "engines": engines,
        "engine_build": engine_build,
        "exported_with": library_versions(opset),
        "parity": parity,
        "split": dict(config.split),
        "dataset": dict(config.dataset),
    }
