"""The package's mask rule, chosen at export on the run's validation patients (``gpedge export``'s default).

A heatmap's scale differs from one trained model to the next, so no fixed rule and offset suits
every model (the paper's absolute offset 0.5 thresholds some maps at 0 and masks the whole head).
The export therefore sweeps :data:`EXPORT_CANDIDATES` through the staged package's runtime, exactly
as ``gpedge evaluate --mask-rules`` does (:func:`gpedge.evaluate.sweep.tune`), on the run's validation
patients at the data's own resolution, and stores the best (rule, offset) with the record of the choice.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from gpedge.atomic import atomic_write_json
from gpedge.package import MANIFEST, ModelPackage

log = logging.getLogger(__name__)

#: (rule, offset) candidates of the export-time sweep: the paper's rule at three offsets and the
#: scale-free rules (offset: the fraction of the way from the upper to the lower multi-Otsu threshold),
#: each also with the peak's region only (``+peak``), with the image-guided map (``+guided``) and with that map's
#: mask grown by hysteresis (``+grow``).
RELATIVE_OFFSETS = (-0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0)
EXPORT_CANDIDATES = (
    *((("paper", o) for o in (0.25, 0.5, 1.0))),
    *(((rule + post, o) for post in ("", "+peak", "+guided", "+grow") for rule in ("relative", "head", "contrast-head") for o in RELATIVE_OFFSETS)),
)


def validation_slices(config: Any, limit: int) -> Any | None:
    """Up to ``limit`` slices of the run's validation patients at the data's resolution (three quarters
    tumour slices, evenly spaced), or None when they are not reachable here or carry no tumour mask."""
    path = (config.dataset or {}).get("path")
    patients = (config.split or {}).get("val")
    if not path or not patients or not Path(path).exists():
        return None
    from gpedge.data import open_dataset

    dataset = open_dataset(path, format=config.dataset.get("format", "auto"), channels=config.channels)
    present = sorted(set(patients) & set(dataset.patients))
    if not present:
        return None
    val = dataset.subset(present)
    labels = val.labels
    tumour = np.flatnonzero(labels != (-1 if val.no_tumour_class is None else val.no_tumour_class))
    healthy = np.flatnonzero(labels == val.no_tumour_class) if val.no_tumour_class is not None else np.array([], int)
    n_tumour = min(len(tumour), max(limit - min(len(healthy), limit // 4), 0))
    n_healthy = min(len(healthy), limit - n_tumour)
    picked = np.concatenate([_evenly(tumour, n_tumour), _evenly(healthy, n_healthy)])
    chosen = val.take(np.sort(picked))
    if not any(np.any(chosen[int(k)]["mask"]) for k in np.flatnonzero(chosen.labels != val.no_tumour_class)[:16]):
        return None
    return chosen


def _evenly(indices: np.ndarray, count: int) -> np.ndarray:
    if count <= 0:
        return np.array([], dtype=np.int64)
    return indices[np.linspace(0, len(indices) - 1, count).round().astype(np.int64)]


def tune_package(package: ModelPackage, config: Any, limit: int) -> dict[str, Any] | None:
    """Choose the (staged, written) package's mask rule on up to ``limit`` validation slices of the run and record
    the choice in its manifest (``mask_rule.tuned``); None (the package keeps its rule) when the run's
    validation patients or their tumour masks are not reachable here."""
    from gpedge.evaluate.selection import class_index_map
    from gpedge.evaluate.sweep import tune
    from gpedge.runtime.predictor import Predictor

    samples = validation_slices(config, limit)
    if samples is None:
        return None
    log.info("choosing the mask rule on %d validation slices (%d candidates)", len(samples), len(EXPORT_CANDIDATES))
    with Predictor(package, backend="onnxruntime") as predictor:
        record = tune(predictor, samples, class_index_map(samples, package), EXPORT_CANDIDATES)
    record = {"patients": len(samples.patients), "data": str(config.dataset["path"]),
              **{k: v for k, v in record.items() if k != "table"}}
    package.manifest["mask_rule"]["tuned"] = record
    atomic_write_json(package.root / MANIFEST, package.manifest)
    return record
