"""Benchmark child process: ``python -m gpedge.bench.worker JOB.json``.

Each backend is timed in a fresh interpreter so that thread pools of PyTorch and ONNX Runtime
never run side by side (idle pools spin after a call and slow the next backend down), and so
that the peak RSS belongs to one backend alone. The job file says what to run; the child
writes its rows (with its pid) to ``job["result"]`` and the outputs on the accuracy slices to
``job["accuracy_out"]``.
"""
from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gpedge.bench.accuracy import ACCURACY_OUTPUTS
from gpedge.bench.stages import postprocess, preprocess
from gpedge.bench.timing import latency_summary, peak_rss_mb
from gpedge.errors import GpedgeError
from gpedge.atomic import atomic_write_json
from gpedge.package import ModelPackage


def time_backend(
    adapter, pool: np.ndarray, size: tuple[int, int], batches: Sequence[int], warmup: int, iters: int
) -> list[dict[str, Any]]:
    """Time preprocess, inference and postprocess of ``adapter`` at each batch size."""
    rows = []
    for batch in batches:
        slices = [pool[i % len(pool)] for i in range(batch)]
        adapter.reset_peak_memory()
        for _ in range(warmup):
            postprocess(adapter.infer(preprocess(slices, size)))
        total, stages, device = [], {"preprocess": [], "inference": [], "postprocess": []}, []
        for _ in range(iters):
            t0 = time.perf_counter()
            inputs = preprocess(slices, size)
            t1 = time.perf_counter()
            outputs = adapter.infer(inputs)
            t2 = time.perf_counter()
            postprocess(outputs)
            t3 = time.perf_counter()
            total.append((t3 - t0) * 1e3)
            if adapter.last_device_ms is not None:
                device.append(adapter.last_device_ms)
            for stage, seconds in zip(stages, (t1 - t0, t2 - t1, t3 - t2)):
                stages[stage].append(seconds * 1e3)
        summary = latency_summary(total)
        rows.append(
            {
                "backend": adapter.name,
                "batch": batch,
                **summary,
                "throughput": batch * 1e3 / summary["p50_ms"],
                **{f"{stage}_ms": float(np.median(times)) for stage, times in stages.items()},
                "peak_mem_mb": peak_rss_mb(),
                "device_mem_mb": adapter.device_memory_mb(),
                "device_ms": float(np.median(device)) if device else None,
            }
        )
    return rows


def accuracy_outputs(adapter, slices: np.ndarray, size: tuple[int, int], batch: int) -> dict[str, np.ndarray]:
    """Outputs needed for the accuracy comparison over all ``slices``, run ``batch`` at a time."""
    parts = [
        adapter.infer(preprocess(slices[i : i + batch], size), outputs=ACCURACY_OUTPUTS)
        for i in range(0, len(slices), batch)
    ]
    return {name: np.concatenate([p[name] for p in parts]) for name in ACCURACY_OUTPUTS}


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Run one benchmark job (see the module docstring) and return its result record."""
    if job["task"] == "quantize":
        from gpedge.bench.quantize import quantize_int8

        path = quantize_int8(
            job["onnx"], np.load(job["calibration"]), job["cache_dir"],
            per_channel=job["per_channel"], quant_format=job["quant_format"],
        )
        return {"pid": os.getpid(), "int8_model": str(path)}

    from gpedge.bench.backends import open_adapter

    package = ModelPackage.load(job["package"])
    size = package.image_size
    int8 = Path(job["int8_model"]) if job.get("int8_model") else None
    adapter = open_adapter(
        job["backend"], package, job["threads"], int8_model=int8, ort_optimization=job["ort_optimization"]
    )
    if job["task"] == "volume":
        from gpedge.bench.volume import run_volume

        row = run_volume(adapter, package, job["scan"], job["mask_out"], job["batch"], job["warmup"], job["iters"])
        row.update(pid=os.getpid(), device=adapter.device, description=adapter.description, threads=job["threads"],
                   peak_mem_mb=peak_rss_mb(), device_mem_mb=adapter.device_memory_mb())
        return {"pid": os.getpid(), "description": adapter.description, "rows": [row]}
    rows = time_backend(adapter, np.load(job["inputs"]), size, job["batches"], job["warmup"], job["iters"])
    if job.get("accuracy_inputs"):
        outputs = accuracy_outputs(adapter, np.load(job["accuracy_inputs"]), size, job["accuracy_batch"])
        np.savez(job["accuracy_out"], **outputs)
    for row in rows:
        row.update(pid=os.getpid(), device=adapter.device, description=adapter.description, threads=job["threads"])
    return {"pid": os.getpid(), "description": adapter.description, "rows": rows}


def main(argv: Sequence[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m gpedge.bench.worker JOB.json", file=sys.stderr)
        return 2
    job = json.loads(Path(argv[0]).read_text())
    try:
        result = run_job(job)
    except GpedgeError as exc:
        atomic_write_json(job["result"], {"pid": os.getpid(), "error": str(exc)})
        return 2
    atomic_write_json(job["result"], result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
