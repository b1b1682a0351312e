"""Figshare brain-tumour data set (Cheng et al.): one MATLAB v7.3 (HDF5) file per slice.

Each file holds the struct ``cjdata`` with ``image`` (T1-CE slice), ``label`` (1 meningioma,
2 glioma, 3 pituitary), ``tumorMask`` and ``PID`` (patient id as uint16 character codes).
MATLAB writes arrays column-major, so HDF5 holds them transposed; they are transposed back.
``cvind.mat`` (the cross-validation indices shipped with the data set) is skipped.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from gpedge.data.dataset import SliceDataset, SliceRecord
from gpedge.errors import DataError

CLASS_NAMES = ("meningioma", "glioma", "pituitary")
CHANNEL = "t1ce"
KEYS = ("cjdata/image", "cjdata/label", "cjdata/tumorMask", "cjdata/PID")
_SKIP = {"cvind.mat"}


def _natural(path: Path) -> list[Any]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", str(path))]


def mat_files(root: Path) -> list[Path]:
    """The slice files under ``root`` (or ``root`` itself when it is a file), in natural order."""
    if root.is_file():
        return [root]
    return sorted((p for p in root.rglob("*.mat") if p.is_file() and p.name.lower() not in _SKIP), key=_natural)


def _open(path: Path):
    import h5py

    try:
        fh = h5py.File(path, "r")
    except OSError as exc:
        raise DataError(
            f"{path}: not a MATLAB v7.3 (HDF5) file ({exc}); the Figshare data set ships v7.3 files "
            "(re-save older .mat files with save(..., '-v7.3'))"
        ) from exc
    missing = [k for k in KEYS if k not in fh]
    if missing:
        fh.close()
        raise DataError(f"{path}: missing {', '.join(missing)}; not a Figshare brain-tumour slice (cjdata struct)")
    return fh


def _char_codes(data: np.ndarray) -> str:
    return "".join(chr(int(c)) for c in np.asarray(data).ravel() if int(c) != 0)


def read_header(path: Path) -> tuple[str, int]:
    """``(patient id, class index 0-2)`` of one slice file."""
    with _open(path) as fh:
        label = np.asarray(fh["cjdata/label"]).ravel()
        pid = _char_codes(fh["cjdata/PID"][()])
    if label.size != 1 or int(label[0]) not in (1, 2, 3) or label[0] != int(label[0]):
        raise DataError(f"{path}: cjdata/label is {label.tolist()}; it must be 1, 2 or 3")
    if not pid:
        raise DataError(f"{path}: cjdata/PID is empty; every slice needs its patient id")
    return pid, int(label[0]) - 1


class FigshareSource:
    """Reads the image and tumour mask of one slice file."""

    def read(self, key: Path) -> tuple[np.ndarray, np.ndarray]:
        with _open(key) as fh:
            image = np.asarray(fh["cjdata/image"], dtype=np.float32).T
            mask = np.asarray(fh["cjdata/tumorMask"]).T
        if image.ndim != 2 or mask.shape != image.shape:
            raise DataError(
                f"{key}: cjdata/image {image.shape} and cjdata/tumorMask {mask.shape} must be 2-D of the same shape"
            )
        if not np.all(np.isfinite(image)):
            raise DataError(f"{key}: cjdata/image holds NaN or infinite values")
        return image[None], (mask > 0).astype(np.uint8)


def open_figshare(root: Path, channels: list[str] | None = None, image_size: int | tuple[int, int] | None = None) -> SliceDataset:
    """Open a folder of Figshare ``.mat`` slices (or a single file)."""
    if channels is not None and [str(c).lower() for c in channels] != [CHANNEL]:
        raise DataError(f"the Figshare data set at {root} has the single channel {CHANNEL}; got channels {list(channels)}")
    files = mat_files(root)
    if not files:
        raise DataError(f"{root}: no .mat files found; expected the Figshare brain-tumour slices (1.mat ... 3064.mat)")
    records = []
    for position, path in enumerate(files):
        patient, label = read_header(path)
        number = int(path.stem) if path.stem.isdigit() else position
        records.append(SliceRecord(patient, number, label, path))
    return SliceDataset(
        records,
        FigshareSource(),
        class_names=CLASS_NAMES,
        no_tumour_class=None,
        channels=[CHANNEL],
        image_size=image_size,
        format="figshare",
        root=root,
    )
