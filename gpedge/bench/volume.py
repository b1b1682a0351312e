"""Whole-volume end to end: read a NIfTI scan, predict every axial slice, write the mask NIfTI.

Runs inside a benchmark child (``gpedge.bench.worker``, task ``volume``) through the runtime's
``Predictor`` (masks at the volume's slice resolution by the one mask rule) and reports the wall
time of each stage, so the I/O cost is visible next to the network's.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from gpedge.bench.timing import stage_ms
from gpedge.errors import InputError
from gpedge.runtime.io import Scan, write_mask_nifti


def run_volume(predictor: Any, scan_path: str, mask_out: str, batch: int, warmup: int, repeats: int) -> dict[str, Any]:
    """Time read, preprocess, inference, postprocess and write of one whole volume through ``predictor``.

    Reading and writing happen once; the slice stages are repeated ``repeats`` times after
    ``warmup`` warm-up batches, and their medians reported.
    """
    import nibabel  # noqa: F401  (imported before the clock starts: module loading is not reading)

    scan = predictor.read_scan(scan_path, name=Path(scan_path).name)
    if scan.volume is None:
        raise InputError(f"{scan_path}: --volume needs a NIfTI volume or a BraTS patient folder, not a 2-D image")
    predictor.batch_size = batch
    warm = Scan(images=scan.images[:batch])
    for _ in range(warmup):
        predictor.predict_scans([warm])
    passes = []
    for _ in range(max(1, repeats)):
        results = predictor.predict_scans([scan])[0]
        passes.append(stage_ms(results))
    masks = np.stack([r.mask for r in results])
    t0 = time.perf_counter()
    write_mask_nifti(mask_out, masks, scan.volume)
    stages = {"read": scan.load_ms, **{k: float(np.median([p[k] for p in passes])) for k in passes[0]},
              "write": (time.perf_counter() - t0) * 1e3}
    return {
        "backend": predictor.backend_name,
        "volume": str(Path(scan_path)),
        "slices": len(results),
        "batch": batch,
        "repeats": max(1, repeats),
        "mask": str(mask_out),
        "tumour_voxels": int(masks.sum()),
        **{f"{stage}_ms": ms for stage, ms in stages.items()},
        "total_ms": sum(stages.values()),
    }
