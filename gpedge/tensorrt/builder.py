"""Build an engine from a fused graph (TensorRT 10.x and 11.x; no torch, no onnx).

Every network is strongly typed (TensorRT 11 has no FP16 or INT8 builder flags: the precision is in
the graph): the FP16 graph gives an FP16 engine, the package's Q/DQ graph an explicitly quantized
INT8 one (symmetric signed INT8, as TensorRT requires). One optimisation profile covers every graph input (the image
over the batch axis, the mask-rule inputs at their fixed shapes) and a persistent timing cache. After
building, the engine's I/O dtypes and layer precisions are inspected (:mod:`.inspection`).
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from gpedge.atomic import atomic_write_bytes
from gpedge.errors import BackendUnavailable, GpedgeError
from gpedge.graph.contract import BATCH, INPUT, input_specs
from gpedge.package import sha256_file
from gpedge.paths import cache_root
from gpedge.tensorrt.cuda import INSTALL_HINT, cuda_check, gpu_info, unavailable_reason
from gpedge.tensorrt.engines import HARDWARE_LEVELS
from gpedge.tensorrt.inspection import check_engine, inspect_engine
from gpedge.tensorrt.loader import deserialize


def profile_shapes(input_shape: tuple[int, int, int], opt: int, max_batch: int) -> dict[str, tuple[tuple[int, ...], ...]]:
    """``{input name: (min, opt, max)}`` of the optimisation profile; ``input_shape`` is (C, H, W)."""
    c, h, w = input_shape
    fixed = {name: (tuple(spec["shape"]),) * 3 for name, spec in input_specs(c, h, w).items() if BATCH not in spec["shape"]}
    return {INPUT: ((1, c, h, w), (opt, c, h, w), (max_batch, c, h, w)), **fixed}


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
    precision: str = "fp16",
) -> dict[str, Any]:
    """Build a strongly typed engine from the ``precision`` graph ``onnx_path`` (``fp16``: ``model.fp16.onnx``,
    ``int8``: the Q/DQ ``model.int8.onnx``) and write it to ``engine_path``.

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
    from cuda.bindings import runtime as cudart

    level = hardware_compatibility.upper()
    if level not in HARDWARE_LEVELS:
        raise GpedgeError(f"hardware compatibility {hardware_compatibility!r} is not one of {', '.join(HARDWARE_LEVELS)}")
    opt = min(8, max_batch) if opt_batch is None else opt_batch
    if not 1 <= opt <= max_batch:
        raise GpedgeError(f"opt batch {opt} must lie in 1..max_batch ({max_batch})")
    cuda_check(cudart.cudaSetDevice(device), "cudaSetDevice")
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
    shapes = profile_shapes(input_shape, opt, max_batch)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        name = network.get_input(i).name
        if name not in shapes:
            raise GpedgeError(f"{onnx_path} has an input {name!r} outside the gpedge graph contract {list(shapes)}; re-export it")
        profile.set_shape(name, *shapes[name])
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

    engine = deserialize(bytes(plan), version_compatible=version_compatible, source=str(onnx_path))
    context = engine.create_execution_context()
    for name, (_, opt_shape, _) in shapes.items():
        context.set_input_shape(name, opt_shape)
    report = inspect_engine(engine, context)
    check_engine(report, onnx_path, precision.upper())
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
        "precision": precision,
        "build_seconds": round(seconds, 1),
        **report,
    }


def _network_flags(trt: Any) -> int:
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if flag is None:
        raise BackendUnavailable(f"TensorRT {trt.__version__} has no strongly typed networks; {INSTALL_HINT}")
    return 1 << int(flag)
