# Sourced by the GPU scripts: puts this source tree first on PYTHONPATH, so the scripts measure the
# checked-out gpedge whether or not (and whichever) gpedge is installed. Expects root (the repository root).
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
