"""Saving the results of one input (image, multi-frame DICOM, multi-page TIFF or volume) as files in a folder,
as one set.

All files of one input go through one :class:`~gpedge.atomic.OutputFiles`: they appear together
or not at all, and an existing file is replaced only when the caller allows it.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gpedge.atomic import OutputFiles
from gpedge.runtime.io import Scan, mask_nifti_bytes, png_bytes
from gpedge.runtime.results import Result


def key_slice(results: Sequence[Result]) -> Result:
    """The slice to show for a stack: among the slices not flagged out of distribution (all if every
    slice is), the largest mask, else the most probable tumour, else the first."""
    candidates = [r for r in results if not r.out_of_distribution] or list(results)
    best = max(candidates, key=lambda r: r.mask_area_px)
    if best.mask_area_px > 0:
        return best
    tumour = [r for r in candidates if r.is_tumour]
    return max(tumour, key=lambda r: r.probability) if tumour else candidates[0]


def save_result(result: Result, directory: str | Path, stem: str, files: OutputFiles) -> dict[str, str]:
    """Stage ``<stem>_mask.png``, ``<stem>_heatmap.png``, ``<stem>_overlay.png`` and ``<stem>.json``
    of one image in ``files`` and return their paths by kind."""
    from gpedge.runtime.visualize import heatmap_rgb

    directory = Path(directory)
    paths = {
        "mask": directory / f"{stem}_mask.png",
        "heatmap": directory / f"{stem}_heatmap.png",
        "overlay": directory / f"{stem}_overlay.png",
        "json": directory / f"{stem}.json",
    }
    files.write_bytes(paths["mask"], png_bytes(result.mask.astype(np.uint8) * 255, paths["mask"]))
    files.write_bytes(paths["heatmap"], png_bytes(heatmap_rgb(result.heatmap), paths["heatmap"]))
    files.write_bytes(paths["overlay"], png_bytes(result.plot(), paths["overlay"]))
    written = {k: str(v) for k, v in paths.items()}
    files.write_json(paths["json"], {**result.to_dict(), "outputs": written})
    return written


def save_scan(
    scan: Scan,
    results: Sequence[Result],
    directory: str | Path,
    stem: str,
    every_slice: bool = False,
    files: OutputFiles | None = None,
) -> dict[str, str]:
    """Write the outputs of one scan and return their paths by kind.

    A single image: ``<stem>_mask.png``, ``<stem>_heatmap.png``, ``<stem>_overlay.png``,
    ``<stem>.json``. A stack (volume, multi-frame DICOM or multi-page TIFF): ``<stem>_mask.nii.gz`` (NIfTI
    sources, uint8 on the source grid), ``<stem>_overlay.png`` and ``<stem>_heatmap.png`` of the
    key slice (:func:`key_slice`), ``<stem>.json`` with every slice; per-slice PNGs and JSON only
    when ``every_slice``. ``files``: the set to stage them in (committed by the caller); without
    it they are written as a set of their own, never replacing an existing file.
    """
    if files is None:
        with OutputFiles() as own:
            return save_scan(scan, results, directory, stem, every_slice, own)
    directory = Path(directory)
    if not scan.is_volume:
        return save_result(results[0], directory, stem, files)
    from gpedge.runtime.visualize import heatmap_rgb

    written: dict[str, str] = {}
    per_slice: list[dict] = []
    for result in results:
        entry = result.to_dict()
        if every_slice:
            entry["outputs"] = save_result(result, directory, f"{stem}_slice{result.source.slice:03d}", files)
        per_slice.append(entry)
    if scan.volume is not None:
        path = directory / f"{stem}_mask.nii.gz"
        files.write_bytes(path, mask_nifti_bytes(np.stack([r.mask for r in results]), scan.volume))
        written["mask_nifti"] = str(path)
    key = key_slice(results)
    written["overlay"] = str(files.write_bytes(directory / f"{stem}_overlay.png", png_bytes(key.plot())))
    written["heatmap"] = str(files.write_bytes(directory / f"{stem}_heatmap.png", png_bytes(heatmap_rgb(key.heatmap))))
    written["json"] = str(directory / f"{stem}.json")
    files.write_json(
        written["json"],
        {
            "file": str(scan.path) if scan.path else None,
            "slices": len(results),
            "key_slice": key.source.slice,
            "tumour_slices": [r.source.slice for r in results if r.is_tumour and not r.out_of_distribution],
            "out_of_distribution_slices": [r.source.slice for r in results if r.out_of_distribution],
            "mask_volume_px": int(sum(r.mask_area_px for r in results)),
            "outputs": written,
            "per_slice": per_slice,
        },
    )
    return written
