"""Saving the results of one input (image, multi-frame DICOM or volume) as files in a folder, atomically."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gpedge.atomic import atomic_write_json
from gpedge.runtime.io import Scan, write_mask_nifti, write_png
from gpedge.runtime.results import Result


def key_slice(results: Sequence[Result]) -> Result:
    """The slice to show for a stack: the largest mask, else the most probable tumour, else the first."""
    best = max(results, key=lambda r: r.mask_area_px)
    if best.mask_area_px > 0:
        return best
    tumour = [r for r in results if r.is_tumour]
    return max(tumour, key=lambda r: r.probability) if tumour else results[0]


def save_scan(
    scan: Scan, results: Sequence[Result], directory: str | Path, stem: str, every_slice: bool = False
) -> dict[str, str]:
    """Write the outputs of one scan and return their paths by kind.

    A single image: ``<stem>_mask.png``, ``<stem>_heatmap.png``, ``<stem>_overlay.png``,
    ``<stem>.json``. A stack (volume or multi-frame DICOM): ``<stem>_mask.nii.gz`` (NIfTI
    sources, uint8 on the source grid), ``<stem>_overlay.png`` and ``<stem>_heatmap.png`` of the
    key slice (:func:`key_slice`), ``<stem>.json`` with every slice; per-slice PNGs and JSON only
    when ``every_slice``.
    """
    directory = Path(directory)
    if not scan.is_volume:
        return results[0].save(directory, stem)
    written: dict[str, str] = {}
    per_slice: list[dict] = []
    for result in results:
        entry = result.to_dict()
        if every_slice:
            entry["outputs"] = result.save(directory, f"{stem}_slice{result.source.slice:03d}")
        per_slice.append(entry)
    if scan.volume is not None:
        path = directory / f"{stem}_mask.nii.gz"
        write_mask_nifti(path, np.stack([r.mask for r in results]), scan.volume)
        written["mask_nifti"] = str(path)
    key = key_slice(results)
    from gpedge.runtime.visualize import heatmap_rgb

    written["overlay"] = str(directory / f"{stem}_overlay.png")
    written["heatmap"] = str(directory / f"{stem}_heatmap.png")
    write_png(written["overlay"], key.plot())
    write_png(written["heatmap"], heatmap_rgb(key.heatmap))
    written["json"] = str(directory / f"{stem}.json")
    atomic_write_json(
        written["json"],
        {
            "file": str(scan.path) if scan.path else None,
            "slices": len(results),
            "key_slice": key.source.slice,
            "tumour_slices": [r.source.slice for r in results if r.is_tumour],
            "mask_volume_px": int(sum(r.mask_area_px for r in results)),
            "outputs": written,
            "per_slice": per_slice,
        },
    )
    return written
