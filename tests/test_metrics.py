"""Evaluation metrics against hand-computed small cases."""
from __future__ import annotations

import numpy as np
import pytest

from gpedge.evaluate.bootstrap import median_ci
from gpedge.evaluate.metrics import (
    classification_metrics,
    dice_score,
    healthy_fp_rate,
    iou_score,
    pointing_hit,
    pointing_tolerance,
    spearman,
)


def _mask(shape, *pixels):
    m = np.zeros(shape, dtype=np.uint8)
    for y, x in pixels:
        m[y, x] = 1
    return m


def test_dice_and_iou_with_plus_one_smoothing():
    pred = _mask((5, 5), (0, 0), (0, 1), (1, 0), (1, 1))  # 4 px
    truth = _mask((5, 5), (1, 1), (1, 0), (2, 2))  # 3 px, 2 shared
    assert dice_score(pred, truth) == pytest.approx((2 * 2 + 1) / (4 + 3 + 1))
    assert iou_score(pred, truth) == pytest.approx((2 + 1) / (5 + 1))


def test_empty_masks():
    empty = np.zeros((4, 4), dtype=np.uint8)
    truth = _mask((4, 4), (0, 0), (3, 3), (2, 1))
    assert dice_score(empty, empty) == 1.0
    assert iou_score(empty, empty) == 1.0
    assert dice_score(empty, truth) == pytest.approx(1 / 4)
    assert iou_score(empty, truth) == pytest.approx(1 / 4)
    assert dice_score(truth, truth) == 1.0


def test_dice_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="differ in shape"):
        dice_score(np.zeros((3, 3)), np.zeros((3, 4)))


def test_healthy_fp_rate_counts_only_healthy_slices():
    full, empty = np.ones((2, 2)), np.zeros((2, 2))
    masks = [full, empty, full, empty, full]
    healthy = [True, True, False, True, False]
    assert healthy_fp_rate(masks, healthy) == pytest.approx(1 / 3)
    assert healthy_fp_rate(masks, [False] * 5) is None


def test_pointing_game_tolerance():
    truth = np.zeros((9, 9), dtype=np.uint8)
    truth[2:4, 2:4] = 1
    saliency = np.zeros((9, 9))
    saliency[3, 6] = 5.0  # two columns right of the mask's edge (3, 3)
    assert not pointing_hit(saliency, truth, tolerance_px=1)
    assert pointing_hit(saliency, truth, tolerance_px=3)
    saliency[3, 6], saliency[2, 2] = 0.0, 5.0
    assert pointing_hit(saliency, truth, tolerance_px=0)
    assert not pointing_hit(np.full((9, 9), 2.0), truth, tolerance_px=9)
    assert not pointing_hit(saliency, np.zeros_like(truth), tolerance_px=9)
    assert pointing_tolerance((240, 240)) == 4.0
    assert pointing_tolerance((32, 32)) == 1.0


def test_classification_metrics_hand_computed():
    y = [0, 0, 1, 1, 2, 2]
    prob = np.array(
        [
            [0.8, 0.1, 0.1],  # 0 -> 0
            [0.3, 0.6, 0.1],  # 0 -> 1
            [0.1, 0.7, 0.2],  # 1 -> 1
            [0.2, 0.7, 0.1],  # 1 -> 1
            [0.1, 0.2, 0.7],  # 2 -> 2
            [0.5, 0.1, 0.4],  # 2 -> 0
        ]
    )
    m = classification_metrics(y, prob, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    # per class: a P=1/2 R=1/2 F=1/2; b P=2/3 R=1 F=4/5; c P=1 R=1/2 F=2/3
    assert m["per_class"]["b"]["precision"] == pytest.approx(2 / 3)
    assert m["per_class"]["c"]["recall"] == pytest.approx(1 / 2)
    assert m["f1_macro"] == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 3)
    assert m["f1_weighted"] == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 3)
    # class c scores: positives 0.7, 0.4; negatives 0.1, 0.1, 0.2, 0.1 -> perfectly ranked
    assert m["per_class"]["c"]["roc_auc"] == pytest.approx(1.0)
    assert m["per_class"]["c"]["average_precision"] == pytest.approx(1.0)


def test_classification_metrics_absent_class_has_no_auc():
    prob = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.6, 0.4, 0.0]])
    m = classification_metrics([0, 1, 1], prob, ["a", "b", "c"])
    assert m["per_class"]["c"]["roc_auc"] is None
    assert m["per_class"]["c"]["average_precision"] is None
    assert m["per_class"]["b"]["roc_auc"] == pytest.approx(1.0)


def test_spearman_monotone_and_undefined():
    assert spearman([1, 2, 3, 4], [0.1, 0.4, 0.5, 0.9])["rho"] == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1])["rho"] == pytest.approx(-1.0)
    assert spearman([1, 2], [1, 2])["rho"] is None
    assert spearman([1, 1, 1], [1, 2, 3])["rho"] is None


def _clustered_scores():
    rng = np.random.default_rng(4)
    values, patients = [], []
    for p, level in enumerate([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]):
        values += list(level + rng.normal(0, 0.01, 30))
        patients += [f"p{p}"] * 30
    return np.array(values), patients


def test_bootstrap_ci_contains_median_and_is_deterministic_by_seed():
    values, patients = _clustered_scores()
    ci = median_ci(values, patients, n_resamples=500, seed=7)
    assert ci.median == pytest.approx(np.median(values))
    assert ci.low <= ci.median <= ci.high
    assert ci == median_ci(values, patients, n_resamples=500, seed=7)
    assert "over patients" in ci.method
    continuous = np.random.default_rng(0).random(101)
    assert median_ci(continuous, seed=1, n_resamples=300).as_list() != median_ci(continuous, seed=2, n_resamples=300).as_list()


def test_bootstrap_by_patient_is_wider_than_by_slice_for_clustered_scores():
    values, patients = _clustered_scores()
    by_patient = median_ci(values, patients, n_resamples=500, seed=0)
    by_slice = median_ci(values, None, n_resamples=500, seed=0)
    assert "over slices" in by_slice.method
    assert (by_patient.high - by_patient.low) > 3 * (by_slice.high - by_slice.low)


def test_bootstrap_two_patients_hand_checked():
    # resampling two patients gives medians 0 (p0 twice), 0.5 (one each) or 1 (p1 twice)
    values = [0.0] * 10 + [1.0] * 10
    ci = median_ci(values, ["p0"] * 10 + ["p1"] * 10, n_resamples=400, seed=1)
    assert (ci.low, ci.high) == (0.0, 1.0)


def test_bootstrap_single_patient_collapses():
    ci = median_ci([0.2, 0.4, 0.9], ["p0"] * 3, n_resamples=100, seed=0)
    assert (ci.low, ci.median, ci.high) == (0.4, 0.4, 0.4)
    assert "only 1 patients" in ci.method
