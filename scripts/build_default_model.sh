#!/usr/bin/env bash
# Rebuild the bundled default model (gpedge/assets/default_model) from synthetic data only.
# Usage: scripts/build_default_model.sh [WORK_DIR]   (needs: pip install -e ".[dev]")
# About 45 minutes on 2 CPU cores: synth 10 min, 5 epochs of ~5 min, the mask-rule sweep 8 min.
set -euo pipefail
work=${1:-/tmp/gpedge-default-model}
repo=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$work"
[ -d "$work/synth" ] || gpedge synth "$work/synth" --patients 192 --seed 2027 --size 128 --slices 48 --workers 2
rm -rf "$work/package" "$work/eval"
[ -f "$work/run/model.safetensors" ] && resume=--resume || { rm -rf "$work/run"; resume=; }
gpedge train --arch gp-unet --width 16 --upsample sinc-mirror --data "$work/synth" --channels t1ce --image-size 96 \
  --recipe cpu --epochs 5 --seed 1701 --workers 0 --device cpu --out "$work/run" $resume
# export chooses the mask rule and offset on all the validation patients' slices
gpedge export "$work/run" --out "$work/package" --max-batch 16 --no-engine --tune-slices 100000
gpedge evaluate --model "$work/package" --data "$work/synth" --split test --backend onnxruntime --out "$work/eval"
rm -rf "$repo/gpedge/assets/default_model"
cp -r "$work/package" "$repo/gpedge/assets/default_model"
cp "$work/eval/metrics.json" "$repo/docs/default_model_eval.json"
echo "default model written to $repo/gpedge/assets/default_model"
