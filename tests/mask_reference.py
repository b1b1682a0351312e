"""The mask rules computed with numpy, SciPy and scikit-image: the reference the fused graph's in-graph rules are tested against.

``multiotsu_threshold``/``mask_from_heatmap`` are the paper's rule on one map; ``reference_rule``
computes every named rule of :data:`gpedge.graph.contract.MASK_RULES` from a slice's heatmaps and image.

The paper's rule: take the predicted class's heatmap, zero negative values, three-class multi-Otsu with 256 bins
over the map's own range, threshold = max(upper threshold - offset, 0), mask = map > threshold.
A map with fewer than three occupied histogram bins (constant or nearly so) has no multi-Otsu
split: its threshold is its maximum and its mask is empty. Neither the runtime nor the exporter
thresholds on the host (``gpedge.graph.mask`` does it in the graph), so this lives with the tests.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_multiotsu

from gpedge.graph.contract import HEAD_FRACTION, parse_mask_rule
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


def multiotsu_thresholds(score: np.ndarray) -> tuple[float, float] | None:
    """(lower, upper) multi-Otsu thresholds of a non-negative map, or None without a split."""
    try:
        lower, upper = threshold_multiotsu(np.asarray(score, np.float32), classes=CLASSES, nbins=BINS)
    except ValueError:
        return None
    return float(lower), float(upper)


def rule_threshold(score: np.ndarray, offset: float, threshold: str = "absolute") -> float:
    """Threshold of one rule map (negatives zeroed first): ``absolute`` = max(upper - offset, 0) (the paper's);
    ``relative``: upper - r (upper - lower) for r >= 0, upper - r (max - upper) for r < 0, clamped at 0.
    A map without a multi-Otsu split returns its maximum."""
    positive = np.maximum(np.asarray(score, dtype=np.float32), 0.0)
    split = multiotsu_thresholds(positive)
    if split is None:
        return float(positive.max())
    lower, upper = (np.float32(t) for t in split)
    p = np.float32(offset)
    if threshold == "absolute":
        value = upper - p
    else:
        value = upper - p * ((upper - lower) if p >= 0 else (np.float32(positive.max()) - upper))
    return float(max(value, np.float32(0.0)))


def head_region(image: np.ndarray, erosion: int) -> np.ndarray:
    """bool (H, W): any channel of the slice-max normalised (C, H, W) image above HEAD_FRACTION, eroded by a
    (2r+1) square (pixels beyond the border count as head)."""
    foreground = np.asarray(image, np.float32).max(axis=0) > np.float32(HEAD_FRACTION)
    return ndimage.minimum_filter(foreground.astype(np.uint8), size=2 * erosion + 1, mode="constant", cval=1).astype(bool)


def reference_rule(heatmaps: np.ndarray, label: int, image: np.ndarray, offset: float, rule: str,
                   empty_for_class: int | None, erosion: int) -> tuple[np.ndarray, float, np.ndarray]:
    """``(score, threshold, mask)`` of one slice by the named rule, from its (K, H, W) heatmaps and raw (C, H, W) image."""
    spec = parse_mask_rule(rule)
    maps = np.asarray(heatmaps, np.float32)
    chosen = maps[label]
    if spec.map == "contrast":
        if empty_for_class is not None:
            chosen = chosen - maps[empty_for_class]
        elif len(maps) > 1:
            chosen = chosen - (maps.sum(axis=0) - chosen) / np.float32(len(maps) - 1)
    score = np.maximum(chosen, np.float32(0.0))
    if spec.region == "head":
        raw = np.asarray(image, np.float32)
        peak = raw.max()
        score = score * head_region(raw / peak if peak > 0 else raw, erosion)
    threshold = rule_threshold(score, offset, spec.threshold)
    empty = empty_for_class is not None and label == empty_for_class
    return score, threshold, (score > np.float32(threshold)) & (not empty)
