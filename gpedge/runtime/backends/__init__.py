"""Inference backends behind one interface, and the ``auto`` choices.

``auto`` picks TensorRT when it is usable on this machine, then ONNX Runtime with the CUDA
execution provider, then ONNX Runtime on the CPU, and logs which one it picked. Precision ``auto``
is each backend's own choice: FP16 engines on TensorRT, FP32 on ONNX Runtime CUDA, and on the CPU
the package's INT8 graph where it has one (gated at export), else FP32. Backend
modules are imported lazily so that a missing optional dependency (TensorRT, torch) only
matters when that backend is asked for.
"""
from __future__ import annotations

import importlib
import logging

from gpedge.errors import BackendUnavailable
from gpedge.package import ModelPackage
from gpedge.runtime.backends.base import PRECISIONS, Backend

log = logging.getLogger(__name__)

#: Backend name -> "module:class" (imported on demand).
BACKENDS = {
    "onnxruntime": "gpedge.runtime.backends.onnxruntime:OnnxRuntimeBackend",
    "tensorrt": "gpedge.runtime.backends.tensorrt:TensorRTBackend",
    "torch": "gpedge.runtime.backends.torch:TorchBackend",
}

__all__ = ["BACKENDS", "PRECISIONS", "Backend", "BackendUnavailable", "create_backend"]


def _backend_class(name: str) -> type[Backend]:
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def create_backend(
    name: str, package: ModelPackage, device: str | int | None = None, threads: int | None = None, precision: str = "auto"
) -> Backend:
    """Open ``package`` on backend ``name`` (``auto`` or a key of ``BACKENDS``) at ``precision`` (one of
    :data:`PRECISIONS`); ``threads``: CPU threads of the ONNX Runtime and torch backends (default: the
    physical cores)."""
    if name == "auto":
        return _auto(package, device, threads, precision)
    if name not in BACKENDS:
        raise BackendUnavailable(f"unknown backend {name!r}; choose one of: auto, {', '.join(BACKENDS)}")
    backend = _open(name, package, device, threads, precision)
    log.info("backend: %s", backend.description)
    return backend


def _open(name: str, package: ModelPackage, device: str | int | None, threads: int | None, precision: str) -> Backend:
    cls = _backend_class(name)
    if name == "tensorrt":
        return cls(package, device, precision=precision)
    return cls(package, device, threads=threads, precision=precision)


def _auto(package: ModelPackage, device: str | int | None, threads: int | None, precision: str) -> Backend:
    from gpedge.runtime.backends.onnxruntime import cuda_provider_available

    wants_cpu = device is not None and str(device) == "cpu"
    if not wants_cpu and precision != "fp32":
        from gpedge.tensorrt.cuda import tensorrt_available

        if tensorrt_available():
            backend = _open("tensorrt", package, device, threads, precision)
            log.info("backend auto -> tensorrt: %s", backend.description)
            return backend
    ort_device = "cpu" if wants_cpu or not cuda_provider_available() else device
    backend = _open("onnxruntime", package, ort_device, threads, precision)
    log.info("backend auto -> onnxruntime: %s", backend.description)
    return backend
