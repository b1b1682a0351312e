"""Realistic synthetic MRI slices in scanner units, for export parity checks (numpy + scipy only).

Each slice is a head (skull ring, brain tissue with smooth texture, ventricles) with, for the
tumour classes, an enhancing lesion whose contrast and size depend on the class. Intensities are
raw (hundreds to thousands, per-slice scanner gain), not normalised: the fused graph normalises.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class SyntheticSlices:
    """A batch of synthetic slices."""

    images: np.ndarray
    """float32 (N, C, H, W), raw intensities."""
    labels: np.ndarray
    """int64 (N,): 0 no tumour, 1..K-1 tumour classes."""
    masks: np.ndarray
    """uint8 (N, H, W) lesion ground truth."""


def synthetic_slices(n: int, channels: int = 1, size: int = 64, num_classes: int = 3, seed: int = 0) -> SyntheticSlices:
    """Make ``n`` slices with labels cycling over ``num_classes`` (class 0 has no lesion)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    images = np.empty((n, channels, size, size), np.float32)
    masks = np.zeros((n, size, size), np.uint8)
    labels = np.arange(n, dtype=np.int64) % num_classes
    for i in range(n):
        ry, rx = rng.uniform(0.33, 0.44, 2)
        cy, cx = rng.uniform(-0.03, 0.03, 2)
        radius = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
        head = radius < 1.0
        brain = radius < 0.8
        skull = head & ~brain
        texture = ndimage.gaussian_filter(rng.normal(size=(size, size)), size / 20)
        texture /= np.abs(texture).max() + 1e-6
        ventricles = ((yy - cy) / (0.12 * ry / 0.4)) ** 2 + ((np.abs(xx - cx) - 0.05) / 0.05) ** 2 < 1.0
        lesion = np.zeros((size, size), bool)
        if labels[i]:
            ly, lx = rng.uniform(-0.18, 0.18, 2)
            lr = rng.uniform(0.06, 0.12) * (1.0 + 0.4 * (labels[i] - 1))
            lesion = (((yy - ly) ** 2 + (xx - lx) ** 2) < lr**2) & brain
            masks[i] = lesion
        gain = rng.uniform(300.0, 3000.0)
        for c in range(channels):
            contrast = rng.uniform(0.8, 1.2)
            tissue = np.where(brain, 0.55 + 0.12 * texture * contrast, 0.0)
            tissue = np.where(skull, 0.9, tissue)
            tissue = np.where(ventricles & brain, 0.2, tissue)
            tissue = np.where(lesion, 0.85 + 0.25 * labels[i] / num_classes, tissue)
            tissue = ndimage.gaussian_filter(tissue, 0.8)
            noise = rng.normal(scale=0.02, size=tissue.shape)
            images[i, c] = np.abs(tissue + noise) * gain * (head | (tissue > 0.05))
    return SyntheticSlices(images=images, labels=labels, masks=masks)
