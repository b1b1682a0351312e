"""Scoring a split through the runtime: one outcome per slice, then the segmentation metrics."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gpedge.evaluate.bootstrap import median_ci
from gpedge.evaluate.metrics import dice_score, healthy_fp_rate, iou_score, median_or_none, spearman
from gpedge.postprocess import clean_mask

CLEANUP = "gpedge.postprocess.clean_mask (drop objects < 64 px, fill holes < 128 px, closing disk r=2, largest component)"


@dataclass
class SliceOutcome:
    """Scores of one evaluated slice (no images kept)."""

    index: int
    patient: str
    slice: int
    label: int
    predicted: int
    probabilities: np.ndarray
    tumour: bool
    healthy: bool
    mask_empty: bool
    clean_empty: bool
    dice: float | None = None
    iou: float | None = None
    dice_clean: float | None = None
    iou_clean: float | None = None

    @property
    def confidence(self) -> float:
        return float(self.probabilities[self.predicted])


def score_split(
    predictor: Any, subset: Any, labels_map: np.ndarray, progress: Callable[[int, int], None] | None = None
) -> list[SliceOutcome]:
    """Run ``predictor`` (a :class:`gpedge.Predictor`) on every slice of ``subset`` and score its prediction and mask."""
    no_tumour = predictor.no_tumour_class
    outcomes = []
    for start in range(0, len(subset), predictor.batch_size):
        indices = range(start, min(start + predictor.batch_size, len(subset)))
        samples = [subset[i] for i in indices]
        for i, sample, result in zip(indices, samples, predictor.predict([s["image"] for s in samples])):
            outcomes.append(_outcome(i, sample, result, int(labels_map[sample["label"]]), no_tumour, predictor.classes))
        if progress is not None:
            progress(indices[-1] + 1, len(subset))
    return outcomes


def _outcome(index: int, sample: dict[str, Any], result: Any, label: int, no_tumour: int | None,
             classes: Sequence[str]) -> SliceOutcome:
    truth = sample["mask"]
    mask = np.asarray(result.mask, dtype=bool)
    cleaned = clean_mask(mask).astype(bool) if mask.any() else mask
    outcome = SliceOutcome(
        index=index,
        patient=str(sample["patient"]),
        slice=int(sample["slice"]),
        label=label,
        predicted=int(result.class_index),
        probabilities=np.array([result.probabilities[c] for c in classes]),
        tumour=bool(truth.any()),
        healthy=no_tumour is not None and label == no_tumour,
        mask_empty=not mask.any(),
        clean_empty=not cleaned.any(),
    )
    if outcome.tumour:
        outcome.dice, outcome.iou = dice_score(mask, truth), iou_score(mask, truth)
        outcome.dice_clean, outcome.iou_clean = dice_score(cleaned, truth), iou_score(cleaned, truth)
    return outcome


def segmentation_metrics(
    outcomes: Sequence[SliceOutcome], class_names: Sequence[str], bootstrap: int, seed: int
) -> dict[str, Any]:
    """Dice/IoU medians (CI by patient, ``bootstrap`` resamples), per-class Dice, healthy FP rate,
    with and without clean-up."""
    tumour = [o for o in outcomes if o.tumour]
    dice = [o.dice for o in tumour]
    healthy = [o.healthy for o in outcomes]
    out: dict[str, Any] = {
        "tumour_slices": len(tumour),
        "healthy_slices": sum(healthy),
        "dice_median": median_or_none(dice),
        "dice_ci95": None,
        "dice_ci_method": None,
        "iou_median": median_or_none([o.iou for o in tumour]),
        "dice_per_class_median": {
            name: median_or_none([o.dice for o in tumour if o.label == k]) for k, name in enumerate(class_names)
        },
        "healthy_fp_rate": healthy_fp_rate([not o.mask_empty for o in outcomes], healthy),
        "cleanup": {
            "method": CLEANUP,
            "dice_median": median_or_none([o.dice_clean for o in tumour]),
            "iou_median": median_or_none([o.iou_clean for o in tumour]),
            "healthy_fp_rate": healthy_fp_rate([not o.clean_empty for o in outcomes], healthy),
        },
        "dice_vs_confidence_spearman": spearman([o.confidence for o in tumour], dice),
    }
    if tumour:
        ci = median_ci(dice, [o.patient for o in tumour], n_resamples=bootstrap, seed=seed)
        out["dice_ci95"], out["dice_ci_method"] = ci.as_list(), ci.method
    return out
