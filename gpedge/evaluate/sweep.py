"""Mask-offset sweep: every candidate offset fed to the graph through the ``Predictor``, as ``gpedge infer`` does.

The masks scored for an offset are exactly the masks ``gpedge infer`` returns with that offset
(graph threshold at the model's resolution, :func:`gpedge.runtime.maps.to_input_resolution`
to the data's), on whatever backend the sweep runs, so the offset it stores in the package is
the rule the runtime then applies.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from gpedge.atomic import atomic_write_json
from gpedge.errors import GpedgeError
from gpedge.evaluate.metrics import dice_score, healthy_fp_rate, iou_score, median_or_none
from gpedge.package import MANIFEST, ModelPackage


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

    def add(self, offset: float, mask: np.ndarray, truth: np.ndarray, healthy: bool) -> None:
        """Score the mask predicted with ``offset`` on one slice (ground truth ``truth``, same resolution)."""
        i = self.offsets.index(float(offset))
        if np.any(truth):
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
                "healthy_fp_rate": healthy_fp_rate(self._healthy_masks[i], [True] * len(self._healthy_masks[i])),
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


def sweep_offsets(
    predictor: Any,
    samples: Sequence[dict[str, Any]],
    labels_map: np.ndarray,
    offsets: Sequence[float],
    progress: Callable[[int, int], None] | None = None,
) -> OffsetSweep:
    """Run ``predictor`` (a :class:`gpedge.Predictor`) with every offset on ``samples`` and score the masks.

    ``samples`` are data-set samples (``image``, ``mask``, ``label``); ``labels_map`` maps their
    labels to the package's classes. Slices of a batch share model calls, one call per offset.
    """
    sweep = OffsetSweep(offsets)
    no_tumour = predictor.no_tumour_class
    step = predictor.batch_size
    for start in range(0, len(samples), step):
        batch = [samples[i] for i in range(start, min(start + step, len(samples)))]
        images = [sample["image"] for sample in batch]
        healthy = [no_tumour is not None and int(labels_map[s["label"]]) == no_tumour for s in batch]
        for offset in sweep.offsets:
            for sample, is_healthy, result in zip(batch, healthy, predictor.predict(images, offset=offset)):
                sweep.add(offset, result.mask, sample["mask"], is_healthy)
        if progress is not None:
            progress(start + len(batch), len(samples))
    return sweep


def set_package_offset(package: ModelPackage, offset: float) -> None:
    """Write ``mask_rule.offset`` into the package manifest atomically, keeping every other field."""
    path = package.root / MANIFEST
    manifest = json.loads(path.read_text())
    manifest["mask_rule"]["offset"] = float(offset)
    atomic_write_json(path, manifest)
    package.manifest = manifest
