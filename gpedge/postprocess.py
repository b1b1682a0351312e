"""The mask rules computed on the host with numpy, SciPy and scikit-image: the tests' reference (no torch).

The runtime never thresholds on the host: the rules run inside the fused graph
(:mod:`gpedge.graph.mask`) and :mod:`gpedge.runtime.maps` maps their result to the input's
resolution. This module computes the same rules independently, which the tests hold the graph
to: the rule's map (the predicted class's heatmap, or that map minus the no-tumour class's),
negative values zeroed, zeroed outside the eroded head foreground for ``head`` rules;
three-class multi-Otsu with 256 bins over the map's own range gives the lower and upper
thresholds; threshold = max(upper - offset, 0) (``paper``) or the relative threshold of
:class:`gpedge.graph.contract.MaskRule`; mask = map > threshold. A map with fewer than three
occupied histogram bins (constant or nearly so) has no multi-Otsu split: its threshold is its
maximum and its mask is empty.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_multiotsu

from gpedge.graph.contract import HEAD_FRACTION, parse_mask_rule
from gpedge.graph.contract import MASK_BINS as BINS
from gpedge.graph.contract import MASK_CLASSES as CLASSES


def multiotsu_thresholds(score: np.ndarray) -> tuple[float, float] | None:
    """(lower, upper) multi-Otsu thresholds of a non-negative map, or None without a split."""
    try:
        lower, upper = threshold_multiotsu(np.asarray(score, np.float32), classes=CLASSES, nbins=BINS)
    except ValueError:
        return None
    return float(lower), float(upper)


def rule_threshold(score: np.ndarray, offset: float, threshold: str = "absolute") -> float:
    """Threshold of one rule map ``score`` (negatives zeroed first) for an ``absolute`` or ``relative`` rule."""
    positive = np.maximum(np.asarray(score, dtype=np.float32), 0.0)
    if positive.ndim != 2:
        raise ValueError(f"heatmap must be 2-D (H, W), got shape {positive.shape}")
    if not np.isfinite(positive).all():
        raise ValueError("heatmap contains NaN or infinite values")
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
    """bool (H, W) head foreground of a slice-max normalised (C, H, W) image, eroded by a (2r+1) square."""
    foreground = np.asarray(image, np.float32).max(axis=0) > np.float32(HEAD_FRACTION)
    return ndimage.minimum_filter(foreground.astype(np.uint8), size=2 * erosion + 1, mode="constant", cval=1).astype(bool)


def rule_map(heatmaps: np.ndarray, label: int, image: np.ndarray, rule: str, empty_for_class: int | None,
             erosion: int) -> np.ndarray:
    """The (H, W) map ``rule`` thresholds, from (K, H, W) heatmaps and the normalised (C, H, W) image."""
    spec = parse_mask_rule(rule)
    maps = np.asarray(heatmaps, np.float32)
    chosen = maps[label]
    if spec.map == "contrast":
        if empty_for_class is not None:
            reference = maps[empty_for_class]
        elif len(maps) > 1:
            reference = (maps.sum(axis=0) - chosen) / np.float32(len(maps) - 1)
        else:
            reference = np.zeros_like(chosen)
        chosen = chosen - reference
    score = np.maximum(chosen, np.float32(0.0))
    if spec.region == "head":
        score = score * head_region(image, erosion)
    return score


def reference_rule(heatmaps: np.ndarray, label: int, image: np.ndarray, offset: float, rule: str,
                   empty_for_class: int | None, erosion: int) -> tuple[np.ndarray, float, np.ndarray]:
    """``(score, threshold, mask)`` of one slice by the named rule, as the graph computes them."""
    score = rule_map(heatmaps, label, image, rule, empty_for_class, erosion)
    threshold = rule_threshold(score, offset, parse_mask_rule(rule).threshold)
    empty = empty_for_class is not None and label == empty_for_class
    return score, threshold, (score > np.float32(threshold)) & (not empty)


def multiotsu_threshold(heatmap: np.ndarray, offset: float = 0.5) -> float:
    """The paper's threshold of one (H, W) heatmap: max(upper multi-Otsu threshold - offset, 0).

    Negative values are zeroed first. A degenerate map (fewer than three occupied bins) returns
    its maximum, so that ``heatmap > threshold`` is empty.
    """
    return rule_threshold(heatmap, offset, "absolute")


def mask_from_heatmap(heatmap: np.ndarray, offset: float = 0.5, empty: bool = False) -> np.ndarray:
    """uint8 (H, W) mask of one heatmap by the paper's rule; all zeros when ``empty`` (no-tumour class)."""
    positive = np.maximum(np.asarray(heatmap, dtype=np.float32), 0.0)
    if empty:
        return np.zeros(positive.shape, np.uint8)
    return (positive > np.float32(multiotsu_threshold(positive, offset))).astype(np.uint8)
