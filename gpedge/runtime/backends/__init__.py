"""Inference backends behind one interface, and the ``auto`` choice.

``auto`` picks TensorRT when it is usable on this machine, then ONNX Runtime with the CUDA
execution provider, then ONNX Runtime on the CPU, and logs which one it picked. Backend
modules are imported lazily so that a missing optional dependency (TensorRT, torch) only
matters when that backend is asked for.
"""
from __future__ import annotations

import importlib
import logging

from gpedge.errors import BackendUnavailable
from gpedge.package import ModelPackage
from gpedge.runtime.backends.base import Backend

log = logging.getLogger(__name__)

#: Backend name -> "module:class" (imported on demand).
BACKENDS = {
    "onnxruntime": "gpedge.runtime.backends.onnxruntime:OnnxRuntimeBackend",
    "tensorrt": "gpedge.runtime.backends.tensorrt:TensorRTBackend",
    "torch": "gpedge.runtime.backends.torch:TorchBackend",
}

__all__ = ["BACKENDS", "Backend", "BackendUnavailable", "create_backend"]


def _backend_class(name: str) -> type[Backend]:
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def create_backend(
    name: str, package: ModelPackage, device: str | int | None = None, threads: int | None = None
) -> Backend:
    """Open ``package`` on backend ``name`` (``auto`` or a key of ``BACKENDS``); ``threads``: CPU threads
    of the ONNX Runtime and torch backends (default: the physical cores)."""
    if name == "auto":
        return _auto(package, device, threads)
    if name not in BACKENDS:
        raise BackendUnavailable(f"unknown backend {name!r}; choose one of: auto, {', '.join(BACKENDS)}")
    backend = _open(name, package, device, threads)
    log.info("backend: %s", backend.description)
    return backend


def _open(name: str, package: ModelPackage, device: str | int | None, threads: int | None) -> Backend:
    cls = _backend_class(name)
    return cls(package, device) if name == "tensorrt" else cls(package, device, threads=threads)


def _auto(package: ModelPackage, device: str | int | None, threads: int | None) -> Backend:
    from gpedge.runtime.backends.onnxruntime import cuda_provider_available

    wants_cpu = device is not None and str(device) == "cpu"
    if not wants_cpu:
        from gpedge.tensorrt.cuda import tensorrt_available

        if tensorrt_available():
            backend = _open("tensorrt", package, device, threads)
            log.info("backend auto -> tensorrt: %s", backend.description)
            return backend
    ort_device = "cpu" if wants_cpu or not cuda_provider_available() else device
    backend = _open("onnxruntime", package, ort_device, threads)
    log.info("backend auto -> onnxruntime: %s", backend.description)
    return backend
