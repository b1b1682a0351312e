"""Where gpedge keeps its caches (decoded slices, TensorRT engines and timing cache, INT8 models)."""
from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$GPEDGE_CACHE``, else ``$XDG_CACHE_HOME/gpedge``, else ``~/.cache/gpedge``."""
    if os.environ.get("GPEDGE_CACHE"):
        return Path(os.environ["GPEDGE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gpedge"
