"""DICOM series: grouping by SeriesInstanceUID, slice order along the normal, geometry checks (pydicom).

Slices are ordered by their ImagePositionPatient projected on the slice normal (the cross product
of the ImageOrientationPatient cosines), never by file name or InstanceNumber. A series is refused
with a clear message when its images mix orientations, pixel spacings or sizes, when two images lie
at the same position (repeated slices, several echoes or phases; copies of one instance, the same
SOPInstanceUID in several files, are read once), when slices are missing (a gap)
or irregularly spaced, or when the stack is sheared. Classic single-frame objects and enhanced
multi-frame objects (positions from the functional groups) are both read.

Objects without patient geometry (no ImagePositionPatient/ImageOrientationPatient, e.g. secondary
captures) are read one file at a time, frames as stored, as ``gpedge infer`` always has.
Sagittal and coronal acquisitions are resliced to axial by axis permutation (exact, no
interpolation) when their voxels are near isotropic, and refused otherwise.
"""
from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from gpedge.dicom.discovery import dicom_files
from gpedge.dicom.geometry import Grid, Reorientation
from gpedge.dicom.pixels import decode
from gpedge.errors import GpedgeError, InputError
from gpedge.runtime.io import _first_line, reading

log = logging.getLogger(__name__)

#: Largest ratio of the in-plane pixel spacings of an axial reslice of a sagittal/coronal series.
MAX_RESLICE_ANISOTROPY = 1.5
#: Positions closer than this (mm, along the normal) are the same slice.
POSITION_TOL_MM = 0.01
#: Relative tolerance on slice spacing regularity.
SPACING_RTOL = 0.01
ORIENTATION_TOL = 1e-4
#: SOP classes that are results, not images to classify: Segmentation, Parametric Map.
_DERIVED_SOP_CLASSES = ("1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.30")


@dataclass(frozen=True)
class Frame:
    """One image plane: a single-frame file, or frame ``number`` (1-based) of a multi-frame file."""

    path: Path
    number: int | None
    position: tuple[float, float, float] | None = None
    orientation: tuple[float, ...] | None = None
    pixel_spacing: tuple[float, float] | None = None
    size: tuple[int, int] = (0, 0)

    @property
    def where(self) -> str:
        return str(self.path) if self.number is None else f"{self.path} frame {self.number}"


@dataclass
class DicomSeries:
    """The images of one series, ordered along the slice normal, with their geometry.

    ``frames`` are in stack order (ascending along the slice normal for geometric series, as
    stored otherwise); ``headers`` holds each file's dataset without pixel data; ``grid`` is ``None``
    for images without patient geometry.
    """

    uid: str
    study_uid: str
    frame_of_reference_uid: str | None
    description: str
    protocol: str
    number: int | None
    frames: list[Frame]
    headers: dict[Path, Dataset] = field(repr=False)
    grid: Grid | None = None

    @property
    def files(self) -> list[Path]:
        """Source files in stack order."""
        return list(dict.fromkeys(f.path for f in self.frames))

    @property
    def folder(self) -> Path:
        files = self.files
        return files[0] if len(files) == 1 else Path(os.path.commonpath([str(p.parent) for p in files]))

    @property
    def reorientation(self) -> Reorientation:
        """Stored stack -> display stack (identity for images without geometry)."""
        return self.grid.reorientation() if self.grid is not None else Reorientation((0, 1, 2), (False,) * 3)

    @property
    def name(self) -> str:
        """File-name stem for outputs: the file's stem for one file, else the series description."""
        files = self.files
        if len(files) == 1:
            stem = files[0].name
            for suffix in (".dcm", ".dicom"):
                if stem.lower().endswith(suffix):
                    stem = stem[: -len(suffix)]
            return stem
        text = self.description or (f"series{self.number}" if self.number is not None else self.folder.name)
        return re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("_") or "series"

    def __str__(self) -> str:
        files = self.files
        if len(files) == 1:
            return str(files[0])
        what = f"series {self.number}" if self.number is not None else f"series {self.uid}"
        if self.description:
            what += f" '{self.description}'"
        return f"{self.folder} ({what})"

    def read(self) -> np.ndarray:
        """Pixel data as (S, H, W) float32 scanner values in display orientation (see ``geometry``)."""
        stack = np.empty((len(self.frames), *self.frames[0].size), dtype=np.float32)
        for path, indices in self._frames_by_file().items():
            with reading(path, "DICOM file"):  # the header was read before: the file may have changed, or its pixel data be damaged
                pixels = decode(pydicom.dcmread(path), path)
                for k, number in indices:
                    if not 0 < (number or 1) <= len(pixels):
                        raise InputError(f"{path}: frame {number} is missing from the pixel data ({len(pixels)} frames)")
                    frame = pixels[(number or 1) - 1]
                    if frame.shape != stack.shape[1:]:
                        raise InputError(f"{path}: pixel data is {frame.shape}, the header says {stack.shape[1:]}")
                    stack[k] = frame
        return self.reorientation.to_display(stack)

    def to_source(self, display: np.ndarray) -> np.ndarray:
        """(S, H, W, ...) display stack -> (frames, rows, columns, ...) in :attr:`frames` order."""
        return self.reorientation.from_display(display)

    def _frames_by_file(self) -> dict[Path, list[tuple[int, int | None]]]:
        out: dict[Path, list[tuple[int, int | None]]] = {}
        for k, frame in enumerate(self.frames):
            out.setdefault(frame.path, []).append((k, frame.number))
        return out


def find_series(paths: Sequence[str | os.PathLike], on_error: Callable[[GpedgeError], None] | None = None) -> list[DicomSeries]:
    """DICOM series under ``paths`` (files, or folders searched recursively; any file name).

    Images are grouped by SeriesInstanceUID and ordered along the slice normal; each series'
    geometry is checked. Localisers, segmentations and parametric maps are skipped. Problems
    (unreadable files, inconsistent geometry, no image at all) raise
    :class:`~gpedge.errors.InputError`, or are passed to ``on_error`` and the other series kept
    (an empty list is then no problem).
    """
    series, problems = scan_series([Path(p) for p in paths])
    if not series and not problems and on_error is None:
        problems.append(InputError(
            f"{', '.join(map(str, paths)) or 'no paths'}: no DICOM images found; pass DICOM files or folders, "
            "image files, NIfTI volumes or a BraTS patient folder"
        ))
    for problem in problems:
        if on_error is None:
            raise problem
        on_error(problem)
    return series


def scan_series(paths: Sequence[Path]) -> tuple[list[DicomSeries], list[InputError]]:
    """:func:`find_series` returning the good series and the problems separately.

    Objects that are not images to classify are skipped in folders and refused when named.
    """
    problems: list[InputError] = []
    groups: dict[str, list[tuple[Path, Dataset]]] = {}
    named = {path for path in paths if not path.is_dir()}
    for path in dicom_files(paths, problems.append):
        try:
            ds = _read_header(path)
            with reading(path, "DICOM file"):
                reason = _skipped(ds)
                key = str(ds.get("SeriesInstanceUID", "")) or f"file:{path}"
                geometry = _has_geometry(ds)
        except InputError as exc:
            problems.append(exc)
            continue
        if reason:
            if path in named:
                problems.append(InputError(f"{path}: {reason}, not an image to classify"))
            log.info("%s: skipped (%s)", path, reason)
            continue
        groups.setdefault(key, []).append((path, ds, geometry))
    series: list[DicomSeries] = []
    for uid, members in groups.items():
        for part in _split_geometry_less(members):
            try:
                with reading(part[0][0], "DICOM header"):
                    series.append(_build(uid, part))
            except InputError as exc:
                problems.append(exc)
    return series, problems


def _read_header(path: Path) -> Dataset:
    """The header of ``path`` (no pixel data), every element parsed now: pydicom parses values lazily,
    so that a damaged value would otherwise surface later, outside any check."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except InvalidDicomError as exc:
        raise InputError(
            f"{path}: not a DICOM Part 10 file (no 'DICM' prefix or File Meta Information; old ACR-NEMA or "
            "data-set-only files lack them); rewrite it as Part 10 (e.g. dcmtk's dcmconv IN OUT) and retry"
        ) from exc
    except Exception as exc:  # pydicom raises many types for damaged files (EOFError, struct.error...)
        raise InputError(f"{path}: not a readable DICOM file ({_first_line(exc)})") from exc
    _parse_elements(ds, path)
    return ds


def _parse_elements(ds: Dataset, path: Path) -> None:
    """Parse every element of ``ds`` (nested sequences too): a standard element that cannot be parsed
    refuses the file; a private one is dropped (vendors' private data never feeds the model)."""
    for tag in list(ds.keys()):
        try:
            element = ds[tag]
            items = list(element.value) if element.VR == "SQ" else []
        except Exception as exc:  # pydicom: NotImplementedError (unknown VR), BytesLengthException, ValueError...
            if tag.is_private:
                log.info("%s: private element %s dropped (%s)", path, tag, _first_line(exc))
                del ds[tag]
                continue
            raise InputError(f"{path}: malformed DICOM header, element {tag} ({type(exc).__name__}: {_first_line(exc)})") from exc
        for item in items:
            if isinstance(item, Dataset):
                _parse_elements(item, path)


def _skipped(ds: Dataset) -> str | None:
    """Why an object is not an image to classify (None if it is)."""
    if str(ds.get("SOPClassUID", "")) in _DERIVED_SOP_CLASSES:
        return "a segmentation or parametric map"
    if "Rows" not in ds:
        return "no image (e.g. a structured report or DICOMDIR)"
    if "LOCALIZER" in [str(v).upper() for v in ds.get("ImageType", [])]:
        return "a localiser"
    return None


def _split_geometry_less(members: list[tuple[Path, Dataset, bool]]) -> list[list[tuple[Path, Dataset]]]:
    """Files without patient geometry form one series each (their order is unknown)."""
    with_geometry = _drop_copies([(path, ds) for path, ds, geometry in members if geometry])
    without = [[(path, ds)] for path, ds, geometry in members if not geometry]
    return ([with_geometry] if with_geometry else []) + without


def _drop_copies(members: list[tuple[Path, Dataset]]) -> list[tuple[Path, Dataset]]:
    """One file per SOPInstanceUID in a stack: copies of an instance (as exports that copy a file leave them)
    are one slice, not slices repeated at one position."""
    kept: dict[str, Path] = {}
    out = []
    for path, ds in members:
        instance = str(ds.get("SOPInstanceUID", ""))
        if instance in kept:
            log.info("%s: skipped, a copy of %s (the same SOPInstanceUID)", path, kept[instance])
            continue
        if instance:
            kept[instance] = path
        out.append((path, ds))
    return out


def _has_geometry(ds: Dataset) -> bool:
    if "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds:
        return _functional(ds, 0, "PlanePositionSequence", "ImagePositionPatient") is not None
    return "ImagePositionPatient" in ds and "ImageOrientationPatient" in ds and int(ds.get("NumberOfFrames", 1) or 1) == 1


def _functional(ds: Dataset, index: int, sequence: str, keyword: str) -> object:
    """An attribute from the per-frame, then the shared functional groups (None if absent)."""
    for groups, i in (("PerFrameFunctionalGroupsSequence", index), ("SharedFunctionalGroupsSequence", 0)):
        seq = ds.get(groups)
        if seq is None or len(seq) <= i:
            continue
        inner = seq[i].get(sequence)
        if inner and keyword in inner[0]:
            return inner[0][keyword].value
    return None


def _floats(value: object, n: int, where: str, what: str) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError) as exc:
        raise InputError(f"{where}: {what} is not numeric ({value!r})") from exc
    if len(out) != n or not np.isfinite(out).all():
        raise InputError(f"{where}: {what} must hold {n} finite numbers, got {value!r}")
    return out


def _frames(path: Path, ds: Dataset) -> list[Frame]:
    size = (int(ds.Rows), int(ds.Columns))
    if not _has_geometry(ds):
        count = int(ds.get("NumberOfFrames", 1) or 1)
        return [Frame(path, i + 1 if count > 1 else None, size=size) for i in range(count)]
    if "ImagePositionPatient" in ds and "PerFrameFunctionalGroupsSequence" not in ds:
        where = str(path)
        return [Frame(
            path, None,
            _floats(ds.ImagePositionPatient, 3, where, "ImagePositionPatient"),  # type: ignore[arg-type]
            _floats(ds.ImageOrientationPatient, 6, where, "ImageOrientationPatient"),
            _floats(ds.get("PixelSpacing", [1.0, 1.0]), 2, where, "PixelSpacing"),  # type: ignore[arg-type]
            size,
        )]
    frames = []
    for i in range(int(ds.get("NumberOfFrames", 1) or 1)):
        where = f"{path} frame {i + 1}"
        position = _functional(ds, i, "PlanePositionSequence", "ImagePositionPatient")
        orientation = _functional(ds, i, "PlaneOrientationSequence", "ImageOrientationPatient")
        spacing = _functional(ds, i, "PixelMeasuresSequence", "PixelSpacing") or [1.0, 1.0]
        if position is None or orientation is None:
            raise InputError(f"{where}: no ImagePositionPatient/ImageOrientationPatient in the functional groups")
        frames.append(Frame(
            path, i + 1,
            _floats(position, 3, where, "ImagePositionPatient"),  # type: ignore[arg-type]
            _floats(orientation, 6, where, "ImageOrientationPatient"),
            _floats(spacing, 2, where, "PixelSpacing"),  # type: ignore[arg-type]
            size,
        ))
    return frames


def _build(uid: str, members: list[tuple[Path, Dataset]]) -> DicomSeries:
    first = members[0][1]
    frames = [frame for path, ds in members for frame in _frames(path, ds)]
    number = first.get("SeriesNumber")
    series = DicomSeries(
        uid=str(first.get("SeriesInstanceUID", "")),
        study_uid=str(first.get("StudyInstanceUID", "")),
        frame_of_reference_uid=str(first.FrameOfReferenceUID) if "FrameOfReferenceUID" in first else None,
        description=str(first.get("SeriesDescription", "") or "").strip(),
        protocol=str(first.get("ProtocolName", "") or "").strip(),
        number=int(number) if number not in (None, "") else None,
        frames=frames,
        headers={path: ds for path, ds in members},
    )
    if frames[0].position is not None:
        series.frames, series.grid = _order(frames, first, str(series))
        _check_display(series)
    return series


def _order(frames: list[Frame], first: Dataset, where: str) -> tuple[list[Frame], Grid]:
    """Frames sorted along the normal and the stack's grid, after the consistency checks."""
    ref = frames[0]
    for frame in frames[1:]:
        if np.abs(np.subtract(frame.orientation, ref.orientation)).max() > ORIENTATION_TOL:
            raise InputError(
                f"{where}: images have different orientations ({_fmt(ref.orientation)} in {ref.where}, "
                f"{_fmt(frame.orientation)} in {frame.where}); one series must be one stack of parallel slices"
            )
        if not np.allclose(frame.pixel_spacing, ref.pixel_spacing, rtol=1e-4):
            raise InputError(
                f"{where}: images have different pixel spacings ({_fmt(ref.pixel_spacing)} mm in {ref.where}, "
                f"{_fmt(frame.pixel_spacing)} mm in {frame.where})"
            )
        if frame.size != ref.size:
            raise InputError(
                f"{where}: images have different sizes ({ref.size[0]}x{ref.size[1]} in {ref.where}, "
                f"{frame.size[0]}x{frame.size[1]} in {frame.where})"
            )
    row, col = np.asarray(ref.orientation[:3]), np.asarray(ref.orientation[3:])
    if abs(np.linalg.norm(row) - 1) > 1e-3 or abs(np.linalg.norm(col) - 1) > 1e-3 or abs(row @ col) > 1e-3:
        raise InputError(f"{where}: ImageOrientationPatient {_fmt(ref.orientation)} is not two orthogonal unit vectors")
    normal = np.cross(row, col)
    positions = np.array([f.position for f in frames], dtype=np.float64)
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    frames = [frames[i] for i in order]
    positions, along = positions[order], along[order]
    steps = np.diff(along)
    for k, step in enumerate(steps):
        if step <= POSITION_TOL_MM:
            raise InputError(
                f"{where}: {frames[k].where} and {frames[k + 1].where} lie at the same position "
                f"({along[k]:.2f} mm along the slice normal); the series repeats slices (several echoes, "
                "phases or a repeated acquisition?): keep one image per position"
            )
    spacing = float(np.median(steps)) if len(steps) else _single_spacing(first)
    for k, step in enumerate(steps):
        if abs(step - spacing) > max(SPACING_RTOL * spacing, POSITION_TOL_MM):
            missing = round(step / spacing) - 1
            what = (f"{missing} slice(s) missing" if missing >= 1 and abs(step - (missing + 1) * spacing) <= SPACING_RTOL * step
                    else "irregular slice spacing")
            raise InputError(
                f"{where}: {what} between {frames[k].where} and {frames[k + 1].where} ({step:.3g} mm apart, "
                f"the series' spacing is {spacing:.3g} mm); send the complete series"
            )
        shift = positions[k + 1] - positions[k] - step * normal
        if np.linalg.norm(shift) > max(SPACING_RTOL * step, POSITION_TOL_MM):
            raise InputError(
                f"{where}: slices are not stacked along their normal ({frames[k + 1].where} is shifted by "
                f"{np.linalg.norm(shift):.3g} mm in plane, e.g. a gantry tilt); resample the series to a regular stack"
            )
    grid = Grid(
        orientation=tuple(float(v) for v in ref.orientation),
        pixel_spacing=(float(ref.pixel_spacing[0]), float(ref.pixel_spacing[1])),
        slice_spacing=spacing,
        origin=tuple(float(v) for v in positions[0]),  # type: ignore[arg-type]
        shape=(len(frames), *ref.size),
    )
    return frames, grid


def _single_spacing(ds: Dataset) -> float:
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        value = ds.get(keyword)
        if value not in (None, "") and float(value) > 0:
            return float(value)
    return 1.0


def _check_display(series: DicomSeries) -> None:
    """Refuse sagittal/coronal stacks whose axial reslice would have strongly non-square pixels."""
    grid = series.grid
    assert grid is not None
    reorientation = grid.reorientation()
    if not reorientation.reslices:
        return
    _, rows, cols = reorientation.display_spacing(grid.spacing)
    ratio = max(rows, cols) / min(rows, cols)
    if grid.shape[0] == 1 or ratio > MAX_RESLICE_ANISOTROPY:
        raise InputError(
            f"{series}: a {grid.plane} acquisition ({grid.shape[0]} slice(s), {grid.slice_spacing:.3g} mm apart, "
            f"{_fmt(grid.pixel_spacing)} mm pixels); the model reads axial slices and reslicing this series to "
            f"axial would give {rows:.3g} x {cols:.3g} mm pixels (gpedge reslices only near-isotropic "
            f"volumes, ratio <= {MAX_RESLICE_ANISOTROPY}); send an axial series or a 3-D acquisition"
        )


def _fmt(values: Sequence[float] | None) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values or ()) + ")"
