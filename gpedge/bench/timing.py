"""Timing statistics and process memory for the benchmark (numpy and the standard library only)."""
from __future__ import annotations

import resource
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

#: Stages of ``Result.speed`` a benchmark row splits the latency into.
STAGES = ("preprocess", "inference", "postprocess")


def latency_summary(samples_ms: Sequence[float]) -> dict[str, float]:
    """Median, 90th and 99th percentile and mean of per-call latencies in milliseconds."""
    arr = np.asarray(samples_ms, dtype=np.float64)
    if arr.size == 0:
        raise ValueError("no timing samples: run at least one timed iteration")
    p50, p90, p99 = np.percentile(arr, [50, 90, 99])
    return {"p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99), "mean_ms": float(arr.mean())}


def stage_ms(results: Sequence[Any]) -> dict[str, float]:
    """Milliseconds per stage over one call's results (``Result.speed`` holds milliseconds per image)."""
    return {stage: sum(r.speed[stage] for r in results) for stage in STAGES}


def peak_rss_mb() -> float:
    """Peak resident set size of this process's own address space, in MiB.

    On Linux this is ``VmHWM`` from ``/proc/self/status``: ``getrusage``'s ``ru_maxrss`` carries the
    parent's peak across fork + exec, so every benchmark child would report at least the parent's size.
    Elsewhere ``getrusage`` is the best available figure.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kibibytes, macOS bytes.
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024
