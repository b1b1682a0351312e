"""MR series of the bundled example volume for the DICOM-node tests (written by tests/dicom_series.py)."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from pydicom.uid import CTImageStorage

from dicom_series import write_series

#: ``scripts/make_examples.py``'s HGG FLAIR volume: the bundled default model calls its slices tumour, so every
#: mask check has a mask.
HGG_VOLUME = Path(__file__).resolve().parent / "data" / "hgg_flair.nii.gz"
#: The SeriesDescription of :data:`HGG_VOLUME`'s series: a FLAIR name, the contrast the default model takes.
FLAIR = "AX FLAIR"


def example_series(folder: Path, count: int = 12, first: int = 6, **options) -> list[Path]:
    """Slices ``first`` to ``first + count`` of :data:`HGG_VOLUME` as one FLAIR series (files named
    IM0001... in shuffled order); ``options`` go to ``write_series`` (e.g. ``study_uid``)."""
    img = nib.load(HGG_VOLUME)
    data = np.asarray(img.dataobj)[..., first : first + count]
    shift = np.eye(4)
    shift[2, 3] = first
    options.setdefault("shuffle_seed", count)
    options.setdefault("description", FLAIR)
    return write_series(folder, data, img.affine @ shift, **options).files


def make_ct(path: Path) -> None:
    """Turn an MR instance into a CT Image Storage one (a SOP class the node does not take)."""
    ds = pydicom.dcmread(path)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.Modality = "CT"
    ds.save_as(path, enforce_file_format=True)
