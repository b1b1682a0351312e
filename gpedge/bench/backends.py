"""Timing adapters: one per benchmarked backend, each running the fused model of a package.

An adapter's ``infer`` takes a float32 (N, C, H, W) host batch and returns host numpy outputs
by name, with all device work finished (so a host clock around it is a true latency).
Adapters are created only inside a benchmark child process (see ``gpedge.bench.worker``).
"""
from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gpedge.errors import BackendUnavailable
from gpedge.package import ModelPackage
from gpedge.graph.contract import OUTPUTS as OUTPUT_NAMES

#: Every backend the benchmark knows, in the order they run.
BACKENDS = ("torch", "torch-fp16", "onnxruntime", "onnxruntime-int8", "onnxruntime-cuda", "tensorrt")


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
    if name == "onnxruntime-int8" and not _has("onnx"):
        return "needs onnx for static INT8 quantization: pip install 'gpedge[export]'"
    if name == "onnxruntime-cuda":
        import onnxruntime as ort

        if "CUDAExecutionProvider" not in ort.get_available_providers():
            return (
                f"onnxruntime {ort.__version__} has no CUDAExecutionProvider: "
                "pip install onnxruntime-gpu (matching your CUDA version) on a machine with an NVIDIA GPU"
            )
    if name == "tensorrt":
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


class OrtAdapter:
    """ONNX Runtime session on one ONNX file (FP32 or INT8 QDQ), CPU or CUDA provider."""

    #: Device time of the last call (only the PyTorch CUDA adapters measure it, with CUDA events).
    last_device_ms: float | None = None

    def __init__(
        self, name: str, onnx_path: Path, threads: int, cuda: bool = False, optimization: str = "all",
        offset: float | None = None,
    ) -> None:
        import onnxruntime as ort

        levels = {
            "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,  # adds the NCHWc layout transforms on x86
        }
        if optimization not in levels:
            raise ValueError(f"optimization must be one of {', '.join(levels)}, got {optimization!r}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = levels[optimization]
        options.log_severity_level = 3  # errors only: the exporter's overridable 'offset' input draws a warning
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda else ["CPUExecutionProvider"]
        self.name = name
        self.device = "cuda" if cuda else "cpu"
        self._session = ort.InferenceSession(str(onnx_path), sess_options=options, providers=providers)
        overridable = [*self._session.get_inputs(), *self._session.get_overridable_initializers()]
        has_offset = any(i.name == "offset" for i in overridable)
        self._extra_feed = {"offset": np.array([offset], dtype=np.float32)} if has_offset and offset is not None else {}
        active = self._session.get_providers()
        if cuda and "CUDAExecutionProvider" not in active:
            raise BackendUnavailable(
                f"{name}: the CUDA execution provider failed to initialise (see onnxruntime's log; usually a "
                "CUDA/cuDNN library mismatch); fix the CUDA install or benchmark 'onnxruntime' on the CPU"
            )
        threads_note = f", {threads} threads" if not cuda else ""
        self.description = (
            f"onnxruntime {ort.__version__} {Path(onnx_path).name} ({active[0]}{threads_note}, optimization {optimization})"
        )

    def infer(self, batch: np.ndarray, outputs: Sequence[str] = OUTPUT_NAMES) -> dict[str, np.ndarray]:
        values = self._session.run(list(outputs), {"image": batch, **self._extra_feed})
        return dict(zip(outputs, values))

    def device_memory_mb(self) -> float | None:
        return None

    def reset_peak_memory(self) -> None:
        """Nothing to reset: host memory is measured by the process peak RSS."""


class TensorRTAdapter:
    """The runtime's TensorRT backend (FP16 engine from ``model.fp16.onnx``, built once and cached)."""

    name = "tensorrt"
    device = "cuda"
    last_device_ms: float | None = None

    def __init__(self, package: ModelPackage) -> None:
        from gpedge.runtime.backends import create_backend

        self._backend = create_backend("tensorrt", package)
        self.description = self._backend.description
        self._peak = _cuda_used_mb()

    def infer(self, batch: np.ndarray, outputs: Sequence[str] = OUTPUT_NAMES) -> dict[str, np.ndarray]:
        result = self._backend.run(batch, self._backend.package.offset)
        self._peak = max(self._peak, _cuda_used_mb())
        return {name: result[name] for name in outputs}

    def device_memory_mb(self) -> float | None:
        """Device memory in use on the GPU (all processes) at its highest while timing."""
        return self._peak

    def reset_peak_memory(self) -> None:
        self._peak = _cuda_used_mb()


def _cuda_used_mb() -> float:
    """Used memory of the current CUDA device (total - free, cudaMemGetInfo), in MiB."""
    from cuda.bindings import runtime as cudart

    err, free, total = cudart.cudaMemGetInfo()
    if err != cudart.cudaError_t.cudaSuccess:
        raise BackendUnavailable(f"tensorrt: cudaMemGetInfo failed ({err}); check the NVIDIA driver")
    return (total - free) / 2**20


def open_adapter(
    name: str, package: ModelPackage, threads: int, int8_model: Path | None = None, ort_optimization: str = "all"
):
    """Create the timing adapter for backend ``name`` on ``package``."""
    check_backends([name])
    if name == "onnxruntime":
        return OrtAdapter(name, package.file("model.onnx"), threads, optimization=ort_optimization, offset=package.offset)
    if name == "onnxruntime-cuda":
        return OrtAdapter(
            name, package.file("model.onnx"), threads, cuda=True, optimization=ort_optimization, offset=package.offset
        )
    if name == "onnxruntime-int8":
        if int8_model is None:
            raise ValueError("onnxruntime-int8 needs the quantized model path (see gpedge.bench.quantize)")
        return OrtAdapter(name, int8_model, threads, optimization=ort_optimization, offset=package.offset)
    if name == "tensorrt":
        return TensorRTAdapter(package)
    from gpedge.bench import torch_backends

    if name == "torch":
        return torch_backends.TorchEagerAdapter(package, threads)
    return torch_backends.TorchFp16GraphAdapter(package, threads)
