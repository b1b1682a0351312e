"""The mask rule at the input's resolution: the graph's outputs mapped to the input's geometry, then
the rule's optional host-side step (clean-up, the peak's region, the image-guided map or its growth).

The graph computes the rule's map (``score``), threshold and mask at the model's resolution
(:mod:`gpedge.graph.mask`); this is its one host-side step, shared by everything that produces
a mask at another resolution: the runtime's ``Predictor`` (and so ``gpedge infer``, the rule
sweep of ``gpedge evaluate`` and the volume benchmark) and the Grad-CAM comparison.
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from gpedge.graph.contract import CLEAN_UP, GROW, GUIDED, PEAK_COMPONENT
from gpedge.postprocess import clean_mask, guided_filter, hysteresis, peak_component
from gpedge.preprocess import letterbox


def resize_heatmaps(maps: np.ndarray, size: tuple[int, int], pixel_aspect: float = 1.0) -> np.ndarray:
    """(K, h, w) maps of a slice that :func:`gpedge.preprocess.fit_image` fitted to (h, w) -> (K, H, W)
    float32 on the slice's own pixels: the slice's :func:`~gpedge.preprocess.letterbox` region of the maps,
    resized bilinearly; a copy when the size already matches."""
    height, width = size
    maps = np.asarray(maps, dtype=np.float32)
    if maps.shape[-2:] == (height, width) and pixel_aspect == 1.0:
        return maps.copy()
    box = letterbox((height, width), maps.shape[-2:], pixel_aspect)
    region = maps[:, box.top : box.top + box.height, box.left : box.left + box.width]
    stacked = np.ascontiguousarray(region.transpose(1, 2, 0))
    resized = cv2.resize(stacked, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(resized.reshape(height, width, -1).transpose(2, 0, 1))


def guide_image(image: np.ndarray, channels: Sequence[str]) -> np.ndarray:
    """The ``+guided`` step's guide for one (C, H, W) slice in scanner units whose channels are ``channels``:
    the FLAIR channel when there is one, else the mean of the channels, each divided by its
    :data:`~gpedge.graph.contract.GUIDED` percentile of positive values and clipped to [0, 1]. float32 (H, W)."""
    image = np.asarray(image, dtype=np.float32)
    names = [str(c).lower() for c in channels]
    picked = image[[names.index(GUIDED["guide"])]] if GUIDED["guide"] in names else image
    out = np.zeros(image.shape[-2:], dtype=np.float32)
    for channel in picked:
        positive = channel[channel > 0]
        scale = float(np.percentile(positive, GUIDED["percentile"])) if positive.size else 0.0
        if scale > 0:
            out += np.clip(channel / np.float32(scale), 0.0, 1.0)
    return out / np.float32(len(picked))


def _frame(size: tuple[int, int], model_size: tuple[int, int], pixel_aspect: float) -> tuple[float, float]:
    """The model's frame (letterbox included) in the input's pixels."""
    box = letterbox(size, model_size, pixel_aspect)
    return model_size[0] * size[0] / box.height, model_size[1] * size[1] / box.width


def guided_map(
    resized: np.ndarray, model_size: tuple[int, int], image: np.ndarray | None, channels: Sequence[str],
    pixel_aspect: float = 1.0,
) -> np.ndarray:
    """The ``+guided`` step's map: ``resized``, the rule's map already at the input's resolution (H, W), refined by
    :func:`gpedge.postprocess.guided_filter` with :func:`guide_image` of ``image`` (the input slice, (C, H, W), whose
    channels are ``channels``) and :data:`~gpedge.graph.contract.GUIDED`'s window (a share of the smaller side of the
    model's frame of ``model_size`` in the input's pixels). float32 (H, W)."""
    size = np.shape(resized)
    if image is None or np.shape(image)[-2:] != tuple(size):
        raise ValueError(f"the +guided and +grow steps need the input slice (C, {size[0]}, {size[1]}) as their guide")
    radius = max(1, round(GUIDED["radius_fraction"] * min(_frame(size, model_size, pixel_aspect))))
    return guided_filter(guide_image(image, channels), resized, radius, GUIDED["eps"])


def to_input_resolution(
    heatmaps: np.ndarray, score: np.ndarray, threshold: float, graph_mask: np.ndarray, size: tuple[int, int],
    post: str = "", image: np.ndarray | None = None, channels: Sequence[str] = (), pixel_aspect: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """The graph's outputs for one slice at the input's resolution ``size`` = (H, W).

    ``heatmaps`` (K, h, w), ``score`` (h, w), ``threshold`` and ``graph_mask`` (h, w) are what
    the graph returned for the slice (fitted by :func:`gpedge.preprocess.fit_image` with ``pixel_aspect``, its
    pixels' width over their height). Returns the heatmaps mapped back by :func:`resize_heatmaps` to
    (K, H, W) and the bool (H, W) mask: the rule's map ``score`` mapped back the same way, above the graph's
    threshold, and empty wherever the graph's own mask is empty (the no-tumour class, a map
    without a multi-Otsu split); then the rule's ``post`` step: ``"clean"`` (rules named
    ``...+clean``) :func:`gpedge.postprocess.clean_mask` with :data:`gpedge.graph.contract.CLEAN_UP`,
    ``"peak"`` (``...+peak``) :func:`gpedge.postprocess.peak_component` of the resized map;
    ``"guided"`` (``...+guided``) the resized map refined by :func:`guided_map` with ``image``, the input slice
    (C, H, W) whose channels are ``channels``, before the threshold (the guide is only computed for a slice with a
    mask); ``"grow"`` (``...+grow``) that mask grown by
    :func:`gpedge.postprocess.hysteresis` of the guided map down to :data:`gpedge.graph.contract.GROW`'s fraction
    of the threshold.
    At the model's resolution and without a step both are the graph's outputs unchanged.
    """
    maps = resize_heatmaps(heatmaps, size, pixel_aspect)
    if not np.any(graph_mask):
        return maps, np.zeros(size, dtype=bool)
    resized = resize_heatmaps(np.asarray(score)[None], size, pixel_aspect)[0]
    if post in ("guided", "grow"):
        guided = guided_map(resized, np.shape(score), image, channels, pixel_aspect)
        if post == "grow":
            low = np.float32(threshold) * np.float32(GROW["fraction"])
            return maps, hysteresis(guided, threshold, low, GROW["connectivity"])
        return maps, guided > np.float32(threshold)
    mask = resized > np.float32(threshold)
    if post == "clean":
        return maps, clean_mask(mask, **CLEAN_UP).astype(bool)
    if post == "peak":
        return maps, peak_component(mask, resized, **PEAK_COMPONENT)
    if post:
        raise ValueError(f"unknown host-side mask step {post!r}")
    return maps, mask

