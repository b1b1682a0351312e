"""Engine naming and the compatibility policy: which engine may run on which GPU and TensorRT."""
from __future__ import annotations

import re
from typing import Any

from gpedge.tensorrt.cuda import GpuInfo

HARDWARE_LEVELS = ("NONE", "AMPERE_PLUS", "SAME_COMPUTE_CAPABILITY")


def engine_file_name(gpu_name: str, compute_capability: str, tensorrt_version: str) -> str:
    """``<gpu>-sm<cc>-trt<version>.engine``, e.g. ``nvidia-h100-80gb-hbm3-sm90-trt10.13.0.35.engine``."""
    slug = re.sub(r"[^a-z0-9]+", "-", gpu_name.lower()).strip("-")
    return f"{slug}-sm{compute_capability.replace('.', '')}-trt{tensorrt_version}.engine"


def engine_mismatch(meta: dict[str, Any], gpu: GpuInfo, trt_version: str) -> str | None:
    """Why an engine described by ``meta`` cannot run here, or ``None`` when it can.

    The same TensorRT version is needed unless the engine is version compatible (then the same
    major version); the same GPU model unless a hardware compatibility level relaxes it.
    """
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
