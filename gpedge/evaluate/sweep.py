"""Threshold-offset sweep: heatmaps computed once, the mask rule re-applied per offset on the host."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from gpedge.errors import GpedgeError
from gpedge.evaluate.metrics import dice_score, iou_score, median_or_none
from gpedge.postprocess import mask_from_heatmap


def parse_offsets(text: str) -> list[float]:
    """Parse ``"0,0.1,0.5"`` into sorted unique non-negative offsets, with a clear error otherwise."""
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise GpedgeError(f"--offsets {text!r} is not a comma-separated list of numbers (e.g. 0,0.25,0.5,0.75,1)") from exc
    if not values or any(not np.isfinite(v) or v < 0 for v in values):
        raise GpedgeError(f"--offsets {text!r} must list one or more finite offsets >= 0 (e.g. 0,0.25,0.5,0.75,1)")
    return sorted(set(values))


class OffsetSweep:
    """Per offset: Dice and IoU on tumour slices and the false-positive rate on healthy slices."""

    def __init__(self, offsets: Sequence[float]) -> None:
        if not offsets:
            raise ValueError("an offset sweep needs at least one offset")
        self.offsets = [float(o) for o in offsets]
        self._dice: list[list[float]] = [[] for _ in self.offsets]
        self._iou: list[list[float]] = [[] for _ in self.offsets]
        self._healthy_masks: list[list[bool]] = [[] for _ in self.offsets]

    def add(self, heatmap: np.ndarray, truth: np.ndarray, predicted_empty: bool, healthy: bool) -> None:
        """Score one slice: ``heatmap`` is the predicted class's map at the ground truth's resolution;
        ``predicted_empty`` marks a no-tumour prediction (empty mask whatever the offset)."""
        tumour = bool(np.any(truth))
        if not tumour and not healthy:
            return
        for i, offset in enumerate(self.offsets):
            mask = np.zeros(truth.shape, dtype=bool) if predicted_empty else mask_from_heatmap(heatmap, offset)
            if tumour:
                self._dice[i].append(dice_score(mask, truth))
                self._iou[i].append(iou_score(mask, truth))
            if healthy:
                self._healthy_masks[i].append(bool(np.any(mask)))

    @property
    def tumour_slices(self) -> int:
        return len(self._dice[0])

    def table(self) -> list[dict[str, Any]]:
        """One row per offset: ``offset``, ``dice_median``, ``iou_median``, ``healthy_fp_rate``, slice counts."""
        return [
            {
                "offset": offset,
                "dice_median": median_or_none(self._dice[i]),
                "iou_median": median_or_none(self._iou[i]),
                "healthy_fp_rate": float(np.mean(self._healthy_masks[i])) if self._healthy_masks[i] else None,
                "tumour_slices": len(self._dice[i]),
                "healthy_slices": len(self._healthy_masks[i]),
            }
            for i, offset in enumerate(self.offsets)
        ]

    def best_offset(self) -> float:
        """The offset with the highest median Dice; ties go to the lower healthy FP rate, then the smaller offset."""
        if self.tumour_slices == 0:
            raise GpedgeError(
                "cannot choose a mask offset: the sweep split has no slice with a ground-truth tumour mask; "
                "sweep on data with segmentations or leave out --offsets"
            )
        rows = self.table()
        best = min(rows, key=lambda r: (-r["dice_median"], r["healthy_fp_rate"] or 0.0, r["offset"]))
        return float(best["offset"])
