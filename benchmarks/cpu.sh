#!/usr/bin/env bash
# The CPU table: eager PyTorch FP32 vs ONNX Runtime FP32 vs ONNX Runtime static INT8 at batch 1,
# for the three paper networks (4 x 240 x 240, freshly initialised: no denormal weights) and the
# bundled default model, which is then compared with a freshly initialised network of its shape
# (eager PyTorch and ONNX Runtime), idle and with a competing process keeping every CPU busy.
# Each backend runs in its own process; every row records the CPU model and the load.
#   bash benchmarks/cpu.sh [OUT_DIR]        (about 15 minutes on 2 cores; run on a quiet machine)
# Environment: THREADS (default 2), ITERS (default 10), WARMUP (default 2), ONLY=default (only the
# bundled-model rows).
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
if [[ "${ONLY:-}" != default ]]; then
    for arch in gp-unet gp-shuffle-unet gp-reconresnet; do
        echo "== $arch 4x240x240 =="
        gpedge bench --arch "$arch" --channels 4 --image-size 240 --batch 1 --accuracy-slices 16 \
            "${common[@]}" --out "$out/cpu-$arch.json"
    done
fi

default_pkg="$(python -c 'from gpedge.package import BUNDLED; d = BUNDLED["default"]; print(d if (d / "manifest.json").is_file() else "")')"
if [[ -n "$default_pkg" ]]; then
    echo "== bundled model $default_pkg =="
    default_backends=torch,onnxruntime  # onnxruntime-int8 runs the package's own model.int8.onnx (gpedge export --int8)
    [[ -f "$default_pkg/model.int8.onnx" ]] && default_backends="$backends"
    gpedge bench --model "$default_pkg" --batch 1,8 --accuracy-slices 64 --backend "$default_backends" --threads "$threads" \
        --warmup "$warmup" --iters "$iters" --out "$out/cpu-default.json"
    pair=(--backend torch,onnxruntime --threads "$threads" --warmup "$warmup" --iters "$iters" --batch 1)
    size="$(python -c 'import json, sys; print(json.load(open(sys.argv[1]))["input"]["height"])' "$default_pkg/manifest.json")"
    healthy=(--arch gp-unet --channels 1 --image-size "$size" --width 16 --accuracy-slices 8)
    echo "== a freshly initialised network of the bundled model's shape =="
    gpedge bench "${healthy[@]}" "${pair[@]}" --out "$out/cpu-healthy-gp-unet-w16-$size.json"
    echo "== with a competing process =="
    gpedge bench --model "$default_pkg" --accuracy-slices 8 "${pair[@]}" --competing-process --out "$out/cpu-default-competing.json"
    gpedge bench "${healthy[@]}" "${pair[@]}" --competing-process --out "$out/cpu-healthy-gp-unet-w16-$size-competing.json"
else
    echo "no bundled model package under gpedge/assets: skipped"
fi

if [[ "${ONLY:-}" != default ]]; then
    python benchmarks/summarise.py "$out"/cpu-gp-*.json ${default_pkg:+"$out"/cpu-default.json}
    echo
fi
if [[ -n "$default_pkg" ]]; then
    python benchmarks/summarise.py "$out"/cpu-default*.json "$out"/cpu-healthy-*.json
fi
