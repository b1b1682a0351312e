"""Every GPU measurement of gpedge in one run (< 5 minutes on an H100/H200).

    bash benchmarks/gpu.sh OUT_DIR            # on a CUDA host
    bash benchmarks/gpu.sh OUT_DIR --dry-run  # tiny networks, whatever backends this machine has

Needs only PyTorch (CUDA), onnx, onnxruntime (CPU is enough: it is the FP32 reference) and
cuda-bindings; TensorRT, onnxruntime-gpu and nibabel are used when present. Writes one JSON file
per measurement into OUT_DIR and prints a summary table last. Run it from the repository root
through benchmarks/gpu.sh, which puts this source tree first on PYTHONPATH.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

#: The paper networks, timed at 4 x 240 x 240 (paper widths).
PAPER = ("gp-unet", "gp-shuffle-unet", "gp-reconresnet")
VOLUME_SLICES = 155
#: Seconds after which the remaining networks are skipped (and listed in failures.json).
TIME_BUDGET_S = 270


def has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def write(out: Path, name: str, payload) -> None:
    (out / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")


def environment() -> dict:
    import torch

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "packages": {m: has(m) for m in ("onnx", "onnxruntime", "onnxconverter_common", "nibabel", "tensorrt", "cuda.bindings", "rich")},
    }
    if has("onnxruntime"):
        import onnxruntime as ort

        info["onnxruntime"] = ort.__version__
        info["onnxruntime_providers"] = ort.get_available_providers()
    return info


def matmul_peak(dry_run: bool) -> dict:
    """Measured FP16 tensor-core peak: median of timed 8192^3 products on random data (CUDA events)."""
    import torch

    n = 512 if dry_run else 8192
    a = torch.randn(n, n, device="cuda", dtype=torch.float16)
    b = torch.randn(n, n, device="cuda", dtype=torch.float16)
    for _ in range(5):
        a @ b
    times = []
    for _ in range(20):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        a @ b
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    median_ms = sorted(times)[len(times) // 2]
    return {"n": n, "median_ms": median_ms, "tflops": 2 * n**3 / (median_ms * 1e-3) / 1e12}


def cuda_round_trip() -> dict:
    """cuda-python buffer round trip (the TensorRT backend's buffer path): host -> device -> host."""
    import numpy as np
    from cuda.bindings import runtime as cudart

    def check(result):
        err, *rest = result
        if err != cudart.cudaError_t.cudaSuccess:
            raise RuntimeError(f"CUDA error {err}")
        return rest[0] if len(rest) == 1 else None

    data = np.random.default_rng(0).standard_normal((8, 4, 240, 240)).astype(np.float32)
    back = np.empty_like(data)
    ptr = check(cudart.cudaMalloc(data.nbytes))
    try:
        kind = cudart.cudaMemcpyKind
        check(cudart.cudaMemcpy(ptr, data.ctypes.data, data.nbytes, kind.cudaMemcpyHostToDevice))
        check(cudart.cudaMemcpy(back.ctypes.data, ptr, data.nbytes, kind.cudaMemcpyDeviceToHost))
    finally:
        check(cudart.cudaFree(ptr))
    return {"bytes": int(data.nbytes), "identical": bool(np.array_equal(data, back))}


def bench_network(arch: str, backends: list[str], batches: list[int], dry_run: bool, work: Path, failures: dict) -> list[dict]:
    """Rows of every backend on ``arch``; each backend separately, so one failure costs only its own rows."""
    from gpedge.bench.runner import BenchSettings, benchmark_package
    from gpedge.export.untrained import untrained_package

    size, width = (32, 4) if dry_run else (240, None)
    package = untrained_package(
        arch, channels=4, image_size=size, options={} if width is None else {"width": width},
        max_batch=max(batches), out_dir=work / f"pkg-{arch}",
        fp16="tensorrt" in backends,
    )
    rows: list[dict] = []
    for backend in backends:
        settings = BenchSettings(
            backends=[backend], batches=batches, warmup=3 if dry_run else 10, iters=5 if dry_run else 30,
            accuracy_slices=8 if dry_run else 16,
        )
        try:
            rows.extend(benchmark_package(package, settings))
        except Exception:  # keep the other backends' numbers
            failures[f"{arch}/{backend}"] = traceback.format_exc()
            print(f"{arch} on {backend} failed:\n{failures[f'{arch}/{backend}']}", file=sys.stderr)
    return rows


def summarise(results: dict, peak: dict | None) -> list[list[str]]:
    lines = [["network", "backend", "batch", "p50 ms", "GPU ms", "speed-up", "slices/s", "TFLOP/s", "% peak", "labels =", "Dice"]]
    for arch, rows in results.items():
        base = {r["batch"]: r["p50_ms"] for r in rows if r["backend"] == "torch"}
        for r in rows:
            speedup = base.get(r["batch"], float("nan")) / r["p50_ms"]
            share = (100 * r["tflops"] / peak["tflops"]) if peak and r.get("tflops") else float("nan")
            lines.append([
                arch, r["backend"], str(r["batch"]), f"{r['p50_ms']:.2f}",
                "-" if r.get("device_ms") is None else f"{r['device_ms']:.2f}", f"{speedup:.1f}x", f"{r['throughput']:.0f}",
                f"{r['tflops'] or 0:.1f}", f"{share:.1f}", f"{r['label_agreement']:.1%}", f"{r['mask_dice']:.4f}",
            ])
    return lines


def print_table(lines: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in lines) for i in range(len(lines[0]))]
    for row in lines:
        print("  ".join(cell.rjust(w) for cell, w in zip(row, widths)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="folder for the JSON results")
    parser.add_argument("--dry-run", action="store_true", help="tiny networks (width 4, 32 px); runs without a GPU")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    import torch

    from gpedge.bench.backends import unavailable_reason

    cuda = torch.cuda.is_available()
    if not cuda and not args.dry_run:
        print("no CUDA GPU visible to PyTorch: run on a GPU host, or pass --dry-run", file=sys.stderr)
        return 2
    env = environment()
    write(args.out, "environment", env)
    print(json.dumps(env))

    peak = None
    failures: dict[str, str] = {}
    if cuda:
        peak = matmul_peak(args.dry_run)
        write(args.out, "matmul_peak", peak)
        print(f"FP16 matmul peak: {peak['tflops']:.0f} TFLOP/s")
        if has("cuda.bindings"):
            try:
                trip = cuda_round_trip()
                write(args.out, "cuda_round_trip", trip)
                print(f"cuda-python round trip of {trip['bytes']} bytes: identical={trip['identical']}")
            except Exception as exc:  # report and go on: the other measurements stand alone
                failures["cuda_round_trip"] = repr(exc)

    wanted = ["torch", "torch-fp16", "onnxruntime-cuda", "tensorrt"] if cuda else ["torch", "onnxruntime"]
    backends = [b for b in wanted if unavailable_reason(b) is None]
    skipped = {b: unavailable_reason(b) for b in wanted if b not in backends}
    write(args.out, "skipped_backends", skipped)
    for name, reason in skipped.items():
        print(f"skipping {name}: {reason}")

    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="gpedge-gpu-bench-") as tmp:
        work = Path(tmp)
        for arch in PAPER:
            if time.perf_counter() - started > TIME_BUDGET_S:
                failures[arch] = f"skipped: the {TIME_BUDGET_S} s budget was spent"
                continue
            batches = [1, 32, VOLUME_SLICES] if arch == "gp-unet" else [1, 32]
            if args.dry_run:
                batches = [1, 4]
            try:
                rows = bench_network(arch, backends, batches, args.dry_run, work, failures)
            except Exception:  # one failing network (its export) must not cost the others' numbers
                failures[arch] = traceback.format_exc()
                print(f"{arch} failed:\n{failures[arch]}", file=sys.stderr)
                continue
            results[arch] = rows
            write(args.out, f"bench-{arch}", rows)
            print(f"{arch}: {len(rows)} rows in {time.perf_counter() - started:.0f} s")
    write(args.out, "failures", failures)

    print(f"\n== gpedge GPU benchmark ({env['gpu'] or 'no GPU: dry run'}, {time.perf_counter() - started:.0f} s) ==")
    if peak:
        print(f"measured FP16 matmul peak {peak['tflops']:.0f} TFLOP/s; speed-up vs torch eager FP32 at the same batch")
    print("p50: end to end (host preprocess, copies, inference, all outputs back); GPU ms: CUDA-event time of the model alone")
    if "gp-unet" in results:
        whole = [r for r in results["gp-unet"] if r["batch"] == VOLUME_SLICES]
        for r in whole:
            gpu = "" if r.get("device_ms") is None else f", {r['device_ms']:.1f} ms of it on the GPU"
            print(
                f"gp-unet, whole {VOLUME_SLICES}-slice volume in one batch, {r['backend']}: {r['p50_ms']:.1f} ms end to end "
                f"(preprocess {r['preprocess_ms']:.1f}, inference {r['inference_ms']:.1f}{gpu}; goal < 30 ms)"
            )
    table = summarise(results, peak)
    write(args.out, "summary", table)
    print_table(table)
    if failures:
        print(f"failures: {', '.join(failures)} (details in {args.out / 'failures.json'})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
