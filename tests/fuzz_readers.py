"""Mutation fuzzing of every input reader: damaged files must give a GpedgeError, never another exception.

Shared by ``tests/test_fuzz_readers.py`` (bounded, in the default suite) and
``scripts/fuzz_readers.py`` (the long run with its committed result). Seeds are real files of every
format gpedge reads: the bundled PNG, DICOM and NIfTI examples, JPEG and 8/16-bit/float TIFF
encodings, an uncompressed NIfTI, a classic MR series (three files, through discovery, grouping,
geometry and decoding) and an enhanced multi-frame MR object. A mutation flips bytes (mostly in
the header), writes extreme integers, truncates, splices, or sets a DICOM attribute that the
readers use to a malformed value.
"""
from __future__ import annotations

import io
import shutil
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import pydicom

from dicom_series import write_series
from gpedge.errors import GpedgeError
from gpedge.runtime.io import load_input
from conftest import EXAMPLES

#: A small limit keeps mutated headers that claim huge images from allocating much.
MAX_PIXELS = 1 << 22
#: DICOM attributes the readers use, and malformed values for them.
DICOM_FIELDS = (
    "Rows", "Columns", "NumberOfFrames", "BitsAllocated", "BitsStored", "PixelRepresentation", "SamplesPerPixel",
    "PhotometricInterpretation", "RescaleSlope", "RescaleIntercept", "ImagePositionPatient",
    "ImageOrientationPatient", "PixelSpacing", "SliceThickness", "SpacingBetweenSlices", "SeriesInstanceUID",
    "SeriesDescription", "SOPClassUID", "ImageType", "SeriesNumber", "WindowCenter",
)
DICOM_VALUES = ("", "abc", "nan", "inf", "-1", "0", "1e309", "65535", "4294967296", "1\\2", "0\\0\\0\\0\\0\\0",
                "1\\0\\0\\0\\0\\0", "-0", "\x00\xff", "MONOCHROME1", "RGB", "LOCALIZER")
EXTREME_INTS = (0, 1, 0x7F, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF)


class Choices:
    """Where a mutation's random choices come from (hypothesis draws or a seeded ``random.Random``)."""

    def __init__(self, integer: Callable[[int, int], int]) -> None:
        self.integer = integer

    def pick(self, options):
        return options[self.integer(0, len(options) - 1)]


@dataclass
class Seed:
    """A well-formed input: its files (name -> bytes), the one that is mutated, and what is passed to the reader."""

    kind: str
    files: dict[str, bytes]
    target: str
    entry: str  # the file name passed to the reader, or "." for the folder


KINDS = ("png", "png16", "jpeg", "tiff16", "tiff-float", "dicom", "nifti", "nifti-gz", "dicom-series", "dicom-enhanced")


def make_seeds(folder: Path) -> dict[str, Seed]:
    """Every seed by kind (:data:`KINDS`), built from the bundled examples (series are written under ``folder``)."""
    folder.mkdir(parents=True, exist_ok=True)
    grey8 = cv2.imread(str(EXAMPLES / "hgg_t1ce.png"), cv2.IMREAD_GRAYSCALE)
    grey16 = cv2.imread(str(EXAMPLES / "lgg_t1ce.png"), cv2.IMREAD_UNCHANGED)
    small = cv2.resize(grey8, (48, 48), interpolation=cv2.INTER_AREA)
    seeds = [
        Seed("png", {"a.png": (EXAMPLES / "hgg_t1ce.png").read_bytes()}, "a.png", "a.png"),
        Seed("png16", {"a.png": _encode(".png", cv2.resize(grey16, (48, 48)))}, "a.png", "a.png"),
        Seed("jpeg", {"a.jpg": _encode(".jpg", cv2.cvtColor(small, cv2.COLOR_GRAY2BGR))}, "a.jpg", "a.jpg"),
        Seed("tiff16", {"a.tif": _encode(".tiff", cv2.resize(grey16, (48, 48)))}, "a.tif", "a.tif"),
        Seed("tiff-float", {"a.tif": _encode(".tiff", small.astype(np.float32) / 7)}, "a.tif", "a.tif"),
        Seed("dicom", {"a.dcm": (EXAMPLES / "hgg_t1ce.dcm").read_bytes()}, "a.dcm", "a.dcm"),
    ]
    volume = np.asarray(nib.load(EXAMPLES / "lgg_t1ce.nii.gz").dataobj)[::5, ::5, 8:11]
    nifti = nib.Nifti1Image(volume.astype(np.int16), np.diag([-5.0, -5.0, 1.0, 1.0]))
    seeds.append(Seed("nifti", {"a.nii": nifti.to_bytes()}, "a.nii", "a.nii"))
    seeds.append(Seed("nifti-gz", {"a.nii.gz": (EXAMPLES / "lgg_t1ce.nii.gz").read_bytes()}, "a.nii.gz", "a.nii.gz"))
    series = write_series(folder / "series", volume, nifti.affine)
    seeds.append(Seed("dicom-series", {p.name: p.read_bytes() for p in series.files}, series.files[1].name, "."))
    enhanced = write_series(folder / "enhanced", volume, nifti.affine, enhanced=True)
    seeds.append(Seed("dicom-enhanced", {enhanced.files[0].name: enhanced.files[0].read_bytes()}, enhanced.files[0].name, "."))
    shutil.rmtree(folder / "series")
    shutil.rmtree(folder / "enhanced")
    assert tuple(seed.kind for seed in seeds) == KINDS
    return {seed.kind: seed for seed in seeds}


def _encode(suffix: str, image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(suffix, image)
    assert ok, suffix
    return buf.tobytes()


def mutate(seed: Seed, choose: Choices) -> bytes:
    """A mutated copy of the seed's target file."""
    data = bytearray(seed.files[seed.target])
    mode = choose.pick(("flip", "flip", "integer", "truncate", "splice", "field") if seed.kind.startswith("dicom")
                       else ("flip", "flip", "integer", "truncate", "splice"))
    if mode == "field":
        return _dicom_field(bytes(data), choose)
    if mode == "truncate":
        return bytes(data[: choose.integer(0, len(data) - 1)])
    if mode == "splice":
        start, length = choose.integer(0, len(data) - 1), choose.integer(1, 4096)
        chunk = data[choose.integer(0, len(data) - 1):][:length]
        return bytes(data[:start] + chunk + data[start + choose.integer(0, length):])
    for _ in range(choose.integer(1, 8)):
        position = _position(len(data), choose)
        if mode == "flip":
            data[position] = choose.integer(0, 255)
        else:
            size = choose.pick((1, 2, 4))
            value = choose.pick(EXTREME_INTS) & ((1 << (8 * size)) - 1)
            packed = struct.pack(choose.pick(("<", ">")) + {1: "B", 2: "H", 4: "I"}[size], value)
            data[position : position + size] = packed[: len(data) - position]
    if seed.kind.startswith("png") and choose.integer(0, 1):
        _fix_png_crcs(data)  # so that the damage reaches the decoder, not only libpng's CRC check
    return bytes(data)


def _fix_png_crcs(data: bytearray) -> None:
    """Recompute the CRC of every chunk whose length still fits the data."""
    position = 8
    while position + 12 <= len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        end = position + 8 + length
        if end + 4 > len(data):
            return
        data[end : end + 4] = struct.pack(">I", zlib.crc32(bytes(data[position + 4 : end])))
        position = end + 4


def _position(length: int, choose: Choices) -> int:
    """Mostly in the first kilobytes, where the headers are."""
    if choose.integer(0, 3):
        return choose.integer(0, min(length, 2048) - 1)
    return choose.integer(0, length - 1)


def _dicom_field(data: bytes, choose: Choices) -> bytes:
    """Replace the raw value (and maybe the VR) of an attribute the readers use, top level or in a
    functional group, as a damaged or non-conformant file would have it."""
    from pydicom.dataelem import RawDataElement
    from pydicom.datadict import tag_for_keyword

    ds = pydicom.dcmread(io.BytesIO(data))
    keyword = choose.pick(DICOM_FIELDS)
    tag = tag_for_keyword(keyword)
    holders = [ds]
    for sequence in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        for group in ds.get(sequence, []):
            holders.extend(item for element in group if element.VR == "SQ" for item in element.value)
    holder = choose.pick([h for h in holders if tag in h] or [ds])
    vr = holder[tag].VR if tag in holder else pydicom.datadict.dictionary_VR(tag)
    vr = choose.pick((vr, vr, vr, "UN", "ZZ", "SQ", "OB"))
    value = choose.pick(DICOM_VALUES).encode("latin-1")
    value += b"\x00" * (len(value) % 2)
    holder._dict[tag] = RawDataElement(tag, vr, len(value), value, 0, False, True)
    buffer = io.BytesIO()
    try:
        ds.save_as(buffer, enforce_file_format=False)
    except Exception:  # the writer refuses some combinations: damage one byte instead
        mutated = bytearray(data)
        mutated[_position(len(data), choose)] ^= 0xFF
        return bytes(mutated)
    return buffer.getvalue()


def read(seed: Seed, mutated: bytes, folder: Path) -> str:
    """Write the seed with its mutated target into a fresh ``folder`` and read it as ``gpedge infer`` would.

    Returns ``"ok"`` or ``"refused"`` (a GpedgeError); any other exception propagates.
    """
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name, data in seed.files.items():
        (folder / name).write_bytes(mutated if name == seed.target else data)
    try:
        load_input(folder / seed.entry if seed.entry != "." else folder, ["t1ce"], max_pixels=MAX_PIXELS)
    except GpedgeError:
        return "refused"
    return "ok"
