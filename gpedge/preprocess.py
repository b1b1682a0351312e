"""Image preprocessing shared by training, export parity checks and the runtime (numpy + OpenCV only).

Order everywhere: raw slice -> ``fit_image`` to the model size -> ``normalise_slice_max``.
``fit_image`` keeps the anatomy's proportions: a slice of another aspect ratio than the model's
(a rectangular field of view, an MNI slice) or with non-square pixels (an axial reslice of a sagittal
3-D acquisition) is resized into the model's frame with its physical proportions and zero-padded
around, centred (:func:`letterbox`), and ``gpedge.runtime.maps`` crops exactly that region when it
maps the model's outputs back. The fused ONNX graph repeats the normalisation itself, so the runtime only
fits; the normalisation is idempotent on already normalised data.
"""
from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np


class Letterbox(NamedTuple):
    """Where a slice lies in the model's frame once fitted: its top-left corner and size, in model pixels."""

    top: int
    left: int
    height: int
    width: int


def letterbox(shape: tuple[int, int], size: tuple[int, int], pixel_aspect: float = 1.0) -> Letterbox:
    """The place of an (H, W) slice in the model's frame ``size`` = (height, width): scaled to fit inside
    it with its physical proportions (``pixel_aspect``: a pixel's width over its height, the column spacing
    over the row spacing; 1 for square pixels), centred; the rest of the frame is zero (MR background)."""
    rows, cols = float(shape[0]), float(shape[1]) * pixel_aspect
    height, width = size
    scale = min(height / rows, width / cols)
    inner = min(height, max(1, round(rows * scale))), min(width, max(1, round(cols * scale)))
    return Letterbox((height - inner[0]) // 2, (width - inner[1]) // 2, *inner)


def _fit(arr: np.ndarray, size: tuple[int, int], pixel_aspect: float, resize) -> np.ndarray:
    box = letterbox(arr.shape[-2:], size, pixel_aspect)
    inner = resize(arr, (box.height, box.width))
    if (box.height, box.width) == tuple(size):
        return inner
    out = np.zeros((*arr.shape[:-2], *size), dtype=inner.dtype)
    out[..., box.top : box.top + box.height, box.left : box.left + box.width] = inner
    return out


def fit_image(image: np.ndarray, size: tuple[int, int], pixel_aspect: float = 1.0) -> np.ndarray:
    """A (C, H, W) or (H, W) raw slice at the model's ``size`` = (height, width) without distortion:
    resized into the frame with its physical proportions and zero-padded around (:func:`letterbox`).
    A float32 slice that already fills the frame is returned as it is (not copied)."""
    return _fit(np.asarray(image, dtype=np.float32), size, pixel_aspect, _resized)


def _resized(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """:func:`resize_image`, but a float32 ``image`` that already has ``size`` is returned without a copy."""
    return image if image.shape[-2:] == tuple(size) else resize_image(image, size)


def fit_mask(mask: np.ndarray, size: tuple[int, int], pixel_aspect: float = 1.0) -> np.ndarray:
    """A (H, W) label mask fitted like :func:`fit_image` (nearest neighbour)."""
    return _fit(np.asarray(mask), size, pixel_aspect, resize_mask)


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a (C, H, W) or (H, W) float array to ``size`` = (height, width), whatever its aspect ratio
    (:func:`fit_image` keeps it).

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
