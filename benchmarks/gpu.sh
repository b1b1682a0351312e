#!/usr/bin/env bash
# All GPU measurements in one run (< 5 minutes on an H100/H200):
#   bash benchmarks/gpu.sh [OUT_DIR] [--dry-run]
# Needs PyTorch with CUDA, onnx, onnxruntime (CPU build is enough) and cuda-bindings; nothing is
# downloaded. If gpedge is not installed, the source tree is used in place.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/benchmarks/results/gpu}"
shift || true
PY="${PYTHON:-$(command -v python3 || command -v python)}"
cd "$root"

if ! "$PY" -c "import gpedge.export" 2>/dev/null; then
    # gpedge.export lives in export/ (a pyproject package-dir mapping): outside an install, a
    # sitecustomize on PYTHONPATH adds the source root to gpedge's package path in every
    # interpreter, the benchmark's child processes included.
    shim="$(mktemp -d)"
    trap 'rm -rf "$shim"' EXIT
    cat >"$shim/sitecustomize.py" <<'PY'
import os

_root = os.environ.get("GPEDGE_SOURCE_ROOT")
if _root:
    import gpedge

    if _root not in gpedge.__path__:
        gpedge.__path__.append(_root)
PY
    export GPEDGE_SOURCE_ROOT="$root"
    export PYTHONPATH="$shim:$root${PYTHONPATH:+:$PYTHONPATH}"
    "$PY" -c "import gpedge.export" || { echo "cannot import gpedge.export from $root" >&2; exit 2; }
fi
exec "$PY" benchmarks/gpu.py "$out" "$@"
