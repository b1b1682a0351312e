"""Writing real DICOM MR series from a NIfTI-style volume (data + RAS affine) with pydicom, for the tests.

Each stored pixel's source voxel is known (:attr:`WrittenSeries.voxels`), so tests can check what
gpedge reads and writes against the volume without using gpedge's own geometry code.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import EnhancedMRImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass
class WrittenSeries:
    """Files written, in stack order of ``voxels``; ``voxels[k]`` is (rows, cols, 3) NIfTI indices of frame k."""

    files: list[Path]
    voxels: np.ndarray
    uid: str
    sop_uids: list[str]
    frame_numbers: list[int | None]


def write_series(
    folder: Path,
    data: np.ndarray,
    affine: np.ndarray,
    *,
    slice_axis: int = 2,
    flip: tuple[bool, bool, bool] = (False, False, False),
    swap_inplane: bool = False,
    description: str = "AX T1 POST GD",
    series_number: int = 5,
    study_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
    shuffle_seed: int | None = None,
    enhanced: bool = False,
    suffix: str = "",
    transfer_syntax: str = ExplicitVRLittleEndian,
    skip: tuple[int, ...] = (),
    duplicate: int | None = None,
) -> WrittenSeries:
    """Write ``data`` (NIfTI voxel order, RAS ``affine``) as an MR series into ``folder``.

    The stack axis is the voxel axis ``slice_axis``; the other two become rows then columns
    (swapped with ``swap_inplane``); ``flip`` reverses stored (slice, row, column) axes. Files are
    named ``IM0001``... (plus ``suffix``), in a shuffled order when ``shuffle_seed`` is given, so
    that names and InstanceNumbers say nothing about the position. ``enhanced`` writes one
    Enhanced MR multi-frame object instead. ``skip`` leaves slices out, ``duplicate`` writes one twice.
    """
    folder.mkdir(parents=True, exist_ok=True)
    inplane = [a for a in range(3) if a != slice_axis]
    if swap_inplane:
        inplane = inplane[::-1]
    axes = [slice_axis, *inplane]
    shape = [data.shape[a] for a in axes]
    # index map: stored (k, i, j) -> voxel index (4x4 homogeneous)
    index = np.zeros((4, 4))
    index[3, 3] = 1
    for stored, voxel_axis in enumerate(axes):
        index[voxel_axis, stored] = -1.0 if flip[stored] else 1.0
        index[voxel_axis, 3] = shape[stored] - 1 if flip[stored] else 0.0
    stored_to_lps = LPS @ affine @ index
    k, i, j = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    coords = np.stack([k, i, j, np.ones_like(k)], axis=-1) @ index.T
    voxels = coords[..., :3].astype(int)
    stack = data[voxels[..., 0], voxels[..., 1], voxels[..., 2]]
    col_step, row_step = stored_to_lps[:3, 1], stored_to_lps[:3, 2]
    row_spacing, col_spacing = np.linalg.norm(col_step), np.linalg.norm(row_step)
    orientation = [*(row_step / col_spacing), *(col_step / row_spacing)]
    positions = [stored_to_lps[:3, :3] @ [n, 0, 0] + stored_to_lps[:3, 3] for n in range(shape[0])]
    study_uid = study_uid or generate_uid()
    for_uid = frame_of_reference_uid or generate_uid()
    series_uid = generate_uid()
    slice_gap = float(np.linalg.norm(stored_to_lps[:3, 0]))
    common = dict(study_uid=study_uid, series_uid=series_uid, for_uid=for_uid, description=description,
                  series_number=series_number, spacing=(row_spacing, col_spacing), thickness=slice_gap)
    order = [n for n in range(shape[0]) if n not in skip]
    if duplicate is not None:
        order.append(duplicate)
    if enhanced:
        path = folder / f"ENH0001{suffix}"
        frames = list(order) if shuffle_seed is None else list(np.random.default_rng(shuffle_seed).permutation(order))
        ds = _enhanced(stack[frames], [positions[n] for n in frames], orientation, **common)
        _save(ds, path, transfer_syntax)
        numbers = {n: f + 1 for f, n in enumerate(frames)}
        return WrittenSeries([path] * len(order), voxels[order], series_uid, [ds.SOPInstanceUID] * len(order),
                             [numbers[n] for n in order])
    names = list(range(len(order)))
    if shuffle_seed is not None:
        names = list(np.random.default_rng(shuffle_seed).permutation(names))
    files, sops = [], []
    for slot, n in enumerate(order):
        ds = _classic(stack[n], positions[n], orientation, instance=names[slot] + 1, **common)
        path = folder / f"IM{names[slot] + 1:04d}{suffix}"
        _save(ds, path, transfer_syntax)
        files.append(path)
        sops.append(ds.SOPInstanceUID)
    return WrittenSeries(files, voxels[order], series_uid, sops, [None] * len(order))


def _base(sop_class: str, study_uid: str, series_uid: str, for_uid: str, description: str, series_number: int) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "MR"
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "TEST^SERIES", "GPEDGE-TEST", "", "O"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, for_uid
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20260101", "120000", "1", ""
    ds.ReferringPhysicianName = ""
    ds.SeriesDescription, ds.ProtocolName, ds.SeriesNumber = description, description, series_number
    ds.Manufacturer = "gpedge-tests"
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    return ds


def _classic(pixels, position, orientation, *, instance, spacing, thickness, **common) -> Dataset:
    ds = _base(MRImageStorage, **common)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
    ds.ImageOrientationPatient = [f"{v:.6f}" for v in orientation]
    ds.PixelSpacing = [f"{v:.6f}" for v in spacing]
    ds.SliceThickness = f"{thickness:.6f}"
    ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions, ds.MRAcquisitionType = "SE", "NONE", "", "3D"
    ds.EchoTrainLength = 1
    ds.Rows, ds.Columns = pixels.shape
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 1, 0, "US"
    ds.PixelData = np.ascontiguousarray(pixels, dtype=np.int16).tobytes()
    return ds


def _enhanced(frames, positions, orientation, *, spacing, thickness, **common) -> Dataset:
    ds = _base(EnhancedMRImageStorage, **common)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
    ds.InstanceNumber = 1
    ds.NumberOfFrames = len(frames)
    ds.Rows, ds.Columns = frames.shape[1:]
    shared = Dataset()
    measures = Dataset()
    measures.PixelSpacing = [f"{v:.6f}" for v in spacing]
    measures.SliceThickness = f"{thickness:.6f}"
    plane = Dataset()
    plane.ImageOrientationPatient = [f"{v:.6f}" for v in orientation]
    transform = Dataset()
    transform.RescaleSlope, transform.RescaleIntercept, transform.RescaleType = 0.5, -10, "US"
    shared.PixelMeasuresSequence = [measures]
    shared.PlaneOrientationSequence = [plane]
    shared.PixelValueTransformationSequence = [transform]
    ds.SharedFunctionalGroupsSequence = [shared]
    per_frame = []
    for position in positions:
        item = Dataset()
        pos = Dataset()
        pos.ImagePositionPatient = [f"{v:.6f}" for v in position]
        item.PlanePositionSequence = [pos]
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = per_frame
    stored = (np.asarray(frames, dtype=np.float64) + 10) * 2  # undone by the slope/intercept above
    ds.PixelData = np.ascontiguousarray(stored, dtype=np.int16).tobytes()
    return ds


def _save(ds: Dataset, path: Path, transfer_syntax: str) -> None:
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    if transfer_syntax != ExplicitVRLittleEndian:
        ds.compress(transfer_syntax)
    ds.save_as(path, enforce_file_format=True)
