#!/usr/bin/env bash
# Training speed on the CPU in float32, with --amp (bfloat16 autocast where the CPU has it in hardware) and with
# --amp --compile (TorchInductor): the three networks as scripts/train_eval_all.sh trains them (96 px, four
# contrasts, --recipe cpu), each for STEPS optimizer steps of batch 8, in its own process, each setting twice;
# the trainer's own slices/s (training only, validation excluded) go to OUT_DIR/train-precision.json. The
# compiler's cache starts empty, so a compiled setting's first run includes its compilation, the second reads
# the cache. GP-ReconResNet is not compiled (scripts/readme_networks.sh says why).
#   bash benchmarks/train_precision.sh DATA [OUT_DIR]    (DATA: a BraTS-layout folder, e.g. from gpedge synth;
#                                                         about 25 minutes on 2 cores; run on a quiet machine)
# Environment: THREADS (default 2), STEPS (default 150).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
data="${1:?usage: train_precision.sh DATA [OUT_DIR]}"
out="${2:-$root/benchmarks/results/train}"
threads="${THREADS:-2}"
steps="${STEPS:-150}"
mkdir -p "$out"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
source "$root/scripts/readme_networks.sh"
for arch in gp-unet gp-shuffle-unet gp-reconresnet; do
    for repeat in 1 2; do
        for precision in float32 amp amp-compile; do
            [[ $precision == amp-compile ]] && ! readme_compiles "$arch" && continue
            case $precision in float32) flag=() ;; amp) flag=(--amp) ;; amp-compile) flag=(--amp --compile) ;; esac
            echo "== $arch $precision (run $repeat) =="
            # shellcheck disable=SC2086
            OMP_NUM_THREADS="$threads" TORCHINDUCTOR_CACHE_DIR="$work/inductor" gpedge train $(readme_train_flags "$arch") \
                --data "$data" --epochs 1 --max-steps "$steps" --workers 0 --device cpu "${flag[@]}" --out "$work/$arch-$precision-$repeat" \
                > /dev/null
        done
    done
done
python - "$work" "$out/train-precision.json" "$threads" "$steps" <<'PY'
import json, platform, sys
from pathlib import Path

import torch

from gpedge.cpus import cpu_description

work, target, threads, steps = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rows = []
for run in sorted(path for path in work.iterdir() if (path / "config.json").exists()):
    config = json.loads((run / "config.json").read_text())
    epoch = json.loads((run / "metrics.json").read_text())["epochs"][0]
    rows.append({"arch": config["arch"], "amp": config["train"]["amp"], "compile": config["train"].get("compile", False), "run": run.name, "steps": epoch["step"],
                 "slices_per_s": round(epoch["slices_per_s"], 1), "train_loss": round(epoch["train_loss"], 4)})
machine = {"cpu": cpu_description(), "threads": threads, "python": platform.python_version(), "torch": torch.__version__}
target.write_text(json.dumps({"machine": machine, "steps": steps, "rows": rows}, indent=2) + "\n")
print(f"{'network':16} {'setting':18} {'slices/s (runs)':>20}")
for arch in dict.fromkeys(r["arch"] for r in rows):
    for setting in dict.fromkeys((r["amp"], r["compile"]) for r in rows):
        speeds = [r["slices_per_s"] for r in rows if r["arch"] == arch and (r["amp"], r["compile"]) == setting]
        if not speeds:
            continue
        name = (setting[0] or "float32") + (" compiled" if setting[1] else "")
        print(f"{arch:16} {name:18} {' / '.join(map(str, speeds)):>20}")
PY
