"""The mask rule at the input's resolution: the graph's outputs mapped to the input's geometry, then
the rule's optional host-side step (clean-up or the peak's region).

The graph computes the rule's map (``score``), threshold and mask at the model's resolution
(:mod:`gpedge.graph.mask`); this is its one host-side step, shared by everything that produces
a mask at another resolution: the runtime's ``Predictor`` (and so ``gpedge infer``, the rule
sweep of ``gpedge evaluate`` and the volume benchmark) and the Grad-CAM comparison.
"""
from __future__ import annotations

import cv2
import numpy as np
from gpedge.graph.contract import CLEAN_UP, PEAK_COMPONENT
from gpedge.postprocess import clean_mask, peak_component


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
    post: str = "",
) -> tuple[np.ndarray, np.ndarray]:
    """The graph's outputs for one slice at the input's resolution ``size`` = (H, W).

    ``heatmaps`` (K, h, w), ``score`` (h, w), ``threshold`` and ``graph_mask`` (h, w) are what
    the graph returned for the slice. Returns the heatmaps resized bilinearly to (K, H, W) and
    the bool (H, W) mask: the rule's map ``score`` resized bilinearly, above the graph's
    threshold, and empty wherever the graph's own mask is empty (the no-tumour class, a map
    without a multi-Otsu split); then the rule's ``post`` step: ``"clean"`` (rules named
    ``...+clean``) :func:`gpedge.postprocess.clean_mask` with :data:`gpedge.graph.contract.CLEAN_UP`,
    ``"peak"`` (``...+peak``) :func:`gpedge.postprocess.peak_component` of the resized map.
    At the model's resolution and without a step both are the graph's outputs unchanged.
    """
    maps = resize_heatmaps(heatmaps, size)
    if not np.any(graph_mask):
        return maps, np.zeros(size, dtype=bool)
    resized = resize_heatmaps(np.asarray(score)[None], size)[0]
    mask = resized > np.float32(threshold)
    if post == "clean":
        return maps, clean_mask(mask, **CLEAN_UP).astype(bool)
    if post == "peak":
        return maps, peak_component(mask, resized, **PEAK_COMPONENT)
    if post:
        raise ValueError(f"unknown host-side mask step {post!r}")
    return maps, mask

