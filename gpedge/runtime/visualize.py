"""Rendering of results for screens: windowed scan, heatmap colour map, mask outline, label text."""
from __future__ import annotations

from collections.abc import Mapping

import cv2
import numpy as np

#: Overlays are upscaled (integer factor) until their shorter side reaches this many pixels.
MIN_DISPLAY_SIDE = 512
OUTLINE_RGB = (0, 255, 255)
_COLORMAP = cv2.COLORMAP_INFERNO


def window(image: np.ndarray, low_pct: float = 1.0, high_pct: float = 99.0) -> np.ndarray:
    """(H, W) intensities -> uint8 grey, windowed to the [low, high] percentiles of the non-zero pixels."""
    arr = np.asarray(image, dtype=np.float32)
    body = arr[arr != 0]
    low, high = np.percentile(body if body.size else arr, (low_pct, high_pct))
    if high <= low:
        high = low + 1.0
    return (np.clip((arr - low) / (high - low), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def heatmap_rgb(heatmap: np.ndarray) -> np.ndarray:
    """(H, W) heatmap -> RGB uint8 colour map of its positive part, scaled to its maximum."""
    positive = np.maximum(np.asarray(heatmap, dtype=np.float32), 0.0)
    peak = float(positive.max())
    scaled = (positive / peak * 255.0 + 0.5).astype(np.uint8) if peak > 0 else np.zeros(positive.shape, np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(scaled, _COLORMAP), cv2.COLOR_BGR2RGB)


def _scale_factor(shape: tuple[int, int]) -> int:
    return max(1, int(np.ceil(MIN_DISPLAY_SIDE / max(1, min(shape)))))


def overlay(
    image: np.ndarray,
    heatmap: np.ndarray | None,
    mask: np.ndarray,
    title: str,
    probabilities: Mapping[str, float],
) -> np.ndarray:
    """RGB uint8 overlay: the windowed scan in grey, the positive heatmap as a semi-transparent
    colour map (opacity rising with the value, invisible below a fifth of its peak), the mask
    outline in cyan, and a banner with the label and the class probabilities.

    Small images are upscaled by an integer factor to at least ``MIN_DISPLAY_SIDE`` pixels; the
    outline is the mask's own, smoothed by bilinear upscaling (the heatmap is never re-thresholded for display).
    """
    height, width = np.asarray(image).shape[-2:]
    factor = _scale_factor((height, width))
    size = (width * factor, height * factor)
    grey = cv2.resize(window(image), size, interpolation=cv2.INTER_CUBIC)
    canvas = cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB).astype(np.float32)
    if heatmap is not None:
        heat = cv2.resize(np.maximum(np.asarray(heatmap, np.float32), 0.0), size, interpolation=cv2.INTER_LINEAR)
        peak = float(heat.max())
        if peak > 0:
            level = heat / peak
            alpha = (0.65 * np.clip((level - 0.2) / 0.4, 0.0, 1.0))[..., None]
            canvas = canvas * (1.0 - alpha) + heatmap_rgb(heat).astype(np.float32) * alpha
    canvas = canvas.clip(0, 255).astype(np.uint8)
    smooth = cv2.resize(np.asarray(mask, np.float32), size, interpolation=cv2.INTER_LINEAR) >= 0.5
    contours, _ = cv2.findContours(smooth.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    thickness = max(2, factor // 2 + 1, min(size) // 256)
    cv2.drawContours(canvas, contours, -1, OUTLINE_RGB, thickness, lineType=cv2.LINE_AA)
    return _banner(canvas, title, probabilities)


def _banner(canvas: np.ndarray, title: str, probabilities: Mapping[str, float]) -> np.ndarray:
    """Prepend a dark banner with the label (large) and every class probability (small)."""
    width = canvas.shape[1]
    font = cv2.FONT_HERSHEY_SIMPLEX
    big = max(0.6, width / 700)
    small = big * 0.6
    pad = int(12 * big)
    (_, h_big), _ = cv2.getTextSize(title, font, big, 2)
    (_, h_small), _ = cv2.getTextSize("Ag", font, small, 1)
    height = pad * 3 + h_big + h_small
    banner = np.full((height, width, 3), 24, np.uint8)
    cv2.putText(banner, title, (pad, pad + h_big), font, big, (255, 255, 255), max(1, int(2 * big)), cv2.LINE_AA)
    detail = "   ".join(f"{name} {p:.2f}" for name, p in probabilities.items())
    cv2.putText(banner, detail, (pad, 2 * pad + h_big + h_small), font, small, (200, 200, 200), 1, cv2.LINE_AA)
    return np.concatenate([banner, canvas], axis=0)
