#!/usr/bin/env bash
# Rebuild the bundled default model (gpedge/assets/default_model) from synthetic data only.
# Usage: scripts/build_default_model.sh [WORK_DIR]   (needs: pip install -e ".[dev]")
# About an hour on 2 CPU cores: synth 3 min, 6 epochs of ~8 min (FLAIR, BatchNorm, the four-contrast bundled
# network gp-unet-synth as teacher), the mask-rule sweep (66 candidates on all 1,354 validation slices) about 10 min.
set -euo pipefail
work=${1:-/tmp/gpedge-default-model}
repo=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$work"
[ -d "$work/synth" ] || gpedge synth "$work/synth" --patients 192 --seed 2027 --size 128 --slices 48 --workers 2
rm -rf "$work/package" "$work/eval"
[ -f "$work/run/model.safetensors" ] && resume=--resume || { rm -rf "$work/run"; resume=; }
gpedge train --arch gp-unet --width 16 --upsample sinc-mirror --data "$work/synth" --channels flair --image-size 96 \
  --norm batch --recipe cpu --epochs 6 --seed 1701 --workers 0 --device cpu --distil-from gp-unet-synth --distil-weight 3 \
  --out "$work/run" $resume
# export chooses the mask rule and offset on all the validation patients' slices
gpedge export "$work/run" --out "$work/package" --max-batch 16 --no-engine --tune-slices 100000 --no-flip-average
gpedge evaluate --model "$work/package" --data "$work/synth" --split test --backend onnxruntime --out "$work/eval"
rm -rf "$repo/gpedge/assets/default_model"
cp -r "$work/package" "$repo/gpedge/assets/default_model"
cp "$work/eval/metrics.json" "$repo/docs/default_model_eval.json"
echo "default model written to $repo/gpedge/assets/default_model"
