"""The mask rule at the input's resolution: the graph's maps and threshold mapped to the input's geometry.

The graph computes the threshold at the model's resolution (:mod:`gpedge.graph.mask`); this is
its one host-side step, shared by everything that produces a mask at another resolution: the
runtime's ``Predictor`` (and so ``gpedge infer``, the offset sweep of ``gpedge evaluate`` and the
volume benchmark) and the Grad-CAM comparison.
"""
from __future__ import annotations

import cv2
import numpy as np


def resize_heatmaps(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(K, h, w) -> (K, H, W) float32, bilinear; a copy when the size already matches."""
    height, width = size
    maps = np.asarray(maps, dtype=np.float32)
    if maps.shape[-2:] == (height, width):
        return maps.copy()
    stacked = np.ascontiguousarray(maps.transpose(1, 2, 0))
    resized = cv2.resize(stacked, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(resized.reshape(height, width, -1).transpose(2, 0, 1))


def to_input_resolution(
    heatmaps: np.ndarray, label: int, threshold: float, graph_mask: np.ndarray, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """The graph's outputs for one slice at the input's resolution ``size`` = (H, W).

    ``heatmaps`` (K, h, w), ``label``, ``threshold`` and ``graph_mask`` (h, w) are what the graph
    returned for the slice. Returns the heatmaps resized bilinearly to (K, H, W) and the bool
    (H, W) mask: the predicted class's resized map above the graph's threshold, and empty
    wherever the graph's own mask is empty (the no-tumour class, a map without a multi-Otsu
    split). At the model's resolution both are the graph's outputs unchanged.
    """
    maps = resize_heatmaps(heatmaps, size)
    if not np.any(graph_mask):
        return maps, np.zeros(size, dtype=bool)
    return maps, maps[int(label)] > np.float32(threshold)
