"""Image preprocessing shared by training, export parity checks and the runtime (numpy + OpenCV only).

Order everywhere: raw slice -> ``resize_image`` to the model size -> ``normalise_slice_max``.
The fused ONNX graph repeats the normalisation itself, so the runtime only resizes; the
normalisation is idempotent on already normalised data.
"""
from __future__ import annotations

import cv2
import numpy as np


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a (C, H, W) or (H, W) float array to ``size`` = (height, width).

    Area interpolation when shrinking (no aliasing), bilinear when enlarging.
    """
    height, width = size
    arr = np.asarray(image, dtype=np.float32)
    if arr.shape[-2:] == (height, width):
        return arr.copy()
    shrink = arr.shape[-2] * arr.shape[-1] > height * width
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    if arr.ndim == 2:
        return cv2.resize(arr, (width, height), interpolation=interp)
    return np.stack([cv2.resize(c, (width, height), interpolation=interp) for c in arr])


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a (H, W) label mask with nearest-neighbour interpolation."""
    height, width = size
    arr = np.ascontiguousarray(mask, dtype=np.uint8)
    if arr.shape == (height, width):
        return arr.copy()
    return cv2.resize(arr, (width, height), interpolation=cv2.INTER_NEAREST)


def normalise_slice_max(image: np.ndarray) -> np.ndarray:
    """Divide a (C, H, W) slice (or (N, C, H, W) batch) by its own maximum over all channels.

    This is the reference normalisation: one joint maximum per slice, not per channel.
    Slices whose maximum is not positive are returned unchanged.
    """
    arr = np.asarray(image, dtype=np.float32)
    axes = tuple(range(arr.ndim - 3, arr.ndim))
    peak = arr.max(axis=axes, keepdims=True)
    return arr / np.where(peak > 0, peak, 1.0).astype(np.float32)
