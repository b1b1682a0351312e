"""ONNX Runtime on the CPU, option by option: graph optimisation level, threads, spinning, and the
OpenVINO execution provider when the installed ONNX Runtime build has it (``onnxruntime-openvino``).

Times the package's fused FP32 graph alone (one ``InferenceSession.run`` at batch 1 on the bundled
example slice ``examples/hgg_t1ce.png``, median of ``--iters`` after ``--warmup``), every variant in the same process, the variants
interleaved over ``--rounds`` so that a change of machine load hits all of them alike. Optionally
also the package's network in eager PyTorch (FP32, ``torch.set_flush_denormal`` off and on) and a
freshly initialised network of the same shape, as the reference "healthy network". Writes JSON
rows with the CPU model and the machine's load average.

    python benchmarks/ort_cpu_options.py [--model PKG] [--torch] [--out benchmarks/results/cpu/ort-options.json]
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from gpedge.cpus import cpu_description
from gpedge.package import ModelPackage
from gpedge.preprocess import fit_image
from gpedge.runtime.backends.base import rule_inputs
from gpedge.runtime.backends.onnxruntime import OPTIMIZATIONS
from gpedge.runtime.io import read_file

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "hgg_t1ce.png"


def _session(path: Path, provider: str, optimization: str, threads: int, spinning: bool) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPTIMIZATIONS[optimization])
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    options.add_session_config_entry("session.set_denormal_as_zero", "1")
    providers = [provider] if provider == "CPUExecutionProvider" else [(provider, {"device_type": "CPU"}), "CPUExecutionProvider"]
    return ort.InferenceSession(str(path), options, providers=providers)


def _median_ms(run, warmup: int, iters: int) -> float:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="package folder (default: the bundled model)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--torch", action="store_true", help="also time eager PyTorch (needs [train])")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    package = ModelPackage.load(args.model or "default")
    height, width = package.image_size
    slice_ = fit_image(read_file(EXAMPLE).images[0], (height, width))
    image = np.ascontiguousarray(np.repeat(slice_[None], len(package.channels), axis=1))
    feed = {"image": image, **rule_inputs(package.offset, package.mask_rule)}
    providers = [p for p in ("CPUExecutionProvider", "OpenVINOExecutionProvider") if p in ort.get_available_providers()]
    variants = {}
    for provider, optimization, threads, spinning in itertools.product(
        providers, ("basic", "extended", "all"), sorted({1, args.threads}), (False, True)
    ):
        if provider != "CPUExecutionProvider" and (spinning or optimization != "all"):
            continue  # OpenVINO compiles the graph itself: ONNX Runtime's level and pool barely apply
        session = _session(package.file("model.onnx"), provider, optimization, threads, spinning)
        label = f"onnxruntime {provider} optimization={optimization} threads={threads} spinning={spinning}"
        variants[label] = lambda s=session: s.run(None, feed)
    if args.torch:
        variants.update(_torch_variants(package, image, args.threads))
    times: dict[str, list[float]] = {label: [] for label in variants}
    for _ in range(args.rounds):
        for label, run in variants.items():
            times[label].append(_median_ms(run, args.warmup, args.iters))
    rows = [
        {"variant": label, "p50_ms_per_round": [round(t, 3) for t in values], "p50_ms": round(float(np.median(values)), 3),
         "model": package.manifest["model"]["arch"], "input": f"{len(package.channels)}x{height}x{width}",
         "onnxruntime": ort.__version__, "cpu": cpu_description(), "load_average": os.getloadavg()}
        for label, values in times.items()
    ]
    for row in sorted(rows, key=lambda r: r["p50_ms"]):
        print(f"{row['p50_ms']:8.2f} ms  {row['variant']}")
    print(f"({rows[0]['cpu']}; load average {os.getloadavg()[0]:.1f})")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


def _torch_variants(package: ModelPackage, image: np.ndarray, threads: int) -> dict:
    import torch

    from gpedge.models import create_model
    from gpedge.preprocess import normalise_slice_max
    from gpedge.runtime.backends.torch import load_package_network

    torch.set_num_threads(threads)
    info = package.manifest["model"]
    trained = load_package_network(package)
    torch.manual_seed(0)
    fresh = create_model(info["arch"], in_channels=len(package.channels), num_classes=len(package.classes),
                         **info.get("options", {})).eval()
    x = torch.from_numpy(normalise_slice_max(image))

    def run(network, flush: bool):
        def call():
            torch.set_flush_denormal(flush)
            with torch.inference_mode():
                network(x)
        return call

    return {
        f"torch eager, package weights, set_flush_denormal={flush}": run(trained, flush) for flush in (False, True)
    } | {f"torch eager, fresh initialisation (healthy network), set_flush_denormal={flush}": run(fresh, flush)
         for flush in (False, True)}


if __name__ == "__main__":
    sys.exit(main())
