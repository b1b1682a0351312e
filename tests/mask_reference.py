"""The mask rule computed with scikit-image: the reference the fused graph's in-graph rule is tested against.

Take the predicted class's heatmap, zero negative values, three-class multi-Otsu with 256 bins
over the map's own range, threshold = max(upper threshold - offset, 0), mask = map > threshold.
A map with fewer than three occupied histogram bins (constant or nearly so) has no multi-Otsu
split: its threshold is its maximum and its mask is empty. Neither the runtime nor the exporter
thresholds on the host (``gpedge.graph.mask`` does it in the graph), so this lives with the tests.
"""
from __future__ import annotations

import numpy as np
from skimage.filters import threshold_multiotsu

from gpedge.graph.contract import MASK_BINS as BINS
from gpedge.graph.contract import MASK_CLASSES as CLASSES


def multiotsu_threshold(heatmap: np.ndarray, offset: float = 0.5, classes: int = CLASSES, bins: int = BINS) -> float:
    """Mask threshold of one (H, W) heatmap: max(upper multi-Otsu threshold - offset, 0).

    Negative values are zeroed first. A degenerate map (fewer than ``classes`` occupied bins)
    returns its maximum, so that ``heatmap > threshold`` is empty.
    """
    positive = np.maximum(np.asarray(heatmap, dtype=np.float32), 0.0)
    if positive.ndim != 2:
        raise ValueError(f"heatmap must be 2-D (H, W), got shape {positive.shape}")
    if not np.isfinite(positive).all():
        raise ValueError("heatmap contains NaN or infinite values")
    try:
        upper = threshold_multiotsu(positive, classes=classes, nbins=bins)[-1]
    except ValueError:
        return float(positive.max())
    return float(max(np.float32(upper) - np.float32(offset), np.float32(0.0)))


def mask_from_heatmap(
    heatmap: np.ndarray,
    offset: float = 0.5,
    classes: int = CLASSES,
    bins: int = BINS,
    empty: bool = False,
) -> np.ndarray:
    """uint8 (H, W) mask of one heatmap by the mask rule; all zeros when ``empty`` (no-tumour class)."""
    positive = np.maximum(np.asarray(heatmap, dtype=np.float32), 0.0)
    if empty:
        return np.zeros(positive.shape, np.uint8)
    threshold = multiotsu_threshold(positive, offset, classes, bins)
    return (positive > np.float32(threshold)).astype(np.uint8)
