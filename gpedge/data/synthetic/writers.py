"""Write synthetic patients to disk: BraTS 2020 folders, or single-slice PNG sets in the image-folder layout."""
from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import TypeVar

import numpy as np

from gpedge.data.synthetic.contrast import CONTRASTS
from gpedge.data.synthetic.patient import get_family, synthesise_patient
from gpedge.errors import DataError
from gpedge.atomic import atomic_write_bytes

MAPPING_COLUMNS = (
    "Grade",
    "BraTS_2017_subject_ID",
    "BraTS_2018_subject_ID",
    "TCGA_TCIA_subject_ID",
    "BraTS_2019_subject_ID",
    "BraTS_2020_subject_ID",
)
PNG_CLASSES = (("Healthy", None), ("LGG", "LGG"), ("HGG", "HGG"))
Progress = Callable[[Iterable], Iterable]
T = TypeVar("T")


def patient_id(number: int) -> str:
    """The BraTS 2020 id of training patient ``number`` (1-based)."""
    return f"BraTS20_Training_{number:03d}"


def _nifti_bytes(data: np.ndarray, affine: np.ndarray) -> bytes:
    import gzip

    import nibabel as nib

    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_qform(affine, code=1)
    img.header.set_sform(affine, code=1)
    return gzip.compress(img.to_bytes(), compresslevel=1, mtime=0)


def _check_common(out: Path, patients: int, skull_fraction: float, family_name: str) -> None:
    get_family(family_name)
    if patients < 1:
        raise DataError(f"--patients must be at least 1 (got {patients})")
    if not 0.0 <= skull_fraction <= 1.0:
        raise DataError(f"skull_fraction must be between 0 and 1 (got {skull_fraction})")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out} already exists and is not an empty folder; choose a new output folder")


def _with_skull(seed: int, labels: list, fraction: float) -> list[bool]:
    """Which items keep skull and scalp: ``round(fraction * n)`` of each label's n items, so no class has more."""
    rng = np.random.default_rng([seed, 0, 1])
    keep = [False] * len(labels)
    for label in sorted(set(map(str, labels))):
        members = [i for i, value in enumerate(labels) if str(value) == label]
        for i in rng.permutation(members)[: int(round(fraction * len(members)))]:
            keep[int(i)] = True
    return keep


def _grid(size: int | tuple[int, int], slices: int, shape: tuple[int, int, int] | None) -> tuple[int, int, int]:
    grid = tuple(shape) if shape is not None else ((size, size) if isinstance(size, int) else tuple(size)) + (slices,)
    if len(grid) != 3 or any(int(n) != n or n < 8 for n in grid):
        raise DataError(f"synthetic volume shape {grid} is invalid; every dimension must be an integer >= 8")
    return tuple(int(n) for n in grid)


def write_synthetic_brats(
    out: str | os.PathLike,
    patients: int,
    seed: int,
    size: int | tuple[int, int] = 240,
    slices: int = 155,
    *,
    shape: tuple[int, int, int] | None = None,
    lgg_fraction: float = 0.5,
    family: str = "train",
    skull_fraction: float = 0.3,
    min_lesion_mm: float = 0.0,
    first_id: int = 1,
    lesion_free: bool = False,
    workers: int = 1,
    progress: Progress | None = None,
) -> list[str]:
    """Write ``patients`` synthetic patients into ``out`` in the BraTS 2020 training layout.

    ``out/BraTS20_Training_001/BraTS20_Training_001_{t1,t2,t1ce,flair,seg}.nii.gz`` and
    ``out/name_mapping.csv``. The grid is ``size`` x ``size`` x ``slices`` (or ``shape``) over the
    BraTS field of view. A share ``lgg_fraction`` of patients is LGG, the rest HGG; ``family`` is
    ``"train"`` or ``"heldout"``; a share ``skull_fraction`` of each grade keeps skull and scalp.
    Deterministic for a given ``seed`` (a patient depends only on the seed, its number and which
    patients keep the skull); ``min_lesion_mm`` raises the smallest tumour radius (see
    :func:`synthesise_patient`); ``first_id`` numbers the patients from that id on without changing
    their data (so two sets can sit side by side); ``lesion_free`` writes the same patients without
    their tumours and the tumours' mass effect (same anatomy, pose, scanner and noise; every slice
    tumour-free; the name mapping keeps each patient's grade): the lesion-free twins of the set written
    with the same arguments, to test whether a model's call rests on the lesion (``scripts/twin_check.py``);
    ``workers`` > 1 synthesises patients in that many processes (same data); ``progress`` may wrap the
    patient loop (e.g. ``rich.progress.track``). Returns the patient ids.
    """
    out = Path(out)
    grid = _grid(size, slices, shape)
    _check_common(out, patients, skull_fraction, family)
    if not 0.0 <= lgg_fraction <= 1.0:
        raise DataError(f"lgg_fraction must be between 0 and 1 (got {lgg_fraction})")
    if not 1 <= first_id <= 1000 - patients:
        raise DataError(f"first_id {first_id} with {patients} patients leaves BraTS's 3-digit ids; use 1 to {1000 - patients}")
    n_lgg = int(round(patients * lgg_fraction))
    grades = np.array(["LGG"] * n_lgg + ["HGG"] * (patients - n_lgg))
    np.random.default_rng([seed, 0]).shuffle(grades)
    jobs = [
        partial(_write_patient, out, number, first_id + number - 1, None if lesion_free else str(grade), seed, grid, family,
                skull, min_lesion_mm)
        for number, grade, skull in zip(range(1, patients + 1), grades, _with_skull(seed, list(grades), skull_fraction))
    ]
    ids = _run_jobs(jobs, workers, progress)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(MAPPING_COLUMNS)
    for pid, grade in zip(ids, grades):
        writer.writerow([grade, "NA", "NA", "NA", "NA", pid])
    atomic_write_bytes(out / "name_mapping.csv", text.getvalue().encode())
    return ids


def _write_patient(out: Path, number: int, id_number: int, grade: str | None, seed: int, grid: tuple[int, int, int],
                   family: str, skull: bool, min_lesion_mm: float) -> str:
    pid = patient_id(id_number)
    patient = synthesise_patient(np.random.default_rng([seed, number]), grade, grid, family, skull=skull, min_lesion_mm=min_lesion_mm)
    for name, data in [*patient.volumes.items(), ("seg", patient.seg)]:
        atomic_write_bytes(out / pid / f"{pid}_{name}.nii.gz", _nifti_bytes(data, patient.affine))
    return pid


def _run_jobs(jobs: list[Callable[[], T]], workers: int, progress: Progress | None) -> list[T]:
    """Results of ``jobs`` in order, computed in this process or in ``workers`` processes."""
    if workers < 1:
        raise DataError(f"workers must be at least 1 (got {workers})")
    if workers == 1 or len(jobs) == 1:
        return [job() for job in (progress(jobs) if progress else jobs)]
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(min(workers, len(jobs))) as pool:
        results = pool.map(_call, jobs)
        return list(progress(results) if progress else results)


def _call(job: Callable[[], T]) -> T:
    return job()


def display_slices(volume: np.ndarray) -> np.ndarray:
    """A volume on the synthetic grid (LPS voxel order) as (Z, rows, cols) slices the way every gpedge reader shows them."""
    from gpedge.data.brats import display_slices as ras_display

    return ras_display(volume[::-1, ::-1, :])


def _pick_slice(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray, tumour: bool) -> int | None:
    """A slice from the middle of the head (head area >= 60 % of its maximum), where most tumours are imaged.

    Tumour images: the slice with the largest lesion area at those levels; healthy images: any such
    slice (all are lesion-free). None when no slice qualifies.
    """
    area = (image > 0.1 * np.percentile(image, 99)).sum(axis=(1, 2))
    lesion = mask.sum(axis=(1, 2)) * (area >= 0.6 * area.max())
    if tumour:
        return int(lesion.argmax()) if lesion.max() > 0 else None
    candidates = np.flatnonzero((area >= 0.6 * area.max()) & (mask.sum(axis=(1, 2)) == 0))
    return int(rng.choice(candidates)) if candidates.size else None


def write_synthetic_pngs(
    out: str | os.PathLike,
    per_class: int,
    seed: int,
    size: int = 240,
    slices: int = 24,
    *,
    family: str = "heldout",
    channel: str = "t1ce",
    skull_fraction: float = 0.3,
    min_lesion_mm: float = 0.0,
    workers: int = 1,
    progress: Progress | None = None,
) -> list[Path]:
    """Write single-slice 16-bit PNGs in the image-folder layout: ``out/{Healthy,LGG,HGG}/<name>.png`` + ``<name>_mask.png``.

    Each image is one axial slice of ``channel`` from its own patient (``size`` x ``size`` over the
    240 mm field of view, slices ``155 / slices`` mm thick), from the middle of the head: tumour images
    show the tumour's largest section there, healthy images come from tumour-free patients at the same
    levels; a share ``skull_fraction`` of each class keeps skull and scalp. The mask is 0/255 (empty for
    healthy images). ``min_lesion_mm`` raises the smallest tumour radius (see :func:`synthesise_patient`).
    ``workers`` > 1 synthesises the images in that many processes (same data).
    Returns the image paths.
    """
    out = Path(out)
    if channel not in CONTRASTS:
        raise DataError(f"channel {channel!r} is unknown; use one of {', '.join(CONTRASTS)}")
    grid = _grid(size, slices, None)
    _check_common(out, per_class, skull_fraction, family)
    items = [(k, name, grade, i) for k, (name, grade) in enumerate(PNG_CLASSES) for i in range(per_class)]
    jobs = [
        partial(_write_png_item, out, item, skull, seed, grid, family, channel, min_lesion_mm)
        for item, skull in zip(items, _with_skull(seed, [item[0] for item in items], skull_fraction))
    ]
    return _run_jobs(jobs, workers, progress)


def _write_png_item(out: Path, item: tuple[int, str, str | None, int], skull: bool, seed: int,
                    grid: tuple[int, int, int], family: str, channel: str, min_lesion_mm: float) -> Path:
    from gpedge.runtime.io import write_png

    k, name, grade, i = item
    for attempt in range(20):
        rng = np.random.default_rng([seed, k, i, attempt])
        patient = synthesise_patient(rng, grade, grid, family, skull=skull, min_lesion_mm=min_lesion_mm)
        image = display_slices(patient.volumes[channel])
        mask = display_slices(patient.seg) > 0
        chosen = _pick_slice(rng, image, mask, grade is not None)
        if chosen is not None:
            break
    else:
        raise DataError(f"no usable slice for {name} image {i} after 20 patients; use more slices")
    stem = f"{family}_{name.lower()}_{i:03d}"
    path = out / name / f"{stem}.png"
    write_png(path, np.clip(image[chosen], 0, 65535).astype(np.uint16))
    write_png(out / name / f"{stem}_mask.png", (mask[chosen] * 255).astype(np.uint8))
    return path
