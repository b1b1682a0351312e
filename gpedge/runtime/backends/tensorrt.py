"""TensorRT backend: a serialized engine per GPU and TensorRT version, run with cuda-python.

Engine choice, in order: an engine shipped in the package whose metadata matches this GPU and
TensorRT version; an engine in the local cache; otherwise one is built from
``model.fp16.onnx`` (with ``gpedge.export.tensorrt_build``) into the cache
``$GPEDGE_CACHE or ~/.cache/gpedge``/engines/<sha256 of the ONNX>/<gpu>-sm<cc>-trt<version>.engine
with a JSON metadata file beside it. Device buffers are allocated once per thread for the
largest batch and reused; each thread has its own execution context and CUDA stream.
"""
from __future__ import annotations

import json
import logging
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gpedge.errors import BackendUnavailable, PackageError
from gpedge.package import ModelPackage, atomic_write_json, sha256_file
from gpedge.paths import cache_root
from gpedge.runtime.backends.base import OUTPUT_NAMES, Backend

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "install TensorRT (pip install tensorrt from NVIDIA's index, an NGC container or JetPack) "
    "and cuda-python ('pip install gpedge[tensorrt]'), on a machine with an NVIDIA GPU"
)


def _import() -> tuple[Any, Any]:
    try:
        import tensorrt as trt
        from cuda.bindings import runtime as cudart
    except ImportError as exc:
        raise BackendUnavailable(f"tensorrt backend: {exc.name or exc} is not installed; {INSTALL_HINT}") from exc
    return trt, cudart


def cuda_check(result: tuple, what: str) -> Any:
    """Unpack a cuda.bindings call result, raising on a CUDA error."""
    _, cudart = _import()
    err, *rest = result
    if err != cudart.cudaError_t.cudaSuccess:
        _, msg = cudart.cudaGetErrorString(err)
        raise BackendUnavailable(f"tensorrt backend: CUDA error in {what}: {msg.decode(errors='replace')}")
    return rest[0] if len(rest) == 1 else (tuple(rest) or None)


@dataclass(frozen=True)
class GpuInfo:
    """The GPU an engine is meant for."""

    index: int
    name: str
    compute_capability: str


def engine_file_name(gpu_name: str, compute_capability: str, tensorrt_version: str) -> str:
    """``<gpu>-sm<cc>-trt<version>.engine``, e.g. ``nvidia-h100-80gb-hbm3-sm90-trt10.13.0.35.engine``."""
    slug = re.sub(r"[^a-z0-9]+", "-", gpu_name.lower()).strip("-")
    return f"{slug}-sm{compute_capability.replace('.', '')}-trt{tensorrt_version}.engine"


def gpu_info(index: int = 0) -> GpuInfo:
    """Name and compute capability of CUDA device ``index``."""
    _, cudart = _import()
    count = cuda_check(cudart.cudaGetDeviceCount(), "cudaGetDeviceCount")
    if count == 0 or index >= count:
        raise BackendUnavailable(f"tensorrt backend: no CUDA device {index} (found {count}); {INSTALL_HINT}")
    prop = cuda_check(cudart.cudaGetDeviceProperties(index), "cudaGetDeviceProperties")
    name = prop.name.decode(errors="replace") if isinstance(prop.name, bytes) else str(prop.name)
    return GpuInfo(index=index, name=name.strip("\x00 "), compute_capability=f"{prop.major}.{prop.minor}")


def tensorrt_available() -> bool:
    """Whether TensorRT, cuda-python and a CUDA device are present."""
    try:
        gpu_info(0)
    except BackendUnavailable:
        return False
    return True


def engine_mismatch(meta: dict[str, Any], gpu: GpuInfo, trt_version: str) -> str | None:
    """Why an engine described by ``meta`` cannot run here, or ``None`` when it can."""
    built_trt = str(meta.get("tensorrt_version", "?"))
    if built_trt != trt_version:
        same_major = built_trt.split(".")[0] == trt_version.split(".")[0]
        if not (meta.get("version_compatible") and same_major):
            return f"it was built with TensorRT {built_trt}, this machine has TensorRT {trt_version}"
    level = str(meta.get("hardware_compatibility", "NONE")).upper()
    built_cc = str(meta.get("compute_capability", "?"))
    if level == "AMPERE_PLUS":
        if float(gpu.compute_capability) < 8.0:
            return f"it needs an Ampere or newer GPU, this is {gpu.name} (sm {gpu.compute_capability})"
    elif built_cc != gpu.compute_capability or (level == "NONE" and meta.get("gpu_name") != gpu.name):
        return (
            f"it was built for {meta.get('gpu_name', '?')} (sm {built_cc}), "
            f"this GPU is {gpu.name} (sm {gpu.compute_capability})"
        )
    return None


@dataclass
class _ThreadState:
    """One thread's execution context, stream and buffers (device and host)."""

    context: Any
    stream: Any
    device: dict[str, int] = field(default_factory=dict)
    host: dict[str, np.ndarray] = field(default_factory=dict)


class TensorRTBackend(Backend):
    """Runs a TensorRT engine for this GPU; see the module docstring for how the engine is found."""

    name = "tensorrt"

    def __init__(self, package: ModelPackage, device: str | int | None = None) -> None:
        super().__init__(package)
        trt, cudart = _import()
        index = device if isinstance(device, int) else int(str(device).split(":")[1]) if device and ":" in str(device) else 0
        if device not in (None, "cuda") and not isinstance(device, int) and not str(device).startswith("cuda:"):
            raise BackendUnavailable(f"tensorrt backend: device must be 'cuda', 'cuda:N' or an int, not {device!r}")
        self.gpu = gpu_info(index)
        self.trt_version = trt.__version__
        cuda_check(cudart.cudaSetDevice(index), "cudaSetDevice")
        self._trt = trt
        self._logger = trt.Logger(trt.Logger.WARNING)
        self.engine_path, self.engine_meta = self._locate_engine()
        plan = self.engine_path.read_bytes()
        self._runtime = trt.Runtime(self._logger)
        if self.engine_meta.get("version_compatible"):
            self._runtime.engine_host_code_allowed = True
        self._engine = self._runtime.deserialize_cuda_engine(plan)
        if self._engine is None:
            raise PackageError(
                f"{self.engine_path} could not be deserialized by TensorRT {self.trt_version} on {self.gpu.name}; "
                "delete it and run again to rebuild it, or re-export the package with an engine for this GPU"
            )
        self._inputs = [n for n in self._tensor_names() if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.accepts_offset = "offset" in self._inputs
        if "image" not in self._inputs or not set(self._inputs) <= {"image", "offset"} or not set(
            OUTPUT_NAMES
        ) <= set(self._tensor_names()):
            raise PackageError(f"{self.engine_path}: engine I/O does not follow the gpedge contract; rebuild it")
        self.max_batch = min(self.max_batch, int(self._engine.get_tensor_profile_shape("image", 0)[2][0]))
        self._local = threading.local()
        self._states: list[_ThreadState] = []
        self._lock = threading.Lock()

    # -- engine selection -------------------------------------------------------------------
    def _locate_engine(self) -> tuple[Path, dict[str, Any]]:
        reasons = []
        for meta in self.package.manifest.get("engines", []):
            why = engine_mismatch(meta, self.gpu, self.trt_version)
            if why is None:
                return self._packaged_engine(meta), meta
            reasons.append(f"{meta.get('file')}: {why}")
        self._refused = "; ".join(reasons)
        if reasons:
            log.warning("tensorrt: refusing the packaged engine(s): %s; building one for this machine", self._refused)
        onnx = self.package.file("model.fp16.onnx")
        sha = self.package.manifest["files"]["model.fp16.onnx"]["sha256"]
        path = cache_root() / "engines" / sha[:16] / engine_file_name(self.gpu.name, self.gpu.compute_capability, self.trt_version)
        meta_path = path.with_suffix(".json")
        if path.is_file() and meta_path.is_file():
            meta = json.loads(meta_path.read_text())
            why = engine_mismatch(meta, self.gpu, self.trt_version)
            if why is not None:
                raise PackageError(f"cached engine {path} cannot run here: {why}; delete {path.parent} to rebuild it")
            return path, meta
        return path, self._build(onnx, path, meta_path)

    def _build(self, onnx: Path, path: Path, meta_path: Path) -> dict[str, Any]:
        try:
            from gpedge.export import tensorrt_build
        except ImportError as exc:
            raise BackendUnavailable(
                f"tensorrt backend: no engine for {self.gpu.name} with TensorRT {self.trt_version} and the engine "
                f"builder cannot be imported ({exc}); re-export the package on this machine"
                + (f" (packaged engines refused: {self._refused})" if self._refused else "")
            ) from exc
        height, width = self.package.image_size
        channels = len(self.package.channels)
        log.warning(
            "tensorrt: building an engine for %s (TensorRT %s) from %s; this takes a few minutes once, "
            "the engine is cached at %s", self.gpu.name, self.trt_version, onnx.name, path,
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = tensorrt_build.build_engine(
            onnx, path, (channels, height, width), self.max_batch, cache_dir=cache_root(), device=self.gpu.index
        )
        atomic_write_json(meta_path, meta)
        log.warning("tensorrt: engine built in %s s", meta.get("build_seconds", "?"))
        return meta

    def _packaged_engine(self, meta: dict[str, Any]) -> Path:
        """Path of an engine shipped in the package, checked against its sha256."""
        if self.package.has_file(meta["file"]):
            return self.package.file(meta["file"])
        path = self.package.root / meta["file"]
        if not path.is_file() or ("sha256" in meta and sha256_file(path) != meta["sha256"]):
            raise PackageError(
                f"{path} is missing or does not match the sha256 in manifest.json; restore it or re-export the package"
            )
        return path

    def _tensor_names(self) -> list[str]:
        return [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]

    # -- execution --------------------------------------------------------------------------
    def _state(self) -> _ThreadState:
        state = getattr(self._local, "state", None)
        if state is not None:
            return state
        _, cudart = _import()
        cuda_check(cudart.cudaSetDevice(self.gpu.index), "cudaSetDevice")
        context = self._engine.create_execution_context()
        if context is None:
            raise BackendUnavailable("tensorrt backend: could not create an execution context (GPU out of memory?)")
        state = _ThreadState(context=context, stream=cuda_check(cudart.cudaStreamCreate(), "cudaStreamCreate"))
        height, width = self.package.image_size
        context.set_input_shape("image", (self.max_batch, len(self.package.channels), height, width))
        if self.accepts_offset:
            context.set_input_shape("offset", (1,))
        for name in self._tensor_names():
            shape = tuple(context.get_tensor_shape(name))
            dtype = np.dtype(self._trt.nptype(self._engine.get_tensor_dtype(name)))
            state.host[name] = np.empty(shape, dtype=dtype)
            state.device[name] = cuda_check(cudart.cudaMalloc(max(1, state.host[name].nbytes)), "cudaMalloc")
            context.set_tensor_address(name, int(state.device[name]))
        with self._lock:
            self._states.append(state)
        self._local.state = state
        return state

    def run(self, batch: np.ndarray, offset: float | None = None) -> dict[str, np.ndarray]:
        _, cudart = _import()
        n = batch.shape[0]
        if not 1 <= n <= self.max_batch:
            raise ValueError(f"batch of {n} is outside the engine's range 1..{self.max_batch}")
        state = self._state()
        ctx, stream = state.context, state.stream
        host_in = state.host["image"][:n]
        host_in[...] = batch
        ctx.set_input_shape("image", batch.shape)
        h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        d2h = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        cuda_check(cudart.cudaMemcpyAsync(state.device["image"], host_in.ctypes.data, host_in.nbytes, h2d, stream), "copy in")
        if self.accepts_offset:
            host_offset = state.host["offset"]
            host_offset[...] = self.effective_offset(offset)
            cuda_check(
                cudart.cudaMemcpyAsync(state.device["offset"], host_offset.ctypes.data, host_offset.nbytes, h2d, stream),
                "copy offset",
            )
        if not ctx.execute_async_v3(int(stream)):
            raise BackendUnavailable(f"tensorrt backend: execution failed on {self.gpu.name} (see TensorRT's log)")
        outputs = {}
        for name in OUTPUT_NAMES:
            shape = tuple(ctx.get_tensor_shape(name))
            out = state.host[name].reshape(-1)[: int(np.prod(shape))].reshape(shape)
            cuda_check(cudart.cudaMemcpyAsync(out.ctypes.data, state.device[name], out.nbytes, d2h, stream), "copy out")
            outputs[name] = out
        cuda_check(cudart.cudaStreamSynchronize(stream), "cudaStreamSynchronize")
        return self.apply_host_offset({name: out.copy() for name, out in outputs.items()}, offset)

    @property
    def description(self) -> str:
        return f"TensorRT {self.trt_version} on {self.gpu.name} (sm {self.gpu.compute_capability}), engine {self.engine_path}"

    def close(self) -> None:
        _, cudart = _import()
        with self._lock:
            for state in self._states:
                for ptr in state.device.values():
                    cudart.cudaFree(ptr)
                cudart.cudaStreamDestroy(state.stream)
                state.device.clear()
                state.context = None
            self._states.clear()
        self._local = threading.local()
        self._engine = None
