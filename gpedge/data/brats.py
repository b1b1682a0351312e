"""BraTS 2020 reader: ``ROOT/<patient>/<patient>_{t1,t2,t1ce,flair,seg}.nii[.gz]`` + ``name_mapping.csv``.

Slices are axial planes shown as the runtime shows NIfTI volumes (:mod:`gpedge.runtime.io`):
reoriented to RAS, anterior at the top, the patient's right on the left of the image. A slice
is labelled Healthy when its segmentation is empty, else with the patient's ``Grade``.
Slices where every selected channel is zero are dropped.

Each patient is decoded once into the slice cache (:mod:`gpedge.data.cache`): ``images``
(S, 4, H, W) in canonical channel order, int16 when the volumes are integer, else float32,
``seg`` (S, H, W) uint8, for the S slices with any non-zero channel.
"""
from __future__ import annotations

import csv
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gpedge.data.cache import ArrayCache, files_key, folder_for
from gpedge.data.dataset import SliceDataset, SliceRecord
from gpedge.errors import DataError

log = logging.getLogger(__name__)

CHANNELS = ("t1", "t2", "t1ce", "flair")
CLASS_NAMES = ("Healthy", "LGG", "HGG")
MAPPING_CSV = "name_mapping.csv"
GRADE_COLUMN = "Grade"
ID_COLUMN = "BraTS_2020_subject_ID"
_CONTRAST = re.compile(r"_(t1|t2|t1ce|flair)\.nii(\.gz)?$", re.IGNORECASE)
_NIFTI = re.compile(r"\.nii(\.gz)?$", re.IGNORECASE)
_CACHE_VERSION = 1


@dataclass(frozen=True)
class PatientFiles:
    """The five NIfTI files of one patient."""

    patient: str
    contrasts: dict[str, Path]
    seg: Path

    @property
    def all(self) -> list[Path]:
        return [self.contrasts[c] for c in CHANNELS] + [self.seg]


def display_slices(volume: np.ndarray) -> np.ndarray:
    """RAS (X, Y, Z) volume -> (Z, rows, cols) axial slices, anterior up, patient's right on the left."""
    return np.ascontiguousarray(np.transpose(volume, (2, 1, 0))[:, ::-1, ::-1])


def read_grades(root: Path) -> dict[str, str]:
    """``BraTS_2020_subject_ID -> Grade`` from ``ROOT/name_mapping.csv``."""
    path = root / MAPPING_CSV
    if not path.is_file():
        raise DataError(f"{path} not found: a BraTS 2020 folder needs name_mapping.csv with columns {GRADE_COLUMN}, {ID_COLUMN}")
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            fields = [f.strip() for f in reader.fieldnames or []]
            missing = [c for c in (GRADE_COLUMN, ID_COLUMN) if c not in fields]
            if missing:
                raise DataError(f"{path}: column(s) {', '.join(missing)} missing (found: {', '.join(fields) or 'none'})")
            rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path} cannot be read as CSV ({exc})") from exc
    grades: dict[str, str] = {}
    for line, row in enumerate(rows, start=2):
        grade = row[GRADE_COLUMN].upper()
        if grade not in ("LGG", "HGG"):
            raise DataError(f"{path}, line {line}: {GRADE_COLUMN} is {row[GRADE_COLUMN]!r}; it must be LGG or HGG")
        grades[row[ID_COLUMN]] = grade
    return grades


def find_files(folder: Path) -> PatientFiles:
    """The contrast files and the segmentation of one patient folder.

    The segmentation is any NIfTI whose name contains ``seg`` (any case), which also finds the
    real data set's ``W39_1998.09.19_Segm.nii`` of patient 355.
    """
    contrasts: dict[str, list[Path]] = {c: [] for c in CHANNELS}
    segs: list[Path] = []
    for path in sorted(folder.iterdir()):
        if not path.is_file() or not _NIFTI.search(path.name):
            continue
        match = _CONTRAST.search(path.name)
        if match:
            contrasts[match.group(1).lower()].append(path)
        elif "seg" in path.name.lower():
            segs.append(path)
    for name, found in contrasts.items():
        if not found:
            raise DataError(f"{folder}: no {name} file (expected {folder.name}_{name}.nii.gz or .nii)")
        if len(found) > 1:
            raise DataError(f"{folder}: several {name} files ({', '.join(p.name for p in found)}); keep one")
    if not segs:
        raise DataError(
            f"{folder}: no segmentation file (expected {folder.name}_seg.nii.gz); "
            "labels need the ground truth, so use the BraTS training data"
        )
    if len(segs) > 1:
        raise DataError(f"{folder}: several segmentation files ({', '.join(p.name for p in segs)}); keep one")
    return PatientFiles(folder.name, {c: found[0] for c, found in contrasts.items()}, segs[0])


def _open_nifti(path: Path):
    import nibabel as nib

    try:
        img = nib.load(path)
    except Exception as exc:  # nibabel raises ImageFileError, EOFError, zlib and value errors
        raise DataError(f"{path}: not a readable NIfTI file ({exc})") from exc
    shape = img.shape[:3] if len(img.shape) == 4 and img.shape[3] == 1 else img.shape
    if len(shape) != 3:
        raise DataError(f"{path}: volume has shape {img.shape}; BraTS volumes are 3-D")
    return img


def _decode(path: Path, img) -> np.ndarray:
    """The volume as (Z, rows, cols) display slices in its stored dtype."""
    import nibabel as nib

    try:
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # truncated or corrupt compressed data
        raise DataError(f"{path}: not a readable NIfTI file ({exc})") from exc
    data = data.reshape(data.shape[:3])
    to_ras = nib.orientations.ornt_transform(
        nib.orientations.io_orientation(img.affine), nib.orientations.axcodes2ornt("RAS")
    )
    return display_slices(nib.orientations.apply_orientation(data, to_ras))


def _storage_dtype(volumes: list[np.ndarray]) -> np.dtype:
    info = np.iinfo(np.int16)
    integer = all(np.issubdtype(v.dtype, np.integer) for v in volumes)
    if integer and all(v.min() >= info.min and v.max() <= info.max for v in volumes):
        return np.dtype(np.int16)
    return np.dtype(np.float32)


def decode_patient(files: PatientFiles) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Decode one patient into cache arrays and its JSON index."""
    images = {path: _open_nifti(path) for path in files.all}
    reference = files.contrasts["t1"]
    for path, img in images.items():
        if img.shape[:3] != images[reference].shape[:3]:
            raise DataError(
                f"{path}: shape {img.shape[:3]} differs from {reference.name} {images[reference].shape[:3]}; "
                "all contrasts and the segmentation must share one voxel grid"
            )
    volumes = [_decode(files.contrasts[c], images[files.contrasts[c]]) for c in CHANNELS]
    seg = _decode(files.seg, images[files.seg])
    if not np.all(np.isfinite(seg)) or np.any(seg < 0) or np.any(seg > 255) or np.any(seg != np.round(seg)):
        raise DataError(f"{files.seg}: segmentation labels must be integers 0-255 (BraTS uses 0, 1, 2, 4)")
    for path, vol in zip(files.all, volumes):
        if not np.all(np.isfinite(vol)):
            raise DataError(f"{path}: volume holds NaN or infinite values")
    nonzero = np.stack([np.any(v != 0, axis=(1, 2)) for v in volumes], axis=1)
    rows = np.flatnonzero(nonzero.any(axis=1))
    dtype = _storage_dtype(volumes)
    images = np.stack([v[rows] for v in volumes], axis=1).astype(dtype)
    seg_rows = seg[rows].astype(np.uint8)
    index = {
        "version": _CACHE_VERSION,
        "patient": files.patient,
        "slices": rows.tolist(),
        "nonzero": [int(sum(1 << c for c in range(len(CHANNELS)) if flags[c])) for flags in nonzero[rows]],
        "tumour": [bool(s.any()) for s in seg_rows],
        "shape": list(images.shape[2:]),
        "dtype": dtype.name,
    }
    return {"images": images, "seg": seg_rows}, index


class BratsSource:
    """Reads slices from the per-patient cache arrays (memory-mapped on first use)."""

    def __init__(self, cache: ArrayCache, keys: dict[str, str], channel_index: list[int]) -> None:
        self._cache = cache
        self._keys = keys
        self._channel_index = channel_index
        self._open: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_open"] = {}
        return state

    def read(self, key: tuple[str, int]) -> tuple[np.ndarray, np.ndarray]:
        patient, row = key
        if patient not in self._open:
            k = self._keys[patient]
            try:
                self._open[patient] = (
                    self._cache.open_array(patient, k, "images"),
                    self._cache.open_array(patient, k, "seg"),
                )
            except (OSError, ValueError) as exc:
                raise DataError(
                    f"slice cache of {patient} in {self._cache.folder} is missing or damaged ({exc}); "
                    "open the data set again to rebuild it"
                ) from exc
        images, seg = self._open[patient]
        image = np.asarray(images[row, self._channel_index], dtype=np.float32)
        return image, (np.asarray(seg[row]) > 0).astype(np.uint8)


def patient_folders(root: Path) -> list[Path]:
    """Sub-folders of ``root`` that hold NIfTI files, sorted by name."""
    return sorted(
        p for p in root.iterdir() if p.is_dir() and any(_NIFTI.search(f.name) for f in p.iterdir() if f.is_file())
    )


def open_brats(
    root: Path,
    channels: list[str] | None = None,
    image_size: int | tuple[int, int] | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> SliceDataset:
    """Open a BraTS 2020 training folder (see the module docstring)."""
    channels = select_channels(channels, root)
    grades = read_grades(root)
    folders = patient_folders(root)
    if not folders:
        raise DataError(f"{root}: no patient folders with NIfTI files (expected {root}/BraTS20_Training_001/...)")
    cache = ArrayCache(folder_for(root, "brats", cache_dir))
    channel_index = [CHANNELS.index(c) for c in channels]
    selected_bits = sum(1 << i for i in channel_index)
    records: list[SliceRecord] = []
    keys: dict[str, str] = {}
    for folder in folders:
        if folder.name not in grades:
            raise DataError(f"{folder}: patient {folder.name} has no row in {root / MAPPING_CSV} ({ID_COLUMN} column)")
        files = find_files(folder)
        key = files_key(files.all)
        index = cache.load_index(files.patient, key)
        if index is None or index.get("version") != _CACHE_VERSION:
            log.info("decoding %s into the slice cache %s", files.patient, cache.folder)
            arrays, index = decode_patient(files)
            cache.store(files.patient, key, arrays, index)
        keys[files.patient] = key
        grade = CLASS_NAMES.index(grades[folder.name])
        for row, (number, bits, tumour) in enumerate(zip(index["slices"], index["nonzero"], index["tumour"])):
            if bits & selected_bits:
                records.append(SliceRecord(files.patient, number, grade if tumour else 0, (files.patient, row)))
    return SliceDataset(
        records,
        BratsSource(cache, keys, channel_index),
        class_names=CLASS_NAMES,
        no_tumour_class=0,
        channels=channels,
        image_size=image_size,
        format="brats",
        root=root,
    )


def select_channels(channels: list[str] | None, root: Path) -> list[str]:
    """Validate a channel selection (a subset of t1, t2, t1ce, flair, in the order given)."""
    if channels is None:
        return list(CHANNELS)
    chosen = [str(c).strip().lower() for c in channels]
    unknown = [c for c in chosen if c not in CHANNELS]
    if unknown or not chosen or len(set(chosen)) != len(chosen):
        raise DataError(
            f"channels {list(channels)} are not valid for the BraTS data set at {root}; "
            f"choose distinct names among {', '.join(CHANNELS)}"
        )
    return chosen
