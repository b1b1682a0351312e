#!/usr/bin/env bash
# Rebuild the bundled default model (gpedge/assets/default_model) from synthetic data only.
# Usage: scripts/build_default_model.sh [WORK_DIR]   (needs: pip install -e ".[dev]")
# About 25 minutes on 2 idle CPU cores (32 epochs of ~43 s).
set -euo pipefail
work=${1:-/tmp/gpedge-default-model}
repo=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$work"
[ -d "$work/synth" ] || gpedge synth "$work/synth" --patients 64 --seed 2026 --size 128 --slices 48
rm -rf "$work/package" "$work/eval"
[ -f "$work/run/model.safetensors" ] && resume=--resume || { rm -rf "$work/run"; resume=; }
gpedge train --arch gp-unet --width 16 --data "$work/synth" --channels t1ce --image-size 128 \
  --epochs 32 --batch-size 16 --accumulate 1 --seed 1701 --workers 1 --device cpu --out "$work/run" $resume
gpedge export "$work/run" --out "$work/package" --max-batch 16 --no-engine
gpedge evaluate --model "$work/package" --data "$work/synth" --split test --backend onnxruntime \
  --offsets 0,0.25,0.5,1,1.5,2,3,4,6,8 --out "$work/eval"
rm -rf "$repo/gpedge/assets/default_model"
cp -r "$work/package" "$repo/gpedge/assets/default_model"
cp "$work/eval/metrics.json" "$repo/docs/default_model_eval.json"
echo "default model written to $repo/gpedge/assets/default_model"
