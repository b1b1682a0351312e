"""CPU what-ifs for one network, each timed in its own process at batch 1:
ONNX Runtime graph optimisation level (``all`` adds the NCHWc layout transforms), thread count,
INT8 variants (QDQ vs QOperator, per-channel vs per-tensor weights), and sinc-MatMul vs
transposed-conv upsampling (networks that have the option).

    python benchmarks/cpu_variants.py [--arch gp-unet] [--threads 2] [--out benchmarks/results/cpu-variants.json]

About 5 minutes for GP-UNet on 2 cores; run it on a quiet machine.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from gpedge.bench.runner import BenchSettings, benchmark_package
from gpedge.export.int8 import Int8Settings
from gpedge.export.untrained import untrained_package
from gpedge.models import default_options


def variants(base: BenchSettings, threads: int) -> list[tuple[str, BenchSettings]]:
    """(label, settings) pairs of the FP32 graph, all at the default sinc upsampling."""
    fp32 = replace(base, backends=["onnxruntime"])
    runs = [(f"ORT FP32, optimisation {level}", replace(fp32, ort_optimization=level)) for level in ("basic", "extended", "all")]
    runs += [(f"ORT FP32, {n} thread(s)", replace(fp32, threads=n)) for n in sorted({1, threads})]
    return runs


#: INT8 graphs compared (each exported into its own package): label -> settings.
INT8_VARIANTS = {
    "ORT INT8 QDQ per-channel, int8 symmetric activations (packaged default)": Int8Settings(),
    "ORT INT8 QDQ per-channel, uint8 activations": Int8Settings(activations="uint8"),
    "ORT INT8 QDQ per-tensor": Int8Settings(per_channel=False),
    "ORT INT8 QOperator per-channel, uint8 activations": Int8Settings(quant_format="qoperator", activations="uint8"),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="gp-unet")
    parser.add_argument("--image-size", type=int, default=240)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/cpu-variants.json"))
    args = parser.parse_args()
    base = BenchSettings(batches=[1], warmup=2, iters=args.iters, threads=args.threads, accuracy_slices=8)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="gpedge-variants-") as tmp:
        package = untrained_package(args.arch, 4, args.image_size, {}, 1, Path(tmp) / "sinc")
        for label, settings in variants(base, args.threads):
            print(f"-- {label}", flush=True)
            rows += [{**row, "variant": label} for row in benchmark_package(package, settings)]
        for index, (label, int8) in enumerate(INT8_VARIANTS.items()):
            print(f"-- {label}", flush=True)
            pkg = untrained_package(args.arch, 4, args.image_size, {}, 1, Path(tmp) / f"int8-{index}", int8=int8)
            rows += [{**row, "variant": label} for row in benchmark_package(pkg, replace(base, backends=["onnxruntime-int8"]))]
        if "upsample" in default_options(args.arch):
            for upsample in ("sinc", "transpose"):
                pkg = package if upsample == "sinc" else untrained_package(
                    args.arch, 4, args.image_size, {"upsample": upsample}, 1, Path(tmp) / upsample
                )
                settings = replace(base, backends=["torch", "onnxruntime"])
                print(f"-- upsample {upsample}", flush=True)
                rows += [{**row, "variant": f"upsample {upsample}, {row['backend']}"} for row in benchmark_package(pkg, settings)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"\n{args.arch} 4x{args.image_size}x{args.image_size}, batch 1, {args.threads} threads (rows in {args.out})")
    print("| variant | p50 ms | p90 ms | GFLOP | GFLOP/s | labels = | max abs dp | mask Dice |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['variant']} | {r['p50_ms']:.1f} | {r['p90_ms']:.1f} | {r['gflop']:.1f} | {1e3 * r['tflops']:.0f} "
            f"| {r['label_agreement']:.1%} | {r['max_prob_diff']:.1e} | {r['mask_dice']:.4f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
