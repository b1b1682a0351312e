"""The host stages around inference that the benchmark times (numpy and OpenCV only)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from gpedge.preprocess import resize_image


def preprocess(slices: Sequence[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """Raw (C, H, W) slices -> one contiguous float32 batch at the model size (the graph normalises)."""
    return np.ascontiguousarray(np.stack([resize_image(s, size) for s in slices]), dtype=np.float32)


def postprocess(outputs: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Split batched outputs into one record per slice (what a caller receives)."""
    count = len(outputs["label"])
    return [
        {"label": int(outputs["label"][i]), **{name: outputs[name][i] for name in outputs if name != "label"}}
        for i in range(count)
    ]
