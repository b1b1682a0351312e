"""Benchmark orchestration: every backend timed in its own child process, accuracy vs FP32.

The parent never runs a model itself: it prepares the inputs (realistic synthetic slices in
scanner units), runs one ``gpedge.bench.worker`` child per backend with the thread count fixed
through the environment, and compares each backend's results with ONNX Runtime FP32 on the same
slices. The INT8 backends run the package's own ``model.int8.onnx`` (``gpedge export --int8``).
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gpedge.graph.agreement import compare
from gpedge.bench.backends import available_backends, check_backends
from gpedge.cpus import cpu_description, physical_cores, usable_cpus
from gpedge.errors import GpedgeError
from gpedge.package import GRAPHS, ModelPackage
from gpedge.runtime.backends.onnxruntime import OPTIMIZATIONS

log = logging.getLogger(__name__)

REFERENCE_BACKEND = "onnxruntime"
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass
class BenchSettings:
    """What to benchmark and how long (defaults: every available backend, batches 1, 8, 32)."""

    backends: list[str] | None = None
    batches: list[int] = field(default_factory=lambda: [1, 8, 32])
    warmup: int = 5
    iters: int = 20
    threads: int | None = None
    accuracy_slices: int = 16
    cache_dir: Path | None = None
    seed: int = 0
    #: ONNX Runtime graph optimisation level: disabled, basic, extended or all (NCHWc layouts).
    ort_optimization: str = "all"
    #: Time with a competing process keeping every CPU busy (:func:`competing_process`).
    competing: bool = False

    def variant(self, package: ModelPackage) -> dict[str, Any]:
        """The settings and machine that change what is timed (recorded in every row), the package's INT8 graph included."""
        int8 = package.manifest.get("int8")
        return {
            "ort_optimization": self.ort_optimization,
            "int8": None if int8 is None else f"{int8['format']}, {int8['weights']} weights, {len(int8['fp32_nodes'])} nodes FP32",
            "cpu": cpu_description(),
            "load": COMPETITION if self.competing else "idle",
        }

    def resolved_threads(self) -> int:
        return self.threads or physical_cores()


def realistic_slices(count: int, channels: int, size: tuple[int, int], num_classes: int, seed: int) -> np.ndarray:
    """``count`` synthetic head slices in scanner units (tumour classes cycling), float32 (N, C, H, W)."""
    from gpedge.data.samples import synthetic_slices

    height, width = size
    images = synthetic_slices(count, channels=channels, size=max(height, width), num_classes=num_classes, seed=seed).images
    return np.ascontiguousarray(images[:, :, :height, :width])


#: What ``competing=True`` runs beside each benchmark child (the row's ``load``).
COMPETITION = "1 competing process: float32 matrix products on every CPU"
_COMPETITOR = (
    "import numpy as np\n"
    "a = np.random.default_rng(0).random((384, 384), dtype=np.float32)\n"
    "while True:\n"
    "    a = (a @ a) / np.float32(384)\n"
)


@contextmanager
def competing_process(enabled: bool = True) -> Iterator[None]:
    """Keep every CPU busy with another process (BLAS threads on all CPUs) while the body runs."""
    if not enabled:
        yield
        return
    cpus = len(usable_cpus())
    env = {**os.environ, **{var: str(cpus) for var in _THREAD_VARIABLES}}
    proc = subprocess.Popen([sys.executable, "-c", _COMPETITOR], env=env)
    try:
        time.sleep(1.0)  # let it reach full load
        yield
    finally:
        proc.kill()
        proc.wait()


def run_child(job: dict[str, Any], workdir: Path, threads: int) -> dict[str, Any]:
    """Run one worker job in a fresh interpreter and return its result record."""
    name = job.get("backend", job["task"])
    job_path = workdir / f"job-{name}.json"
    job["result"] = str(workdir / f"result-{name}.json")
    job_path.write_text(json.dumps(job))
    env = {**os.environ, **{var: str(threads) for var in _THREAD_VARIABLES}}
    proc = subprocess.run(
        [sys.executable, "-m", "gpedge.bench.worker", str(job_path)], env=env, capture_output=True, text=True
    )
    result_path = Path(job["result"])
    result = json.loads(result_path.read_text()) if result_path.is_file() else {}
    if "error" in result:
        raise GpedgeError(f"benchmark of {name}: {result['error']}")
    if proc.returncode != 0 or not result:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise GpedgeError(f"benchmark child for {name} failed (exit {proc.returncode}):\n{tail}")
    return result


def benchmark_package(package_dir: str | os.PathLike, settings: BenchSettings) -> list[dict[str, Any]]:
    """Benchmark the model package at ``package_dir`` (or bundled of that name); one row per backend and batch size."""
    package = ModelPackage.load(package_dir)
    backends = _backends(package, settings)
    check_backends(backends)
    _check_settings(package, settings, backends)
    threads = settings.resolved_threads()
    height, width = package.image_size
    channels = len(package.channels)
    with tempfile.TemporaryDirectory(prefix="gpedge-bench-") as tmp:
        workdir = Path(tmp)
        pool = max(max(settings.batches), settings.accuracy_slices)
        slices = realistic_slices(pool, channels, (height, width), len(package.classes), settings.seed)
        np.save(workdir / "inputs.npy", slices[: max(settings.batches)])
        np.save(workdir / "accuracy.npy", slices[: settings.accuracy_slices])
        common = {
            "task": "bench",
            "package": str(package.root.resolve()),
            "inputs": str(workdir / "inputs.npy"),
            "accuracy_inputs": str(workdir / "accuracy.npy"),
            "accuracy_batch": min(8, settings.accuracy_slices, _max_batch(package)),
            "threads": threads,
            "ort_optimization": settings.ort_optimization,
        }
        rows: list[dict[str, Any]] = []
        outputs: dict[str, Path] = {}
        for backend in backends:
            job = {
                **common,
                "backend": backend,
                "batches": settings.batches,
                "warmup": settings.warmup,
                "iters": settings.iters,
                "accuracy_out": str(workdir / f"outputs-{backend}.npz"),
            }
            with competing_process(settings.competing):
                rows.extend(run_child(job, workdir, threads)["rows"])
            outputs[backend] = Path(job["accuracy_out"])
        if REFERENCE_BACKEND not in outputs:
            job = {**common, "backend": REFERENCE_BACKEND, "batches": [], "warmup": 0, "iters": 0,
                   "ort_optimization": "all", "accuracy_out": str(workdir / "outputs-reference.npz")}
            run_child(job, workdir, threads)
            outputs[REFERENCE_BACKEND] = Path(job["accuracy_out"])
        reference = dict(np.load(outputs[REFERENCE_BACKEND]))
        accuracy = {name: compare(dict(np.load(path)), reference) for name, path in outputs.items()}
    gflop = _gflop(package)
    model = package.manifest["model"]
    for row in rows:
        row.update(accuracy[row["backend"]], accuracy_reference=f"{REFERENCE_BACKEND} FP32")
        row.update(
            model=model.get("arch"),
            input=f"{channels}x{height}x{width}",
            warmup=settings.warmup,
            iters=settings.iters,
            gflop=gflop,
            tflops=None if gflop is None else gflop * row["batch"] / row["p50_ms"],
            **settings.variant(package),
        )
    return rows


def _backends(package: ModelPackage, settings: BenchSettings) -> list[str]:
    """The requested backends, else every one available here (the INT8 ones where the package has its INT8 graph)."""
    if settings.backends:
        return list(settings.backends)
    found = available_backends()
    if not package.has_file(GRAPHS["int8"]):
        log.info("%s has no %s: INT8 backends left out", package.root, GRAPHS["int8"])
        found = [b for b in found if not b.endswith("-int8")]
    return found


def _max_batch(package: ModelPackage) -> int:
    return int(package.manifest["input"].get("max_batch", 1))


def _check_settings(package: ModelPackage, settings: BenchSettings, backends: list[str]) -> None:
    limit = _max_batch(package)
    too_big = [b for b in settings.batches if b > limit]
    if too_big:
        raise GpedgeError(
            f"--batch {','.join(map(str, too_big))} exceeds the package's max_batch {limit} "
            f"({package.root / 'manifest.json'}); pass batches <= {limit} or re-export with a larger max batch"
        )
    if any(b < 1 for b in settings.batches) or settings.iters < 1 or settings.warmup < 0:
        raise GpedgeError("--batch values and --iters must be >= 1 and --warmup >= 0")
    if settings.accuracy_slices < 1:
        raise GpedgeError("--accuracy-slices must be >= 1")
    if settings.ort_optimization not in OPTIMIZATIONS:
        raise GpedgeError(f"--ort-optimization {settings.ort_optimization!r}: choose one of {', '.join(OPTIMIZATIONS)}")
    needs_int8 = [b for b in backends if b.endswith("-int8")]
    if needs_int8 and not package.has_file(GRAPHS["int8"]):
        raise GpedgeError(
            f"{', '.join(needs_int8)} run the package's {GRAPHS['int8']}, which {package.root} lacks; "
            "re-export it with 'gpedge export --int8' or leave these backends out"
        )


def _gflop(package: ModelPackage) -> float | None:
    """GFLOP per slice from the FP32 graph; None (with a warning) when it cannot be counted."""
    from gpedge.bench.flops import gflop_per_slice

    try:
        return gflop_per_slice(package.file("model.onnx", verify=False))
    except ImportError:
        log.warning("no FLOP count: the onnx package is not installed (pip install 'gpedge[export]')")
    except ValueError as exc:
        log.warning("no FLOP count: %s", exc)
    return None


def benchmark_volume(
    package_dir: str | os.PathLike,
    scan: str | os.PathLike,
    mask_out: str | os.PathLike,
    settings: BenchSettings,
) -> list[dict[str, Any]]:
    """Whole-volume end to end (read, infer every slice, write the mask NIfTI) per backend, each in its own child.

    Uses the largest of ``settings.batches``; ``settings.iters`` repeats of the slice loop are
    reported by their median. With several backends each writes ``<mask_out stem>.<backend>.nii.gz``.
    """
    package = ModelPackage.load(package_dir)
    backends = _backends(package, settings)
    check_backends(backends)
    _check_settings(package, settings, backends)
    threads = settings.resolved_threads()
    rows = []
    with tempfile.TemporaryDirectory(prefix="gpedge-bench-") as tmp:
        for backend in backends:
            job = {
                "task": "volume",
                "backend": backend,
                "package": str(package.root.resolve()),
                "scan": str(scan),
                "mask_out": str(_mask_path(Path(mask_out), backend, len(backends))),
                "batch": max(settings.batches),
                "warmup": settings.warmup,
                "iters": settings.iters,
                "threads": threads,
                "ort_optimization": settings.ort_optimization,
            }
            with competing_process(settings.competing):
                rows.extend(run_child(job, Path(tmp), threads)["rows"])
    for row in rows:
        row.update(settings.variant(package))
    return rows


def _mask_path(mask_out: Path, backend: str, count: int) -> Path:
    """``mask_out`` itself for one backend, else ``<stem>.<backend>.nii.gz`` beside it."""
    if count == 1:
        return mask_out
    name = mask_out.name
    stem = name[: -len(".nii.gz")] if name.endswith(".nii.gz") else mask_out.stem
    return mask_out.with_name(f"{stem}.{backend}.nii.gz")
