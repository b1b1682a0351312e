#!/usr/bin/env bash
# Train, export and evaluate all three GP networks on one synthetic BraTS-layout data set, all four
# contrasts as in the paper, on a CPU budget: 480 patients, 96 px, --recipe cpu, bfloat16 autocast (--amp) and,
# for GP-UNet and GP-ShuffleUNet, compiled steps (--compile; TorchInductor's bfloat16 code for GP-ReconResNet
# gives NaN gradients); GP-UNet width 16 with BatchNorm (--norm batch) for 8 epochs, GP-ShuffleUNet width 8 for
# 6, GP-ReconResNet width 16 with 4 residual blocks and no dropout for 6. Each package is then judged on its own
# test patients and on two sets no run sees: 32 more training-family patients and 24 patients of the held-out
# generator family (skull-stripped).
# Usage: [SEED=1701] [TRAIN_FLAGS=...] scripts/train_eval_all.sh [WORK_DIR] [ARCH ...]   (needs: pip install -e ".[dev]")
# TRAIN_FLAGS: the `gpedge train` options added for every network instead of those above (--amp needs bfloat16 in
#   the CPU's hardware: TRAIN_FLAGS=--compile on a CPU without it; TRAIN_FLAGS= for float32 eager steps).
# The 480 training-family patients are two sets of 240 (seeds 2027 and 2028, ids 1-240 and 501-740) in one folder,
# as the README's runs were trained on. Writes WORK_DIR/<arch>/{run,package,eval,external,heldout}; the README's
# tables are read from their metrics.json.
set -euo pipefail
source "$(dirname "$0")/readme_networks.sh"
work=${1:-/tmp/gpedge-results}
shift || true
archs=${*:-gp-unet gp-shuffle-unet gp-reconresnet}
mkdir -p "$work"
if [ ! -d "$work/synth" ]; then
  rm -rf "$work/synth-parts"
  gpedge synth "$work/synth-parts/a" --patients 240 --seed 2027 --size 128 --slices 48 --workers 2
  gpedge synth "$work/synth-parts/b" --patients 240 --seed 2028 --first-id 501 --size 128 --slices 48 --workers 2
  mkdir "$work/synth.partial"
  mv "$work"/synth-parts/{a,b}/BraTS20_Training_* "$work/synth.partial/"
  { cat "$work/synth-parts/a/name_mapping.csv"; tail -n +2 "$work/synth-parts/b/name_mapping.csv"; } \
    > "$work/synth.partial/name_mapping.csv"
  mv "$work/synth.partial" "$work/synth"
  rm -rf "$work/synth-parts"
fi
[ -d "$work/external" ] || gpedge synth "$work/external" --patients 32 --seed 2030 --first-id 401 --size 128 --slices 48
[ -d "$work/heldout" ] || gpedge synth "$work/heldout" --family heldout --skull-fraction 0 --patients 24 --seed 32 --first-id 901 --size 128
for arch in $archs; do
  flags=$(readme_train_flags "$arch")
  speed="--amp"; if readme_compiles "$arch"; then speed="--amp --compile"; fi
  rm -rf "${work:?}/$arch"
  gpedge train $flags --epochs "$(readme_epochs "$arch")" --data "$work/synth" --seed ${SEED:-1701} --workers 1 \
    --device auto ${TRAIN_FLAGS-$speed} --out "$work/$arch/run"
  gpedge export "$work/$arch/run" --out "$work/$arch/package" --max-batch 16 --no-engine
  gpedge evaluate --model "$work/$arch/package" --data "$work/synth" --split test --backend onnxruntime --out "$work/$arch/eval"
  for set in external heldout; do
    gpedge evaluate --model "$work/$arch/package" --data "$work/$set" --split all --backend onnxruntime --no-posthoc \
      --out "$work/$arch/$set"
  done
done
python "$(dirname "$0")/results_table.py" "$work" $archs
