"""MR series on disk for the DICOM-node tests: the bundled example volume as MR Image Storage files.

The slices are the runtime's own display orientation of ``examples/lgg_t1ce.nii.gz`` (anterior
up, patient's right on the left), which is DICOM's standard axial orientation
(ImageOrientationPatient 1/0/0/0/1/0), stacked feet to head along +z (LPS).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

from gpedge.runtime.io import read_nifti

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "lgg_t1ce.nii.gz"


def example_slices(first: int = 6, count: int = 12) -> np.ndarray:
    """(count, rows, cols) uint16 slices of the example volume, feet to head."""
    stack = read_nifti(EXAMPLE).images[:, 0]
    return np.ascontiguousarray(stack[first : first + count]).astype(np.uint16)


def write_series(
    folder: Path,
    slices: np.ndarray,
    *,
    study_uid: str | None = None,
    patient_id: str = "GPEDGE-TEST-0001",
    description: str = "T1 post-contrast (T1CE)",
    series_number: int = 1,
    sop_class: str = MRImageStorage,
) -> list[Path]:
    """Write one single-frame series (1 mm pixels, 1 mm slices) and return its files, named
    without suffix in shuffled order (as scanners often do)."""
    folder.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or generate_uid()
    series_uid, frame_uid = generate_uid(), generate_uid()
    order = np.random.default_rng(len(slices) + series_number).permutation(len(slices))
    paths = []
    for k, pixels in enumerate(slices):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"IM{order[k]:04d}"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.PositionReferenceIndicator = ""
        ds.Modality = "MR" if sop_class == MRImageStorage else "CT"
        ds.PatientName = "TEST^SERIES"
        ds.PatientID = patient_id
        ds.PatientBirthDate = "19700101"
        ds.PatientSex = "O"
        ds.StudyDate, ds.StudyTime = "20260101", "120000"
        ds.SeriesDate, ds.SeriesTime = "20260101", "120500"
        ds.AccessionNumber = "A0001"
        ds.ReferringPhysicianName = ""
        ds.StudyID = "1"
        ds.Manufacturer = "gpedge tests"
        ds.SeriesNumber = series_number
        ds.InstanceNumber = k + 1
        ds.SeriesDescription = description
        ds.ProtocolName = description
        ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
        ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = "GR", "SP", ""
        ds.MRAcquisitionType = "3D"
        ds.RepetitionTime, ds.EchoTime, ds.EchoTrainLength = 8.0, 3.0, 1
        if sop_class == CTImageStorage:
            ds.KVP = 120
            ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 1, 0, "HU"
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-119.5, -119.5, float(k)]
        ds.SliceLocation = float(k)
        ds.PixelSpacing = [1.0, 1.0]
        ds.SliceThickness = 1.0
        ds.Rows, ds.Columns = pixels.shape
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = np.ascontiguousarray(pixels, dtype=np.uint16).tobytes()
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
        paths.append(path)
    return paths
