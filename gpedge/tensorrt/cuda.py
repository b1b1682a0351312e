"""TensorRT and cuda-python imports, CUDA call checking and the GPU an engine is for."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gpedge.errors import BackendUnavailable

INSTALL_HINT = (
    "install TensorRT 10.8+ (pip install tensorrt from NVIDIA's index, an NGC container or JetPack) "
    "and cuda-python ('pip install gpedge[tensorrt]'), on a machine with an NVIDIA GPU"
)


def import_tensorrt() -> tuple[Any, Any]:
    """``(tensorrt, cuda.bindings.runtime)``, or ``BackendUnavailable`` saying what to install."""
    try:
        import tensorrt as trt
        from cuda.bindings import runtime as cudart
    except ImportError as exc:
        raise BackendUnavailable(f"tensorrt: {exc.name or exc} is not installed; {INSTALL_HINT}") from exc
    return trt, cudart


def cuda_check(result: tuple, what: str) -> Any:
    """Unpack a cuda.bindings call result ``(error, *values)``, raising on a CUDA error."""
    _, cudart = import_tensorrt()
    err, *rest = result
    if err != cudart.cudaError_t.cudaSuccess:
        _, msg = cudart.cudaGetErrorString(err)
        raise BackendUnavailable(f"tensorrt: CUDA error in {what}: {msg.decode(errors='replace')}")
    return rest[0] if len(rest) == 1 else (tuple(rest) or None)


@dataclass(frozen=True)
class GpuInfo:
    """The GPU an engine is meant for."""

    index: int
    name: str
    compute_capability: str


def gpu_info(index: int = 0) -> GpuInfo:
    """Name and compute capability of CUDA device ``index``."""
    _, cudart = import_tensorrt()
    count = cuda_check(cudart.cudaGetDeviceCount(), "cudaGetDeviceCount")
    if count == 0 or index >= count:
        raise BackendUnavailable(f"tensorrt: no CUDA device {index} (found {count}); {INSTALL_HINT}")
    prop = cuda_check(cudart.cudaGetDeviceProperties(index), "cudaGetDeviceProperties")
    name = prop.name.decode(errors="replace") if isinstance(prop.name, bytes) else str(prop.name)
    return GpuInfo(index=index, name=name.strip("\x00 "), compute_capability=f"{prop.major}.{prop.minor}")


def unavailable_reason() -> str | None:
    """Why TensorRT cannot run here (missing TensorRT, cuda-python or GPU), or ``None``."""
    try:
        import tensorrt  # noqa: F401
        from cuda.bindings import runtime as cudart
    except ImportError as exc:
        return f"{exc.name or exc} is not installed"
    err, count = cudart.cudaGetDeviceCount()
    if err != cudart.cudaError_t.cudaSuccess or count == 0:
        return "no CUDA GPU is visible"
    return None


def tensorrt_available() -> bool:
    """Whether TensorRT, cuda-python and a CUDA device are present."""
    return unavailable_reason() is None
