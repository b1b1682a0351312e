"""The mask rule at the input's resolution: the graph's outputs mapped to the input's geometry, then
the optional clean-up.

The graph computes the rule's map (``score``), threshold and mask at the model's resolution
(:mod:`gpedge.graph.mask`); this is its one host-side step, shared by everything that produces
a mask at another resolution: the runtime's ``Predictor`` (and so ``gpedge infer``, the rule
sweep of ``gpedge evaluate`` and the volume benchmark) and the Grad-CAM comparison.
"""
from __future__ import annotations

import cv2
import numpy as np
from skimage import morphology
from skimage.measure import label as label_components

from gpedge.graph.contract import CLEAN_UP


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
    heatmaps: np.ndarray, score: np.ndarray, threshold: float, graph_mask: np.ndarray, size: tuple[int, int],
    clean: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """The graph's outputs for one slice at the input's resolution ``size`` = (H, W).

    ``heatmaps`` (K, h, w), ``score`` (h, w), ``threshold`` and ``graph_mask`` (h, w) are what
    the graph returned for the slice. Returns the heatmaps resized bilinearly to (K, H, W) and
    the bool (H, W) mask: the rule's map ``score`` resized bilinearly, above the graph's
    threshold, and empty wherever the graph's own mask is empty (the no-tumour class, a map
    without a multi-Otsu split); then :func:`clean_up` when ``clean`` (rules named ``...+clean``).
    At the model's resolution and without clean-up both are the graph's outputs unchanged.
    """
    maps = resize_heatmaps(heatmaps, size)
    if not np.any(graph_mask):
        return maps, np.zeros(size, dtype=bool)
    mask = resize_heatmaps(np.asarray(score)[None], size)[0] > np.float32(threshold)
    return maps, clean_up(mask) if clean else mask


def clean_up(
    mask: np.ndarray,
    min_object: int = CLEAN_UP["min_object"],
    max_hole: int = CLEAN_UP["max_hole"],
    closing_radius: int = CLEAN_UP["closing_radius"],
    largest_component: bool = CLEAN_UP["largest_component"],
) -> np.ndarray:
    """The paper's clean-up of a bool (H, W) mask at the input's resolution: drop objects under
    ``min_object`` px, fill holes under ``max_hole`` px, binary closing with a disk of
    ``closing_radius``, keep the largest component (8-connected). A step is skipped when its
    size parameter is 0. Returns bool (H, W).
    """
    binary = np.asarray(mask).astype(bool)
    if binary.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {binary.shape}")
    if not binary.any():
        return binary
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
    return binary
