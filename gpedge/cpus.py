"""The CPUs this process may run on: how many, how many physical cores, which model and instruction sets."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from functools import lru_cache

#: CPU flags worth recording beside a timing (vector widths, VNNI, AMX).
_SPEED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile")

#: Flags of bfloat16 arithmetic in hardware: x86 (AVX-512 BF16, AMX) and Arm (``Features: ... bf16``).
_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def usable_cpus() -> set[int]:
    """Logical CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))


def _cpuinfo() -> list[dict[str, str]]:
    """One dict per logical CPU from /proc/cpuinfo; empty where there is none."""
    try:
        with open("/proc/cpuinfo") as fh:
            blocks = fh.read().strip().split("\n\n")
    except OSError:
        return []
    return [{k.strip(): v.strip() for k, v in (line.split(":", 1) for line in block.splitlines() if ":" in line)}
            for block in blocks]


@lru_cache(maxsize=1)
def physical_cores() -> int:
    """Physical CPU cores this process may run on (hyper-threads counted once)."""
    allowed = usable_cpus()
    cores = {(cpu.get("physical id", "0"), cpu.get("core id", cpu.get("processor", "0")))
             for cpu in _cpuinfo() if int(cpu.get("processor", -1)) in allowed}
    return max(1, len(cores) or len(allowed))


def _first_cpu() -> dict[str, str]:
    """/proc/cpuinfo's block of the first logical CPU; empty where there is none."""
    info = _cpuinfo()
    return info[0] if info else {}


def _flags(cpu: dict[str, str]) -> set[str]:
    """Instruction-set flags of one /proc/cpuinfo block (x86 ``flags``, Arm ``Features``)."""
    return set((cpu.get("flags") or cpu.get("Features") or "").split())


def _sysctl(name: str) -> str:
    """A macOS ``sysctl`` value; empty where it cannot be read."""
    try:
        done = subprocess.run(["sysctl", "-n", name], check=False, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip()


def _torch_bf16_probe() -> bool:
    """x86 bfloat16 as PyTorch's CPU probes see it (CPUID, any OS); False where torch is not loaded or lacks them."""
    probes = getattr(sys.modules.get("torch"), "cpu", None)
    return any(bool(getattr(probes, name, lambda: False)())
               for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


@lru_cache(maxsize=1)
def native_bf16() -> bool:
    """Whether the CPU computes in bfloat16 natively (where emulated, bfloat16 is slower than float32).

    Linux: /proc/cpuinfo's flags; macOS: ``sysctl hw.optional.arm.FEAT_BF16`` (Apple M2 and later);
    elsewhere (Windows): PyTorch's CPUID probes, when the caller has imported torch.
    """
    first = _first_cpu()
    if first:
        return bool(_flags(first) & _BF16_FLAGS)
    if platform.system() == "Darwin":
        return _sysctl("hw.optional.arm.FEAT_BF16") == "1"
    return _torch_bf16_probe()


@lru_cache(maxsize=1)
def cpu_description() -> str:
    """E.g. ``"AMD EPYC (2 logical CPUs; avx2)"``, from /proc/cpuinfo (``platform`` elsewhere)."""
    first = _first_cpu()
    model = first.get("model name") or platform.processor() or platform.machine()
    flags = _flags(first)
    isa = ", ".join(flag for flag in _SPEED_FLAGS if flag in flags)
    return f"{model} ({len(usable_cpus())} logical CPUs{'; ' + isa if isa else ''})"
