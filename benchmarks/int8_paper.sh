#!/usr/bin/env bash
# INT8 gates of the three networks at paper width, trained on the GPU (< 6 minutes on an H100/H200):
#   bash benchmarks/int8_paper.sh [OUT_DIR] [--dry-run] [--steps N]
# Needs PyTorch with CUDA, onnx, onnxruntime (CPU build is enough) and SciPy; nothing is downloaded.
# It measures this source tree (first on PYTHONPATH), installed or not.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/benchmarks/results/gpu}"
shift || true
PY="${PYTHON:-$(command -v python3 || command -v python)}"
cd "$root"
source "$root/benchmarks/source_tree.sh"
exec "$PY" benchmarks/int8_paper.py "$out" "$@"
