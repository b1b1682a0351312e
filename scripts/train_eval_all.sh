#!/usr/bin/env bash
# Train, export and evaluate all three GP networks on one synthetic BraTS-layout data set, all four
# contrasts as in the paper, on a CPU budget: 96 px, --recipe cpu (8 epochs), GP-UNet width 16, the others width 8.
# Usage: [SEED=1701] scripts/train_eval_all.sh [WORK_DIR] [ARCH ...]   (needs: pip install -e ".[dev]")
# Writes WORK_DIR/<arch>/{run,package,eval}; the README's results table is read from eval/metrics.json.
set -euo pipefail
work=${1:-/tmp/gpedge-results}
shift || true
archs=${*:-gp-unet gp-shuffle-unet gp-reconresnet}
mkdir -p "$work"
[ -d "$work/synth" ] || gpedge synth "$work/synth" --patients 64 --seed 2026 --size 128 --slices 48
for arch in $archs; do
  case $arch in
    gp-unet) width=16 ;;
    *) width=8 ;;
  esac
  rm -rf "${work:?}/$arch"
  gpedge train --arch "$arch" --width "$width" --data "$work/synth" --channels t1,t2,t1ce,flair --image-size 96 \
    --recipe cpu --seed ${SEED:-1701} --workers 1 --device auto --out "$work/$arch/run"
  gpedge export "$work/$arch/run" --out "$work/$arch/package" --max-batch 16 --no-engine
  gpedge evaluate --model "$work/$arch/package" --data "$work/synth" --split test --backend onnxruntime --out "$work/$arch/eval"
done
python "$(dirname "$0")/results_table.py" "$work" $archs
