"""The benchmarked backends: which can run here, and opening one (inside a benchmark child process).

Every backend is a :class:`gpedge.runtime.backends.Backend` whose ``run`` returns host arrays
with all device work finished, so a host clock around it is a true latency; the worker times it
inside the runtime's ``Predictor`` (see ``gpedge.bench.worker``).
"""
from __future__ import annotations

import importlib.util
from collections.abc import Sequence

from gpedge.errors import BackendUnavailable
from gpedge.package import ModelPackage
from gpedge.runtime.backends import Backend

#: Every backend the benchmark knows, in the order they run.
BACKENDS = ("torch", "torch-fp16", "onnxruntime", "onnxruntime-int8", "onnxruntime-cuda", "tensorrt", "tensorrt-int8")


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _cuda_reason() -> str | None:
    if not _has("torch"):
        return "needs PyTorch with CUDA (pip install 'gpedge[train]' with a CUDA build of torch) and an NVIDIA GPU"
    import torch

    if not torch.cuda.is_available():
        return f"needs an NVIDIA GPU visible to PyTorch (torch {torch.__version__}: torch.cuda.is_available() is False)"
    return None


def unavailable_reason(name: str) -> str | None:
    """Why backend ``name`` cannot run on this machine (with what to install), or None if it can."""
    if name not in BACKENDS:
        return f"unknown backend; choose from {', '.join(BACKENDS)}"
    if name in ("torch", "torch-fp16"):
        missing = [m for m in ("torch", "safetensors") if not _has(m)]
        if missing:
            return f"needs {' and '.join(missing)}: pip install 'gpedge[train]'"
        return _cuda_reason() if name == "torch-fp16" else None
    if not _has("onnxruntime"):
        return "needs onnxruntime: pip install onnxruntime"
    if name == "onnxruntime-cuda":
        import onnxruntime as ort

        if "CUDAExecutionProvider" not in ort.get_available_providers():
            return (
                f"onnxruntime {ort.__version__} has no CUDAExecutionProvider: "
                "pip install onnxruntime-gpu (matching your CUDA version) on a machine with an NVIDIA GPU"
            )
    if name.startswith("tensorrt"):
        from gpedge.tensorrt.cuda import INSTALL_HINT, tensorrt_available

        if not tensorrt_available():
            return f"needs TensorRT, cuda-python and an NVIDIA GPU: {INSTALL_HINT}"
    return None


def available_backends() -> list[str]:
    """The backends that can run here, in benchmark order."""
    return [name for name in BACKENDS if unavailable_reason(name) is None]


def check_backends(names: Sequence[str]) -> None:
    """Raise ``BackendUnavailable`` naming every requested backend that cannot run, and why."""
    problems = [f"{name}: {reason}" for name in names if (reason := unavailable_reason(name))]
    if problems:
        raise BackendUnavailable("cannot benchmark " + "; ".join(problems))


class DeviceMemory:
    """Peak device memory while timing; the CPU backends have none (host memory is the process's peak RSS)."""

    def reset(self) -> None:
        """Start a new measurement (before each batch size)."""

    def sample(self) -> None:
        """Record the memory in use now (after each timed call)."""

    def peak_mb(self) -> float | None:
        return None


class CudaUsedMemory(DeviceMemory):
    """Used memory of the current CUDA device (all processes: total - free, ``cudaMemGetInfo``), at its highest."""

    def __init__(self) -> None:
        self._peak = _cuda_used_mb()

    def reset(self) -> None:
        self._peak = _cuda_used_mb()

    def sample(self) -> None:
        self._peak = max(self._peak, _cuda_used_mb())

    def peak_mb(self) -> float | None:
        return self._peak


def _cuda_used_mb() -> float:
    from cuda.bindings import runtime as cudart

    err, free, total = cudart.cudaMemGetInfo()
    if err != cudart.cudaError_t.cudaSuccess:
        raise BackendUnavailable(f"tensorrt: cudaMemGetInfo failed ({err}); check the NVIDIA driver")
    return (total - free) / 2**20


def open_backend(name: str, package: ModelPackage, threads: int, ort_optimization: str = "all") -> tuple[Backend, DeviceMemory]:
    """The backend benchmarked as ``name`` on ``package``, and how its device memory is measured.

    ONNX Runtime and TensorRT are the runtime's own backends (the code ``gpedge infer`` runs) at the
    precision the name says (``-int8``: the package's INT8 graph; plain ONNX Runtime: FP32); only
    the PyTorch backends are the benchmark's (:mod:`gpedge.bench.torch_backends`).
    """
    check_backends([name])
    precision = "int8" if name.endswith("-int8") else None
    if name.startswith("onnxruntime"):
        from gpedge.runtime.backends.onnxruntime import OnnxRuntimeBackend

        device = "cuda" if name == "onnxruntime-cuda" else "cpu"
        backend = OnnxRuntimeBackend(package, device, threads=threads, optimization=ort_optimization, precision=precision or "fp32")
        return backend, DeviceMemory()
    if name.startswith("tensorrt"):
        from gpedge.runtime.backends.tensorrt import TensorRTBackend

        return TensorRTBackend(package, precision=precision or "fp16"), CudaUsedMemory()
    from gpedge.bench import torch_backends

    backend = torch_backends.TorchEager(package, threads) if name == "torch" else torch_backends.TorchFp16Graph(package, threads)
    return backend, torch_backends.TorchCudaMemory(backend.device)
