"""Bootstrap confidence intervals for the median of per-slice scores (scipy.stats.bootstrap).

Slices of one patient are correlated, so the default resamples PATIENTS with replacement
and recomputes the median over all slices of the drawn patients (a cluster bootstrap).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class MedianCI:
    """A median with its bootstrap confidence interval and how it was obtained."""

    median: float
    low: float
    high: float
    method: str

    def as_list(self) -> list[float]:
        return [self.low, self.high]


def median_ci(
    values: Sequence[float],
    groups: Sequence[str] | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> MedianCI:
    """Percentile-bootstrap CI of ``median(values)``.

    With ``groups`` (e.g. the patient of each slice) whole groups are resampled; without,
    single values are. With fewer than two units (or ``n_resamples`` 0) the interval
    collapses to the median itself, and the method says so.
    """
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        raise ValueError("no values to bootstrap")
    median = float(np.median(data))
    if groups is None:
        members = [np.array([v]) for v in data]
        unit = "slices"
    else:
        if len(groups) != data.size:
            raise ValueError(f"{len(groups)} groups for {data.size} values")
        keys = np.asarray(groups)
        members = [data[keys == key] for key in dict.fromkeys(keys.tolist())]
        unit = "patients"
    level = f"{confidence:.0%}"
    if len(members) < 2 or n_resamples <= 0:
        return MedianCI(median, median, median, f"none: only {len(members)} {unit} (or no resamples); interval is the median")

    def statistic(index: np.ndarray) -> float:
        return float(np.median(np.concatenate([members[i] for i in index])))

    result = stats.bootstrap(
        (np.arange(len(members)),),
        statistic,
        n_resamples=n_resamples,
        confidence_level=confidence,
        method="percentile",
        vectorized=False,
        rng=np.random.default_rng(seed),
    )
    ci = result.confidence_interval
    method = (
        f"percentile bootstrap over {unit} ({len(members)} {unit}, {n_resamples} resamples, seed {seed}, {level}): "
        f"resample {unit} with replacement, recompute the median over the drawn slices"
    )
    return MedianCI(median, float(ci.low), float(ci.high), method)
