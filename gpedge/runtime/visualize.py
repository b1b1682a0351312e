"""Rendering of results for screens: windowed scan, heatmap colour map, mask outline, label text.

Everything is composed at the display size in uint8 with OpenCV (a few milliseconds per overlay);
the display size is bounded (:data:`MIN_DISPLAY_SIDE`, :data:`MAX_DISPLAY_SIDE`) whatever the
input's size or aspect ratio.
"""
from __future__ import annotations

from collections.abc import Mapping

import cv2
import numpy as np

#: Small overlays are upscaled until their shorter side reaches this many pixels ...
MIN_DISPLAY_SIDE = 512
#: ... and no side of an overlay exceeds this many pixels (large or elongated inputs are shrunk).
MAX_DISPLAY_SIDE = 2048
OUTLINE_RGB = (0, 255, 255)
_COLORMAP = cv2.COLORMAP_INFERNO
#: Percentiles of the window are estimated on at most this many pixels.
_WINDOW_SAMPLE = 1 << 18
#: Heatmap opacity by its level (0..255 of its peak): invisible below a fifth, 0.65 from three fifths up.
_ALPHA = (0.65 * np.clip((np.arange(256, dtype=np.float32) / 255.0 - 0.2) / 0.4, 0.0, 1.0)).astype(np.float32)


def window_limits(image: np.ndarray, low_pct: float = 1.0, high_pct: float = 99.0) -> tuple[float, float]:
    """The [low, high] percentiles of the non-zero pixels (of all pixels if none), from a subsample of large images."""
    arr = np.asarray(image, dtype=np.float32)
    step = max(1, int(np.ceil(np.sqrt(arr.size / _WINDOW_SAMPLE))))
    sample = arr[::step, ::step]
    body = sample[sample != 0]
    low, high = np.percentile(body if body.size else sample, (low_pct, high_pct))
    return float(low), float(high) if high > low else float(low) + 1.0


def heatmap_rgb(heatmap: np.ndarray) -> np.ndarray:
    """(H, W) heatmap -> RGB uint8 colour map of its positive part, scaled to its maximum."""
    return cv2.cvtColor(cv2.applyColorMap(_levels(heatmap), _COLORMAP), cv2.COLOR_BGR2RGB)


def _levels(heatmap: np.ndarray) -> np.ndarray:
    """uint8 levels of the positive part of a heatmap, 255 at its peak (zeros if it has none)."""
    arr = np.asarray(heatmap, dtype=np.float32)
    peak = float(arr.max()) if arr.size else 0.0
    if not peak > 0:
        return np.zeros(arr.shape, np.uint8)
    return cv2.convertScaleAbs(np.maximum(arr, 0.0), alpha=255.0 / peak, beta=0.5)


def display_size(shape: tuple[int, int]) -> tuple[int, int]:
    """(width, height) of the overlay of an image of ``shape`` = (H, W): upscaled until the shorter side
    reaches ``MIN_DISPLAY_SIDE``, but no side beyond ``MAX_DISPLAY_SIDE`` (aspect ratio kept, at least 1 px)."""
    height, width = max(1, int(shape[0])), max(1, int(shape[1]))
    scale = max(1.0, MIN_DISPLAY_SIDE / min(height, width))
    scale = min(scale, MAX_DISPLAY_SIDE / max(height, width))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _resize(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if arr.shape[1] == size[0] and arr.shape[0] == size[1]:
        return arr
    shrink = size[0] * size[1] < arr.shape[0] * arr.shape[1]
    return cv2.resize(arr, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def overlay(
    image: np.ndarray,
    heatmap: np.ndarray | None,
    mask: np.ndarray,
    title: str,
    probabilities: Mapping[str, float],
    note: str | None = None,
) -> np.ndarray:
    """RGB uint8 overlay: the windowed scan in grey, the positive heatmap as a semi-transparent
    colour map (opacity rising with the value, invisible below a fifth of its peak), the mask
    outline in cyan, and a banner with the title and the class probabilities (or ``note``).

    The size is :func:`display_size`; the outline is the mask's own, smoothed by the resize (the
    heatmap is never re-thresholded for display).
    """
    arr = np.asarray(image, dtype=np.float32)
    size = display_size(arr.shape[-2:])
    low, high = window_limits(arr)
    grey = cv2.convertScaleAbs(np.maximum(_resize(arr, size) - low, 0.0), alpha=255.0 / (high - low), beta=0.5)
    canvas = cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)
    if heatmap is not None:
        levels = _levels(_resize(np.asarray(heatmap, np.float32), size))
        if levels.any():
            colour = cv2.cvtColor(cv2.applyColorMap(levels, _COLORMAP), cv2.COLOR_BGR2RGB)
            alpha = _ALPHA[levels]
            canvas = cv2.blendLinear(canvas, colour, 1.0 - alpha, alpha)
    outline = _resize(np.asarray(mask, np.uint8) * np.uint8(255), size) >= 128
    if outline.any():
        contours, _ = cv2.findContours(outline.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        thickness = max(2, min(size) // 256)
        cv2.drawContours(canvas, contours, -1, OUTLINE_RGB, thickness, lineType=cv2.LINE_AA)
    return _banner(canvas, title, probabilities, note)


def _banner(canvas: np.ndarray, title: str, probabilities: Mapping[str, float], note: str | None) -> np.ndarray:
    """Prepend a dark banner with the title (large) and every class probability or the note (small)."""
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
    detail = note if note is not None else "   ".join(f"{name} {p:.2f}" for name, p in probabilities.items())
    cv2.putText(banner, detail, (pad, 2 * pad + h_big + h_small), font, small, (200, 200, 200), 1, cv2.LINE_AA)
    return np.concatenate([banner, canvas], axis=0)
