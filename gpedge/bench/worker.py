"""Benchmark child process: ``python -m gpedge.bench.worker JOB.json``.

Each backend is timed in a fresh interpreter so that thread pools of PyTorch and ONNX Runtime
never run side by side (idle pools spin after a call and slow the next backend down), and so
that the peak RSS belongs to one backend alone. The backend runs inside the runtime's
:class:`~gpedge.runtime.predictor.Predictor`, so every row times what ``gpedge infer`` does:
resizing to the model size, the graph, and mapping results to the input's resolution. The job
file says what to run; the child writes its rows (with its pid) to ``job["result"]`` and the
outputs on the accuracy slices to ``job["accuracy_out"]``.
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

from gpedge.atomic import atomic_write_json
from gpedge.graph.agreement import ACCURACY_OUTPUTS
from gpedge.bench.backends import DeviceMemory
from gpedge.bench.timing import STAGES, latency_summary, peak_rss_mb, stage_ms
from gpedge.errors import GpedgeError
from gpedge.package import ModelPackage
from gpedge.runtime.io import Scan


def time_backend(
    predictor: Any, memory: DeviceMemory, pool: np.ndarray, batches: Sequence[int], warmup: int, iters: int
) -> list[dict[str, Any]]:
    """Time ``predictor`` end to end, with its stage split, at each batch size."""
    rows = []
    backend = predictor.backend
    for batch in batches:
        scan = Scan(images=np.stack([pool[i % len(pool)] for i in range(batch)]))
        predictor.batch_size = batch
        memory.reset()
        for _ in range(warmup):
            predictor.predict_scans([scan])
        total, stages, device = [], {stage: [] for stage in STAGES}, []
        for _ in range(iters):
            start = time.perf_counter()
            results = predictor.predict_scans([scan])[0]
            total.append((time.perf_counter() - start) * 1e3)
            memory.sample()
            for stage, ms in stage_ms(results).items():
                stages[stage].append(ms)
            if getattr(backend, "last_device_ms", None) is not None:
                device.append(backend.last_device_ms)
        summary = latency_summary(total)
        rows.append(
            {
                "batch": batch,
                **summary,
                "throughput": batch * 1e3 / summary["p50_ms"],
                **{f"{stage}_ms": float(np.median(times)) for stage, times in stages.items()},
                "peak_mem_mb": peak_rss_mb(),
                "device_mem_mb": memory.peak_mb(),
                "device_ms": float(np.median(device)) if device else None,
            }
        )
    return rows


def accuracy_outputs(predictor: Any, slices: np.ndarray, batch: int) -> dict[str, np.ndarray]:
    """Label, probabilities and mask of every slice (:data:`ACCURACY_OUTPUTS`), ``batch`` at a time."""
    predictor.batch_size = batch
    results = predictor.predict_scans([Scan(images=slices)])[0]
    outputs = {
        "label": np.array([r.class_index for r in results], dtype=np.int32),
        "probs": np.array([[r.probabilities[c] for c in predictor.classes] for r in results], dtype=np.float32),
        "mask": np.stack([r.mask for r in results]).astype(np.uint8),
    }
    return {name: outputs[name] for name in ACCURACY_OUTPUTS}


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Run one benchmark job (see the module docstring) and return its result record."""
    from gpedge.bench.backends import open_backend
    from gpedge.runtime.predictor import Predictor

    package = ModelPackage.load(job["package"])
    backend, memory = open_backend(job["backend"], package, job["threads"], ort_optimization=job["ort_optimization"])
    common = {"backend": job["backend"], "pid": os.getpid(), "device": str(backend.device),
              "description": backend.description, "threads": job["threads"]}
    with Predictor(backend=backend) as predictor:
        if job["task"] == "volume":
            from gpedge.bench.volume import run_volume

            memory.reset()
            row = run_volume(predictor, job["scan"], job["mask_out"], job["batch"], job["warmup"], job["iters"])
            memory.sample()
            row.update(common, peak_mem_mb=peak_rss_mb(), device_mem_mb=memory.peak_mb())
            return {"pid": os.getpid(), "description": backend.description, "rows": [row]}
        rows = time_backend(predictor, memory, np.load(job["inputs"]), job["batches"], job["warmup"], job["iters"])
        if job.get("accuracy_inputs"):
            outputs = accuracy_outputs(predictor, np.load(job["accuracy_inputs"]), job["accuracy_batch"])
            np.savez(job["accuracy_out"], **outputs)
    return {"pid": os.getpid(), "description": backend.description, "rows": [{**common, **row} for row in rows]}


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
