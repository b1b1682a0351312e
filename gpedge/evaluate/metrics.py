"""Classification and weak-segmentation metrics (numpy, scipy, scikit-learn; no torch).

Segmentation quality follows the paper: Dice and IoU per tumour slice (ground truth
non-empty) with +1 smoothing, summarised by the median; the false-positive rate is the
share of healthy slices whose predicted mask is not empty.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage, stats
from sklearn import metrics as skm


def dice_score(pred: np.ndarray, truth: np.ndarray) -> float:
    """Smoothed Dice of two binary masks: (2|P∩G| + 1) / (|P| + |G| + 1); 1.0 when both are empty."""
    p, g = _binary_pair(pred, truth)
    inter = np.count_nonzero(p & g)
    return (2.0 * inter + 1.0) / (np.count_nonzero(p) + np.count_nonzero(g) + 1.0)


def iou_score(pred: np.ndarray, truth: np.ndarray) -> float:
    """Smoothed IoU of two binary masks: (|P∩G| + 1) / (|P∪G| + 1); 1.0 when both are empty."""
    p, g = _binary_pair(pred, truth)
    return (np.count_nonzero(p & g) + 1.0) / (np.count_nonzero(p | g) + 1.0)


def _binary_pair(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, g = np.asarray(pred) > 0, np.asarray(truth) > 0
    if p.shape != g.shape:
        raise ValueError(f"predicted mask {p.shape} and ground truth {g.shape} differ in shape")
    return p, g


def healthy_fp_rate(masks: Sequence[np.ndarray | bool], healthy: Sequence[bool]) -> float | None:
    """Share of healthy slices (``healthy[i]``) whose predicted mask (or its non-empty flag) is not empty;
    None without healthy slices."""
    flags = [bool(np.any(m)) for m, h in zip(masks, healthy, strict=True) if h]
    return float(np.mean(flags)) if flags else None


def median_or_none(values: Sequence[float]) -> float | None:
    """Median of ``values`` as a float, or None when there are none."""
    return float(np.median(values)) if len(values) else None


def pointing_hit(saliency: np.ndarray, truth: np.ndarray, tolerance_px: float) -> bool:
    """Pointing game: whether the map's maximum lies within ``tolerance_px`` of the ground-truth mask.

    A map without a unique peak value (constant, or all NaN) never hits. Ties between several
    maximal pixels count as a hit when any of them is within tolerance.
    """
    s = np.asarray(saliency, dtype=np.float64)
    g = np.asarray(truth) > 0
    if s.shape != g.shape:
        raise ValueError(f"map {s.shape} and ground truth {g.shape} differ in shape")
    if not g.any() or not np.isfinite(s).any():
        return False
    peak = np.nanmax(s)
    if peak <= np.nanmin(s):
        return False
    distance = ndimage.distance_transform_edt(~g)
    return bool(np.any(distance[s == peak] <= tolerance_px))


def pointing_tolerance(shape: tuple[int, int], fraction: float = 0.015) -> float:
    """Default pointing-game tolerance: ``fraction`` of the longer side, at least 1 pixel."""
    return float(max(1.0, round(fraction * max(shape))))


def classification_metrics(
    y_true: Sequence[int], probabilities: np.ndarray, class_names: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, macro/weighted F1, per-class precision/recall/F1/support, confusion matrix,
    one-vs-rest ROC AUC and average precision (None for a class absent from ``y_true``)."""
    y = np.asarray(y_true, dtype=int)
    prob = np.asarray(probabilities, dtype=np.float64)
    labels = list(range(len(class_names)))
    y_pred = prob.argmax(axis=1)
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y, y_pred, labels=labels, zero_division=0
    )
    per_class: dict[str, dict[str, Any]] = {}
    for k, name in enumerate(class_names):
        positives = y == k
        separable = positives.any() and (~positives).any()
        per_class[name] = {
            "precision": float(precision[k]),
            "recall": float(recall[k]),
            "f1": float(f1[k]),
            "support": int(support[k]),
            "roc_auc": float(skm.roc_auc_score(positives, prob[:, k])) if separable else None,
            "average_precision": float(skm.average_precision_score(positives, prob[:, k])) if positives.any() else None,
        }
    return {
        "accuracy": float(skm.accuracy_score(y, y_pred)),
        "f1_macro": float(skm.f1_score(y, y_pred, labels=labels, average="macro", zero_division=0)),
        "f1_weighted": float(skm.f1_score(y, y_pred, labels=labels, average="weighted", zero_division=0)),
        "per_class": per_class,
        "confusion_matrix": skm.confusion_matrix(y, y_pred, labels=labels).tolist(),
    }


def spearman(x: Sequence[float], y: Sequence[float]) -> dict[str, float | int | None]:
    """Spearman rank correlation with its p-value; None values when undefined (fewer than 3 points or a constant)."""
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if a.size < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return {"rho": None, "p_value": None, "n": int(a.size)}
    result = stats.spearmanr(a, b)
    return {"rho": float(result.statistic), "p_value": float(result.pvalue), "n": int(a.size)}
