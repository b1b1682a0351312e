#!/usr/bin/env bash
# All GPU measurements in one run (< 5 minutes on an H100/H200):
#   bash benchmarks/gpu.sh [OUT_DIR] [--dry-run]
# Needs PyTorch with CUDA, onnx, onnxruntime (CPU build is enough) and cuda-bindings; nothing is
# downloaded. It measures this source tree (first on PYTHONPATH), installed or not.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/benchmarks/results/gpu}"
shift || true
PY="${PYTHON:-$(command -v python3 || command -v python)}"
cd "$root"

source "$root/benchmarks/source_tree.sh"
exec "$PY" benchmarks/gpu.py "$out" "$@"
