"""Host-side mask helpers (no torch): the paper's clean-up step, and the mask rule's test reference.

The runtime never thresholds on the host: the rule runs inside the fused graph
(:mod:`gpedge.graph.mask`) and :mod:`gpedge.runtime.maps` maps its result to the input's
resolution. :func:`multiotsu_threshold` and :func:`mask_from_heatmap` are the rule computed
with scikit-image, which the tests hold the graph to: take the predicted class's heatmap, zero
negative values, three-class multi-Otsu with 256 bins over the map's own range, threshold =
max(upper threshold - offset, 0), mask = map > threshold. A map with fewer than three occupied
histogram bins (constant or nearly so) has no multi-Otsu split: its threshold is its maximum
and its mask is empty.
"""
from __future__ import annotations

import numpy as np
from skimage import morphology
from skimage.filters import threshold_multiotsu
from skimage.measure import label as label_components

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


def clean_mask(
    mask: np.ndarray,
    min_object: int = 64,
    max_hole: int = 128,
    closing_radius: int = 2,
    largest_component: bool = True,
) -> np.ndarray:
    """Paper clean-up of a (H, W) mask: drop objects under ``min_object`` px, fill holes under
    ``max_hole`` px, binary closing with a disk of ``closing_radius``, keep the largest component.

    Returns uint8 (H, W). A step is skipped when its size parameter is 0.
    """
    binary = np.asarray(mask).astype(bool)
    if binary.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {binary.shape}")
    if min_object > 0:
        binary = morphology.remove_small_objects(binary, max_size=min_object - 1)
    if max_hole > 0:
        binary = morphology.remove_small_holes(binary, max_size=max_hole - 1)
    if closing_radius > 0:
        binary = morphology.closing(binary, morphology.disk(closing_radius))
    if largest_component and binary.any():
        components = label_components(binary, connectivity=2)
        sizes = np.bincount(components.ravel())
        sizes[0] = 0
        binary = components == int(np.argmax(sizes))
    return binary.astype(np.uint8)
