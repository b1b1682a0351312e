"""Build, inspect and run TensorRT engines of the FP16 fused graph (TensorRT 10.x and 11.x).

Needs only ``tensorrt``, ``cuda-python`` (``cuda.bindings``) and numpy, never torch, so the
runtime's TensorRT backend can build an engine on first use. Engines are built from the
strongly typed FP16 graph (TensorRT 11 has no FP16 builder flag: the precision is in the
graph), with one optimisation profile over the batch axis and a persistent timing cache.
After building, the engine's I/O dtypes and layer precisions are inspected: an engine that
came out all FP32 is refused.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from gpedge.errors import BackendUnavailable, GpedgeError
from gpedge.package import atomic_write_bytes, sha256_file
from gpedge.paths import cache_root
from gpedge.runtime.backends.tensorrt import cuda_check, gpu_info

INPUT = "image"
EXPECTED_IO = {"image": "FLOAT", "logits": "FLOAT", "probs": "FLOAT", "label": "INT32",
               "heatmaps": "FLOAT", "threshold": "FLOAT", "mask": "UINT8"}
HARDWARE_LEVELS = ("NONE", "AMPERE_PLUS", "SAME_COMPUTE_CAPABILITY")
INSTALL_HINT = (
    "install TensorRT 10.8+ (pip install tensorrt from NVIDIA's index, an NGC container or JetPack) and "
    "cuda-python (pip install 'gpedge[tensorrt]') on a machine with an NVIDIA GPU"
)


def unavailable_reason() -> str | None:
    """Why no engine can be built here (missing TensorRT, cuda-python or GPU), or ``None``."""
    try:
        import tensorrt  # noqa: F401
        from cuda.bindings import runtime as cudart
    except ImportError as exc:
        return f"{exc.name or exc} is not installed"
    err, count = cudart.cudaGetDeviceCount()
    if err != cudart.cudaError_t.cudaSuccess or count == 0:
        return "no CUDA GPU is visible"
    return None


def build_command(onnx_path: str | os.PathLike, input_shape: tuple[int, int, int], max_batch: int, engine_path: str) -> str:
    """A ``trtexec`` command line building the same engine on a target machine."""
    c, h, w = input_shape
    opt = min(8, max_batch)
    return (
        f"trtexec --onnx={onnx_path} --stronglyTyped --minShapes={INPUT}:1x{c}x{h}x{w} "
        f"--optShapes={INPUT}:{opt}x{c}x{h}x{w} --maxShapes={INPUT}:{max_batch}x{c}x{h}x{w} --saveEngine={engine_path}"
    )


def build_engine(
    onnx_path: str | os.PathLike,
    engine_path: str | os.PathLike,
    input_shape: tuple[int, int, int],
    max_batch: int,
    *,
    opt_batch: int | None = None,
    workspace_gb: float = 4.0,
    version_compatible: bool = False,
    hardware_compatibility: str = "NONE",
    cache_dir: str | os.PathLike | None = None,
    device: int = 0,
) -> dict[str, Any]:
    """Build a strongly typed engine from the FP16 graph ``onnx_path`` and write it to ``engine_path``.

    ``input_shape`` is (C, H, W); the profile covers batch 1..``max_batch`` (opt
    ``min(8, max_batch)`` unless given). The timing cache ``timing.cache`` in ``cache_dir``
    (default ``$GPEDGE_CACHE`` or ``~/.cache/gpedge``) is loaded and updated. Returns the engine
    metadata recorded in the package manifest (file name, sha256, TensorRT version, GPU,
    compatibility, profile, I/O dtypes, layer precisions, build time).
    """
    reason = unavailable_reason()
    if reason:
        raise BackendUnavailable(f"cannot build a TensorRT engine: {reason}; {INSTALL_HINT}")
    import tensorrt as trt

    level = hardware_compatibility.upper()
    if level not in HARDWARE_LEVELS:
        raise GpedgeError(f"hardware compatibility {hardware_compatibility!r} is not one of {', '.join(HARDWARE_LEVELS)}")
    from cuda.bindings import runtime as cudart

    cuda_check(cudart.cudaSetDevice(device), "cudaSetDevice")
    opt = min(8, max_batch) if opt_batch is None else opt_batch
    if not 1 <= opt <= max_batch:
        raise GpedgeError(f"opt batch {opt} must lie in 1..max_batch ({max_batch})")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise GpedgeError(f"TensorRT {trt.__version__} cannot parse {onnx_path}: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    if hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # the mask rule's FP32 MatMuls need full FP32 precision
    if version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    if level != "NONE":
        config.hardware_compatibility_level = getattr(trt.HardwareCompatibilityLevel, level)
    c, h, w = input_shape
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT, (1, c, h, w), (opt, c, h, w), (max_batch, c, h, w))
    config.add_optimization_profile(profile)

    cache_path = Path(cache_dir or cache_root()) / "timing.cache"
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=True)

    started = time.perf_counter()
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise GpedgeError(
            f"TensorRT {trt.__version__} failed to build an engine from {onnx_path} (see its log above); "
            f"try a larger --workspace or a smaller --max-batch"
        )
    seconds = time.perf_counter() - started
    atomic_write_bytes(cache_path, bytes(config.get_timing_cache().serialize()))

    engine = _deserialize(trt, logger, bytes(plan), version_compatible)
    report = inspect_engine(engine)
    _check_precision(report, onnx_path)
    atomic_write_bytes(engine_path, bytes(plan))
    gpu = gpu_info(device)
    return {
        "file": Path(engine_path).name,
        "sha256": sha256_file(engine_path),
        "bytes": Path(engine_path).stat().st_size,
        "tensorrt_version": trt.__version__,
        "gpu_name": gpu.name,
        "compute_capability": gpu.compute_capability,
        "hardware_compatibility": level,
        "version_compatible": bool(version_compatible),
        "profile": {"min": 1, "opt": opt, "max": max_batch},
        "workspace_gb": workspace_gb,
        "built_from": Path(onnx_path).name,
        "build_seconds": round(seconds, 1),
        **report,
    }


def inspect_engine(engine: Any) -> dict[str, Any]:
    """I/O tensor dtypes and layer output precisions of a deserialized engine.

    ``{"io": {name: {"mode", "dtype"}}, "layer_precisions": {"FP16": n, "FP32": m, ...}}``.
    """
    import tensorrt as trt

    io = {}
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        mode = "input" if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else "output"
        io[name] = {"mode": mode, "dtype": engine.get_tensor_dtype(name).name}
    info = json.loads(engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON))
    precisions: dict[str, int] = {}
    for layer in info.get("Layers", []):
        outputs = layer.get("Outputs", []) if isinstance(layer, dict) else []
        for tensor in outputs[:1]:
            precision = _precision(str(tensor.get("Format/Datatype", "")))
            precisions[precision] = precisions.get(precision, 0) + 1
    return {"io": io, "layer_precisions": precisions}


def run_engine(engine_path: str | os.PathLike, image: np.ndarray, version_compatible: bool = False, device: int = 0) -> dict[str, np.ndarray]:
    """Run an engine once on a float32 (N, C, H, W) batch with cuda-python buffers; all outputs by name."""
    import tensorrt as trt
    from cuda.bindings import runtime as cudart

    cuda_check(cudart.cudaSetDevice(device), "cudaSetDevice")
    logger = trt.Logger(trt.Logger.WARNING)
    engine = _deserialize(trt, logger, Path(engine_path).read_bytes(), version_compatible)
    context = engine.create_execution_context()
    stream = cuda_check(cudart.cudaStreamCreate(), "cudaStreamCreate")
    image = np.ascontiguousarray(image, dtype=np.float32)
    context.set_input_shape(INPUT, image.shape)
    buffers: dict[str, int] = {}
    host: dict[str, np.ndarray] = {}
    try:
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            shape = tuple(context.get_tensor_shape(name))
            host[name] = image if name == INPUT else np.empty(shape, dtype=trt.nptype(engine.get_tensor_dtype(name)))
            buffers[name] = cuda_check(cudart.cudaMalloc(max(1, host[name].nbytes)), "cudaMalloc")
            context.set_tensor_address(name, int(buffers[name]))
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        cuda_check(cudart.cudaMemcpyAsync(buffers[INPUT], image.ctypes.data, image.nbytes, h2d, stream), "copy in")
        if not context.execute_async_v3(int(stream)):
            raise GpedgeError(f"TensorRT execution of {engine_path} failed (see its log)")
        for name, array in host.items():
            if name != INPUT:
                cuda_check(cudart.cudaMemcpyAsync(array.ctypes.data, buffers[name], array.nbytes, d2h, stream), "copy out")
        cuda_check(cudart.cudaStreamSynchronize(stream), "cudaStreamSynchronize")
    finally:
        for pointer in buffers.values():
            cudart.cudaFree(pointer)
        cudart.cudaStreamDestroy(stream)
    return {name: array for name, array in host.items() if name != INPUT}


def _network_flags(trt: Any) -> int:
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if flag is None:
        raise BackendUnavailable(f"TensorRT {trt.__version__} has no strongly typed networks; {INSTALL_HINT}")
    return 1 << int(flag)


def _deserialize(trt: Any, logger: Any, plan: bytes, version_compatible: bool) -> Any:
    runtime = trt.Runtime(logger)
    if version_compatible:
        runtime.engine_host_code_allowed = True
    engine = runtime.deserialize_cuda_engine(plan)
    if engine is None:
        raise GpedgeError(f"TensorRT {trt.__version__} cannot deserialize the engine (built for another GPU or version?)")
    return engine


def _check_precision(report: dict[str, Any], onnx_path: str | os.PathLike) -> None:
    io = {name: entry["dtype"] for name, entry in report["io"].items()}
    wrong = {name: io.get(name) for name, dtype in EXPECTED_IO.items() if io.get(name) != dtype}
    if wrong:
        raise GpedgeError(f"engine built from {onnx_path} has unexpected I/O dtypes {wrong} (expected {EXPECTED_IO})")
    if not report["layer_precisions"].get("FP16"):
        raise GpedgeError(
            f"engine built from {onnx_path} has no FP16 layers ({report['layer_precisions']}): it would run in FP32; "
            "build it from model.fp16.onnx"
        )


#: (substring, precision) in match order; the inspector writes "Half" without an execution
#: context and e.g. "Row major linear FP16 format" with one.
_PRECISION_WORDS = (("bfloat16", "BF16"), ("bf16", "BF16"), ("half", "FP16"), ("fp16", "FP16"),
                    ("fp32", "FP32"), ("float", "FP32"), ("uint8", "UINT8"), ("int8", "INT8"),
                    ("int32", "INT32"), ("int64", "INT64"), ("bool", "BOOL"), ("fp8", "FP8"))


def _precision(datatype: str) -> str:
    text = datatype.lower()
    for word, name in _PRECISION_WORDS:
        if word in text:
            return name
    return datatype.split(" ")[0] or "unknown"
