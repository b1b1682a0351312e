#!/usr/bin/env bash
# The CPU table: eager PyTorch FP32 vs ONNX Runtime FP32 vs ONNX Runtime static INT8 at batch 1,
# for the three paper networks (4 x 240 x 240, untrained: weights do not change the speed) and the
# bundled default model when there is one. Each backend runs in its own process.
#   bash benchmarks/cpu.sh [OUT_DIR]        (about 10 minutes on 2 cores; run on a quiet machine)
# Environment: THREADS (default 2), ITERS (default 10), WARMUP (default 2).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/benchmarks/results/cpu}"
threads="${THREADS:-2}"
iters="${ITERS:-10}"
warmup="${WARMUP:-2}"
backends="torch,onnxruntime,onnxruntime-int8"
mkdir -p "$out"
cd "$root"

common=(--backend "$backends" --threads "$threads" --warmup "$warmup" --iters "$iters")
for arch in gp-unet gp-shuffle-unet gp-reconresnet; do
    echo "== $arch 4x240x240 =="
    gpedge bench --arch "$arch" --channels 4 --image-size 240 --batch 1 --accuracy-slices 16 \
        "${common[@]}" --out "$out/cpu-$arch.json"
done

default_pkg="$(python -c 'import pathlib, gpedge; print(next((str(p.parent) for p in sorted(pathlib.Path(gpedge.__file__).parent.joinpath("assets").glob("*/manifest.json"))), ""))')"
if [[ -n "$default_pkg" ]]; then
    echo "== bundled model $default_pkg =="
    gpedge bench --model "$default_pkg" --batch 1,8 --accuracy-slices 64 "${common[@]}" --out "$out/cpu-default.json"
else
    echo "no bundled model package under gpedge/assets: skipped"
fi

python benchmarks/summarise.py "$out"/cpu-*.json
