"""The host-side last steps of the mask rules (numpy + OpenCV): the paper's clean-up (``...+clean``),
the map peak's connected region (``...+peak``), the image-guided map (``...+guided``) and its growth (``...+grow``).

The mask rule itself runs inside the fused graph (:mod:`gpedge.graph.mask`);
:mod:`gpedge.runtime.maps` maps its result to the input's resolution and, for rules named
``...+clean``, applies :func:`clean_mask` there with :data:`gpedge.graph.contract.CLEAN_UP`; for
``...+peak``, :func:`peak_component`; for ``...+guided``, :func:`guided_filter` of the map with the image as guide,
and for ``...+grow`` then :func:`hysteresis`. ``tests/test_postprocess.py`` holds the clean-up, the peak's region
and the hysteresis to scikit-image's morphology, labelling and hysteresis, which they replace, and the guided
filter to its definition computed window by window.
"""
from __future__ import annotations

import cv2
import numpy as np


def _components(binary: np.ndarray, connectivity: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels (0 = outside) and pixel counts of the 4- or 8-connected components of ``binary``."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(binary.astype(np.uint8), connectivity=connectivity)
    sizes = stats[:, cv2.CC_STAT_AREA].copy()
    sizes[0] = 0
    return labels, sizes


def _drop_small(binary: np.ndarray, min_size: int) -> np.ndarray:
    """``binary`` without its 4-connected components of fewer than ``min_size`` pixels."""
    labels, sizes = _components(binary, 4)
    return binary & (sizes >= min_size)[labels]


def _disk(radius: int) -> np.ndarray:
    """uint8 (2r+1, 2r+1) structuring element of the pixels within ``radius`` of the centre."""
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return (yy**2 + xx**2 <= radius**2).astype(np.uint8)


def clean_mask(
    mask: np.ndarray,
    min_object: int = 64,
    max_hole: int = 128,
    closing_radius: int = 2,
    largest_component: bool = True,
) -> np.ndarray:
    """Paper clean-up of a (H, W) mask: drop objects under ``min_object`` px, fill holes under
    ``max_hole`` px (4-connectivity), binary closing with a disk of ``closing_radius`` (pixels
    beyond the border ignored), keep the largest 8-connected component.

    Returns uint8 (H, W). A step is skipped when its size parameter is 0.
    """
    binary = np.asarray(mask).astype(bool)
    if binary.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {binary.shape}")
    if min_object > 0:
        binary = _drop_small(binary, min_object)
    if max_hole > 0:
        binary = ~_drop_small(~binary, max_hole)
    if closing_radius > 0:
        binary = cv2.morphologyEx(binary.astype(np.uint8), cv2.MORPH_CLOSE, _disk(closing_radius)).astype(bool)
    if largest_component and binary.any():
        labels, sizes = _components(binary, 8)
        binary = labels == int(np.argmax(sizes))
    return binary.astype(np.uint8)


def peak_component(mask: np.ndarray, score: np.ndarray, connectivity: int = 8) -> np.ndarray:
    """The connected component of the (H, W) ``mask`` that holds the highest value of ``score`` (H, W) inside it.

    A lesion is one region around the map's strongest response; responses elsewhere that cross the
    same threshold (bright scalp, white matter) are dropped. Returns bool (H, W); empty for an empty mask.
    """
    binary = np.asarray(mask).astype(bool)
    score = np.asarray(score, dtype=np.float32)
    if binary.ndim != 2 or score.shape != binary.shape:
        raise ValueError(f"mask and score must be 2-D of one shape, got {binary.shape} and {score.shape}")
    if not binary.any():
        return binary
    labels, _ = _components(binary, connectivity)
    peak = np.unravel_index(int(np.argmax(np.where(binary, score, -np.inf))), binary.shape)
    return labels == labels[peak]


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He, Sun and Tang's guided filter with a grey guide: ``src`` (H, W) re-expressed, in every window of
    side 2 ``radius`` + 1, as the least-squares linear function a * ``guide`` + b (ridge ``eps`` on a), the
    coefficients averaged over the windows that hold each pixel (borders reflected).

    The output keeps ``src``'s scale and follows the guide's edges where the guide varies by more than
    about sqrt(``eps``) within a window; where the guide is flat it is ``src`` box-smoothed. Returns float32 (H, W).
    """
    guide = np.asarray(guide, dtype=np.float32)
    src = np.asarray(src, dtype=np.float32)
    if guide.ndim != 2 or guide.shape != src.shape:
        raise ValueError(f"guide and src must be 2-D of one shape, got {guide.shape} and {src.shape}")
    if radius < 1 or not eps > 0:
        raise ValueError(f"the guided filter needs radius >= 1 and eps > 0, got {radius} and {eps}")
    side = (2 * radius + 1, 2 * radius + 1)

    def mean(x: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(x, cv2.CV_32F, side, normalize=True, borderType=cv2.BORDER_REFLECT)

    mean_guide, mean_src = mean(guide), mean(src)
    a = (mean(guide * src) - mean_guide * mean_src) / (mean(guide * guide) - mean_guide * mean_guide + np.float32(eps))
    b = mean_src - a * mean_guide
    return mean(a) * guide + mean(b)


def hysteresis(score: np.ndarray, high: float, low: float, connectivity: int = 8) -> np.ndarray:
    """Hysteresis threshold of a (H, W) map: its ``connectivity``-connected regions above ``low`` that hold a pixel
    above ``high``. Returns bool (H, W)."""
    score = np.asarray(score, dtype=np.float32)
    if score.ndim != 2:
        raise ValueError(f"score must be 2-D (H, W), got shape {score.shape}")
    strong = score > np.float32(high)
    if not strong.any():
        return strong
    labels, _ = _components(score > np.float32(low), connectivity)
    kept = np.zeros(int(labels.max()) + 1, dtype=bool)
    kept[labels[strong]] = True
    kept[0] = False
    return kept[labels]
