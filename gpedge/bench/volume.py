"""Whole-volume end to end: read a NIfTI scan, infer every axial slice, write the mask NIfTI.

Runs inside a benchmark child (``gpedge.bench.worker``, task ``volume``) and reports the wall
time of each stage, so the I/O cost is visible next to the network's.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from gpedge.bench.stages import preprocess
from gpedge.errors import InputError
from gpedge.package import ModelPackage
from gpedge.preprocess import resize_mask

#: Outputs a volume run needs on the host (heatmaps stay on the device).
VOLUME_OUTPUTS = ("label", "probs", "threshold", "mask")


def run_volume(
    adapter, package: ModelPackage, scan_path: str, mask_out: str, batch: int, warmup: int, repeats: int
) -> dict[str, Any]:
    """Time read, preprocess, inference, postprocess and write of one whole volume through ``adapter``.

    Reading and writing happen once; preprocess and inference of all slices are repeated
    ``repeats`` times after ``warmup`` warm-up batches, and their medians reported.
    """
    import nibabel  # noqa: F401  (imported before the clock starts: module loading is not reading)

    from gpedge.runtime.io import load_input, write_mask_nifti

    clock = time.perf_counter
    t0 = clock()
    scan = load_input(scan_path, package.channels)
    if scan.volume is None:
        raise InputError(f"{scan_path}: --volume needs a NIfTI volume or a BraTS patient folder, not a 2-D image")
    t_read = clock() - t0
    size = package.image_size
    slices = list(scan.images)
    warm = preprocess(slices[:batch], size)
    for _ in range(warmup):
        adapter.infer(warm, outputs=VOLUME_OUTPUTS)
    passes = [_infer_slices(adapter, slices, size, batch) for _ in range(max(1, repeats))]
    t_pre = float(np.median([p[0] for p in passes]))
    t_inf = float(np.median([p[1] for p in passes]))
    masks = passes[-1][2]
    t0 = clock()
    height, width = scan.images.shape[-2:]
    stack = np.concatenate(masks)
    if stack.shape[-2:] != (height, width):
        stack = np.stack([resize_mask(m, (height, width)) for m in stack])
    t_post = clock() - t0
    t0 = clock()
    write_mask_nifti(mask_out, stack, scan.volume)
    t_write = clock() - t0
    stages = {"read": t_read, "preprocess": t_pre, "inference": t_inf, "postprocess": t_post, "write": t_write}
    return {
        "backend": adapter.name,
        "volume": str(Path(scan_path)),
        "slices": len(slices),
        "batch": batch,
        "repeats": max(1, repeats),
        "mask": str(mask_out),
        "tumour_voxels": int(stack.astype(bool).sum()),
        **{f"{stage}_ms": seconds * 1e3 for stage, seconds in stages.items()},
        "total_ms": sum(stages.values()) * 1e3,
    }


def _infer_slices(adapter, slices: list[np.ndarray], size: tuple[int, int], batch: int) -> tuple[float, float, list]:
    """One pass over all slices: (preprocess seconds, inference seconds, mask batches)."""

    clock = time.perf_counter
    t_pre = t_inf = 0.0
    masks = []
    for start in range(0, len(slices), batch):
        t0 = clock()
        inputs = preprocess(slices[start : start + batch], size)
        t1 = clock()
        masks.append(adapter.infer(inputs, outputs=VOLUME_OUTPUTS)["mask"])
        t2 = clock()
        t_pre += t1 - t0
        t_inf += t2 - t1
    return t_pre, t_inf, masks
