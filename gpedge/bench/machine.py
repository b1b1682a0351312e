"""What machine a measurement ran on: the CPU model and the instruction sets that matter for speed."""
from __future__ import annotations

import os
import platform
from functools import lru_cache

#: CPU flags worth recording beside a timing (vector widths, VNNI, AMX).
_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile")


@lru_cache(maxsize=1)
def cpu_description() -> str:
    """E.g. ``"AMD EPYC (2 logical CPUs; avx2)"``, from /proc/cpuinfo (``platform`` elsewhere)."""
    model, flags = "", set()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and not model:
                    model = value.strip()
                elif key == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    model = model or platform.processor() or platform.machine()
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    isa = ", ".join(flag for flag in _FLAGS if flag in flags)
    return f"{model} ({count} logical CPUs{'; ' + isa if isa else ''})"
