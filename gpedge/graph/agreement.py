"""Agreement of two runs of the fused graph on the same inputs (numpy only): a backend or a lower
precision against the FP32 reference. Used by the benchmarks' accuracy columns, the export's
parity checks and its INT8 gate, so all three measure mask agreement the same way."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

ACCURACY_OUTPUTS = ("probs", "label", "mask")


def mask_dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Mean Dice of (N, H, W) masks over the slices where either mask is non-empty (1.0 if none is)."""
    pred = pred.reshape(pred.shape[0], -1).astype(bool)
    ref = ref.reshape(ref.shape[0], -1).astype(bool)
    sizes = pred.sum(axis=1) + ref.sum(axis=1)
    used = sizes > 0
    if not used.any():
        return 1.0
    inter = np.logical_and(pred, ref).sum(axis=1)
    return float(np.mean(2.0 * inter[used] / sizes[used]))


def compare(outputs: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray]) -> dict[str, float | int]:
    """Label agreement, largest probability difference and mask Dice of ``outputs`` vs ``reference``.

    ``mask_slices`` counts the reference's non-empty masks: the slices the Dice is about.
    """
    missing = [name for name in ACCURACY_OUTPUTS if name not in outputs or name not in reference]
    if missing:
        raise ValueError(f"cannot compare accuracy: output(s) {', '.join(missing)} missing")
    labels = np.asarray(outputs["label"]).reshape(-1)
    ref_labels = np.asarray(reference["label"]).reshape(-1)
    if labels.shape != ref_labels.shape:
        raise ValueError(f"cannot compare accuracy: {labels.size} labels vs {ref_labels.size} in the reference")
    probs = np.asarray(outputs["probs"], dtype=np.float64)
    ref_probs = np.asarray(reference["probs"], dtype=np.float64)
    return {
        "accuracy_slices": int(labels.size),
        "label_agreement": float(np.mean(labels == ref_labels)),
        "max_prob_diff": float(np.max(np.abs(probs - ref_probs))),
        "mask_dice": mask_dice(np.asarray(outputs["mask"]), np.asarray(reference["mask"])),
        "mask_slices": int(np.asarray(reference["mask"]).reshape(labels.size, -1).any(axis=1).sum()),
    }
