"""Loaders: an engine for a model package on this GPU, found, verified, or built once and cached.

An engine runs one package graph: ``model.fp16.onnx`` (precision ``fp16``) or the Q/DQ graph
``model.int8.onnx`` (``int8``, TensorRT's explicit quantization). Engine choice, in order:

1. an engine listed in the package manifest, built from that graph, whose metadata matches this GPU
   and TensorRT version (:func:`~gpedge.tensorrt.engines.engine_mismatch`). Its path must lie inside the
   package and be listed in ``files`` with a sha256, which is checked on the very bytes that are
   deserialised; only then may a version-compatible engine run its embedded host code;
2. an engine in the local cache ``$GPEDGE_CACHE or ~/.cache/gpedge``/engines/<sha256 of the
   graph>/<gpu>-sm<cc>-trt<version>.engine, checked against the sha256 in the JSON metadata beside it;
3. otherwise one is built from the graph into that cache (a few minutes, once).
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from gpedge.atomic import atomic_write_json
from gpedge.errors import GpedgeError, PackageError
from gpedge.package import GRAPHS, ModelPackage
from gpedge.paths import cache_root
from gpedge.tensorrt.cuda import GpuInfo, import_tensorrt
from gpedge.tensorrt.engines import engine_file_name, engine_mismatch

log = logging.getLogger(__name__)

def deserialize(plan: bytes, *, version_compatible: bool, source: str) -> Any:
    """Deserialise a verified plan; host code is allowed only for version-compatible engines."""
    trt, _ = import_tensorrt()
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    if version_compatible:
        runtime.engine_host_code_allowed = True
    engine = runtime.deserialize_cuda_engine(plan)
    if engine is None:
        raise PackageError(
            f"{source} could not be deserialized by TensorRT {trt.__version__} (built for another GPU or version?); "
            "re-export the package or delete the cached engine to rebuild it"
        )
    return engine


def package_engine(
    package: ModelPackage, gpu: GpuInfo, max_batch: int, precision: str = "fp16"
) -> tuple[Any, Path, dict[str, Any]]:
    """``(engine, path, metadata)`` of the ``precision`` engine this machine runs ``package`` with (see the module docstring)."""
    trt, _ = import_tensorrt()
    graph = GRAPHS[precision]
    reasons = []
    for meta in package.manifest.get("engines", []):
        if meta.get("built_from", GRAPHS["fp16"]) != graph:
            continue
        why = engine_mismatch(meta, gpu, trt.__version__)
        if why is None:
            path, plan = _packaged_plan(package, str(meta.get("file", "")))
            return deserialize(plan, version_compatible=bool(meta.get("version_compatible")), source=str(path)), path, meta
        reasons.append(f"{meta.get('file')}: {why}")
    if reasons:
        log.warning("tensorrt: refusing the packaged engine(s): %s; using one built for this machine", "; ".join(reasons))
    sha = package.manifest["files"].get(graph, {}).get("sha256")
    if sha is None:
        how = "--int8" if precision == "int8" else "--fp16"
        raise PackageError(f"{package.root} has no {graph} to build a TensorRT {precision} engine from; re-export it with {how}")
    path = cache_root() / "engines" / sha[:16] / engine_file_name(gpu.name, gpu.compute_capability, trt.__version__)
    cached = _cached_plan(path, gpu, trt.__version__)
    if cached is None:
        meta = _build(package, precision, path, gpu, max_batch)
        plan = path.read_bytes()
    else:
        meta, plan = cached
    return deserialize(plan, version_compatible=False, source=str(path)), path, meta


def _packaged_plan(package: ModelPackage, name: str) -> tuple[Path, bytes]:
    """The bytes of a packaged engine, after the containment and sha256 checks."""
    if not package.has_file(name):
        raise PackageError(
            f"{package.root / 'manifest.json'}: engine {name!r} is not listed with a sha256 in 'files'; "
            "the package is damaged or edited, re-export it"
        )
    return package.path(name), package.read_bytes(name)


def _cached_plan(path: Path, gpu: GpuInfo, trt_version: str) -> tuple[dict[str, Any], bytes] | None:
    """Metadata and bytes of a cached engine that matches its recorded sha256 and this machine, else None."""
    meta_path = path.with_suffix(".json")
    if not (path.is_file() and meta_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return None
    plan = path.read_bytes()
    if hashlib.sha256(plan).hexdigest() != meta.get("sha256"):
        log.warning("tensorrt: cached engine %s does not match its recorded sha256; rebuilding it", path)
        return None
    why = engine_mismatch(meta, gpu, trt_version)
    if why is not None:
        raise GpedgeError(f"cached engine {path} cannot run here: {why}; delete {path.parent} to rebuild it")
    return meta, plan


def _build(package: ModelPackage, precision: str, path: Path, gpu: GpuInfo, max_batch: int) -> dict[str, Any]:
    from gpedge.tensorrt.builder import build_engine

    onnx = package.file(GRAPHS[precision])
    height, width = package.image_size
    log.warning(
        "tensorrt: building an engine for %s from %s; this takes a few minutes once, the engine is cached at %s",
        gpu.name, onnx.name, path,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = build_engine(onnx, path, (len(package.channels), height, width), max_batch, cache_dir=cache_root(),
                        device=gpu.index, precision=precision)
    atomic_write_json(path.with_suffix(".json"), meta)
    log.warning("tensorrt: engine built in %s s", meta.get("build_seconds", "?"))
    return meta
