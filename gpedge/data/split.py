"""Patient-level, class-stratified, seeded train/val/test split."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gpedge.data.dataset import SliceDataset
from gpedge.errors import DataError

SPLITS = ("train", "val", "test")


def split_patients(
    dataset: SliceDataset, seed: int, fractions: Sequence[float] = (0.7, 0.15, 0.15)
) -> dict[str, list[str]]:
    """Split the patients of ``dataset`` into ``{"train", "val", "test"}`` lists of patient ids.

    Patients are stratified by :attr:`SliceDataset.patient_classes`. Within each class the
    patients are shuffled with ``seed`` and counts are rounded so that both the class and the
    running total stay as close as possible to ``fractions``; every class with a patient has at
    least one in train. No patient is in two splits; the lists are sorted.
    """
    fractions = np.asarray(fractions, dtype=np.float64)
    if fractions.shape != (3,) or np.any(fractions < 0) or not np.isclose(fractions.sum(), 1.0):
        raise DataError(f"split fractions {fractions.tolist()} must be three non-negative numbers summing to 1")
    rng = np.random.default_rng(seed)
    by_class: dict[int, list[str]] = {}
    for patient, cls in dataset.patient_classes.items():
        by_class.setdefault(cls, []).append(patient)
    result: dict[str, list[str]] = {name: [] for name in SPLITS}
    given = np.zeros(3)
    ideal = np.zeros(3)
    for cls in sorted(by_class):
        patients = sorted(by_class[cls])
        rng.shuffle(patients)
        target = len(patients) * fractions
        ideal += target
        counts = _round_counts(target, ideal - given - target, len(patients))
        given += counts
        start = 0
        for name, count in zip(SPLITS, counts):
            result[name].extend(patients[start : start + int(count)])
            start += int(count)
    return {name: sorted(ids) for name, ids in result.items()}


def _round_counts(target: np.ndarray, carry: np.ndarray, total: int) -> np.ndarray:
    """Integer counts summing to ``total`` near ``target``, leftovers to the largest deficit.

    ``carry`` is how far the earlier classes fell short of their share per split.
    """
    counts = np.floor(target).astype(int)
    for _ in range(total - counts.sum()):
        deficit = (target - counts) + carry
        counts[int(np.argmax(deficit))] += 1
    if counts[0] == 0 and total > 0 and target[0] > 0:
        counts[int(np.argmax(counts))] -= 1
        counts[0] += 1
    return counts
