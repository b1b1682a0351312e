"""The tests' mask-rule reference (tests/mask_reference.py) against scikit-image's multi-Otsu, the
OpenCV mask steps (gpedge.postprocess) against the scikit-image morphology, labelling and hysteresis they replace,
and the guided filter against its definition computed window by window."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import morphology
from skimage.filters import apply_hysteresis_threshold, threshold_multiotsu
from skimage.measure import label as label_components

from gpedge.evaluate.metrics import dice_score
from gpedge.postprocess import clean_mask, guided_filter, hysteresis, peak_component
from mask_reference import mask_from_heatmap, multiotsu_threshold


def test_threshold_is_upper_multiotsu_minus_offset() -> None:
    rng = np.random.default_rng(0)
    heatmap = (rng.gamma(2.0, size=(48, 48)) * 2.0).astype(np.float32)
    upper = threshold_multiotsu(heatmap, classes=3, nbins=256)[-1]
    assert multiotsu_threshold(heatmap, offset=0.5) == pytest.approx(upper - 0.5, abs=1e-6)
    assert multiotsu_threshold(heatmap, offset=1e6) == 0.0
    mask = mask_from_heatmap(heatmap, offset=0.5)
    assert mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, (heatmap > np.float32(upper - 0.5)).astype(np.uint8))


def test_negative_values_are_zeroed_before_thresholding() -> None:
    rng = np.random.default_rng(1)
    heatmap = rng.normal(size=(32, 32)).astype(np.float32)
    expected = threshold_multiotsu(np.maximum(heatmap, 0), classes=3, nbins=256)[-1]
    assert multiotsu_threshold(heatmap, offset=0.0) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("heatmap", [np.full((16, 16), 3.0), -np.ones((16, 16)), np.eye(16) * 2.0])
def test_degenerate_maps_give_empty_masks(heatmap: np.ndarray) -> None:
    assert mask_from_heatmap(heatmap, offset=0.0).sum() == 0
    assert multiotsu_threshold(heatmap, offset=0.0) == pytest.approx(max(heatmap.max(), 0.0))


def test_empty_for_no_tumour_class() -> None:
    heatmap = np.random.default_rng(2).gamma(2.0, size=(16, 16)).astype(np.float32)
    assert mask_from_heatmap(heatmap, offset=0.0, empty=True).sum() == 0
    assert mask_from_heatmap(heatmap, offset=0.0).sum() > 0


def test_clean_mask_removes_specks_fills_holes_keeps_largest() -> None:
    mask = np.zeros((64, 64), np.uint8)
    mask[10:30, 10:30] = 1
    mask[18:21, 18:21] = 0  # small hole
    mask[40:52, 40:52] = 1  # second, smaller component (144 px)
    mask[2:4, 60:62] = 1  # speck
    cleaned = clean_mask(mask)
    assert cleaned.dtype == np.uint8
    assert cleaned[19, 19] == 1
    assert cleaned[45, 45] == 0 and cleaned[3, 61] == 0
    assert cleaned[10:30, 10:30].all()
    kept = clean_mask(mask, largest_component=False)
    assert kept[45, 45] == 1 and kept[3, 61] == 0


def test_clean_mask_rejects_wrong_rank() -> None:
    with pytest.raises(ValueError, match="2-D"):
        clean_mask(np.zeros((2, 8, 8)))


def _skimage_clean(mask, min_object, max_hole, closing_radius, largest_component) -> np.ndarray:
    """The clean-up as gpedge wrote it with scikit-image before the OpenCV port."""
    binary = np.asarray(mask).astype(bool)
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
    return binary.astype(np.uint8)


@pytest.mark.parametrize("seed", range(4))
def test_clean_mask_equals_scikit_image(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(50):
        height, width = rng.integers(16, 96, 2)
        smooth = cv2.GaussianBlur(rng.random((height, width)), (0, 0), rng.uniform(0.5, 4.0))
        mask = smooth > rng.uniform(0.3, 0.7)
        options = dict(min_object=int(rng.integers(0, 100)), max_hole=int(rng.integers(0, 200)),
                       closing_radius=int(rng.integers(0, 4)), largest_component=bool(rng.integers(0, 2)))
        np.testing.assert_array_equal(clean_mask(mask, **options), _skimage_clean(mask, **options), err_msg=str(options))


def test_peak_component_keeps_the_region_of_the_maps_maximum() -> None:
    mask = np.zeros((40, 40), bool)
    mask[2:30, 2:30] = True  # large region, lower map values
    mask[33:38, 33:38] = True  # small region holding the peak
    mask[30, 30] = mask[31, 31] = mask[32, 32] = True  # diagonal bridge: one 8-connected component, two 4-connected ones
    score = np.where(mask, 1.0, 0.0).astype(np.float32)
    score[35, 35] = 5.0
    score[0, 0] = 9.0  # outside the mask: never the peak
    kept = peak_component(mask, score)
    assert kept.dtype == bool and kept[35, 35] and kept[10, 10]
    np.testing.assert_array_equal(kept, label_components(mask, connectivity=2) == label_components(mask, connectivity=2)[35, 35])
    four = peak_component(mask, score, connectivity=4)
    assert four[35, 35] and not four[10, 10]
    np.testing.assert_array_equal(four, label_components(mask, connectivity=1) == label_components(mask, connectivity=1)[35, 35])
    assert not peak_component(np.zeros((4, 4), bool), score[:4, :4]).any()


def test_peak_component_matches_scikit_image_on_random_masks() -> None:
    rng = np.random.default_rng(5)
    for _ in range(20):
        score = cv2.GaussianBlur(rng.normal(size=(64, 48)).astype(np.float32), (0, 0), 2.0)
        mask = score > np.quantile(score, 0.8)
        labels = label_components(mask, connectivity=2)
        peak = np.unravel_index(int(np.argmax(np.where(mask, score, -np.inf))), mask.shape)
        np.testing.assert_array_equal(peak_component(mask, score), labels == labels[peak])


def test_hysteresis_matches_scikit_image_on_random_maps() -> None:
    """4-connected: scikit-image's hysteresis threshold; 8-connected: the 8-connected components above ``low`` that
    hold a pixel above ``high``; nothing above ``high``: empty."""
    rng = np.random.default_rng(9)
    for _ in range(20):
        score = cv2.GaussianBlur(rng.normal(size=(64, 48)).astype(np.float32), (0, 0), rng.uniform(1.0, 3.0))
        low, high = np.quantile(score, [rng.uniform(0.5, 0.8), rng.uniform(0.9, 0.99)])
        np.testing.assert_array_equal(hysteresis(score, high, low, connectivity=4),
                                      apply_hysteresis_threshold(score, low, high))
        labels = label_components(score > low, connectivity=2)
        expected = np.isin(labels, np.unique(labels[score > high])) & (labels > 0)
        eight = hysteresis(score, high, low)
        np.testing.assert_array_equal(eight, expected)
        assert eight.sum() > (score > high).sum()
    assert not hysteresis(score, score.max(), low).any()
    with pytest.raises(ValueError, match="2-D"):
        hysteresis(score[None], high, low)


def _guided_by_windows(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """The guided filter's definition, one window at a time (float64): in each window the ridge least-squares
    line src ~ a * guide + b; every pixel averages the (a, b) of the windows around it; borders mirrored."""
    pad = lambda x: np.pad(x.astype(np.float64), radius, mode="symmetric")  # noqa: E731 - OpenCV's BORDER_REFLECT
    height, width = src.shape
    side = 2 * radius + 1
    g, p = pad(guide), pad(src)
    a, b = np.zeros((height, width)), np.zeros((height, width))
    for y in range(height):
        for x in range(width):
            wg, wp = g[y:y + side, x:x + side], p[y:y + side, x:x + side]
            a[y, x] = ((wg * wp).mean() - wg.mean() * wp.mean()) / (wg.var() + eps)
            b[y, x] = wp.mean() - a[y, x] * wg.mean()
    pa, pb = pad(a), pad(b)
    mean_a = np.array([[pa[y:y + side, x:x + side].mean() for x in range(width)] for y in range(height)])
    mean_b = np.array([[pb[y:y + side, x:x + side].mean() for x in range(width)] for y in range(height)])
    return mean_a * guide + mean_b


def test_guided_filter_matches_its_definition() -> None:
    rng = np.random.default_rng(8)
    for radius, eps in ((1, 1e-3), (3, 1e-2), (5, 1e-4)):
        guide = rng.random((23, 17)).astype(np.float32)
        src = cv2.GaussianBlur(rng.normal(size=(23, 17)).astype(np.float32), (0, 0), 1.5)
        out = guided_filter(guide, src, radius, eps)
        assert out.dtype == np.float32 and out.shape == src.shape
        np.testing.assert_allclose(out, _guided_by_windows(guide, src, radius, eps), atol=2e-4)
    with pytest.raises(ValueError):
        guided_filter(guide, src[:-1], 2, 1e-3)
    with pytest.raises(ValueError):
        guided_filter(guide, src, 0, 1e-3)


def test_guided_filter_moves_a_blurred_map_onto_the_guides_edges() -> None:
    """A lesion bright in the image, a map that is a blurred, shifted blob over it: thresholded at the same value,
    the guided map stops at the lesion's edge where the blob spills over it; a flat guide does not."""
    yy, xx = np.mgrid[:96, :96]
    lesion = (yy - 40) ** 2 / 18**2 + (xx - 52) ** 2 / 11**2 <= 1
    image = (0.4 + 0.5 * lesion + np.random.default_rng(2).normal(0, 0.02, lesion.shape)).astype(np.float32)
    blob = np.exp(-((yy - 44) ** 2 + (xx - 48) ** 2) / (2 * 9.0**2)).astype(np.float32)
    raw = blob > 0.5
    guided = guided_filter(image, blob, 6, 1e-3) > 0.5
    flat = guided_filter(np.full_like(image, 0.5), blob, 6, 1e-3) > 0.5

    def inside(mask: np.ndarray) -> float:
        return float((mask & lesion).sum() / mask.sum())

    assert inside(raw) < 0.9 and inside(flat) < 0.9 and inside(guided) > 0.99
    assert dice_score(guided, lesion) > dice_score(raw, lesion) + 0.05
