# Sourced by the GPU scripts: makes the source tree importable as gpedge (with gpedge.export) when
# gpedge is not installed. Expects PY (the interpreter) and root (the repository root).
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
