"""Reading scans into model inputs and writing results back (numpy, OpenCV, pydicom, nibabel).

Every reader returns a :class:`Scan`: a stack of (C, H, W) float32 slices of raw intensities.

- PNG / JPEG / TIFF: 8- or 16-bit (or float TIFF), grey or colour (converted to grey); one
  slice, as stored.
- DICOM (``gpedge.dicom``): files and folders of any file names are grouped into series, slices
  ordered along their normal and shown in the same display orientation as NIfTI volumes; the
  modality LUT is applied, MONOCHROME1 inverted, colour converted to grey. Images without patient
  geometry are read as stored, one slice per frame.
- NIfTI (``.nii``/``.nii.gz``): every axial slice. Volumes are first reoriented to RAS, and each
  axial slice is then shown in radiological display orientation: anterior at the top, the
  patient's right on the left of the image (the model sees the same orientation). Masks are
  mapped back to the source voxel grid when written (:func:`write_mask_nifti`).
- BraTS patient folder: ``<patient>_{t1,t2,t1ce,flair}.nii[.gz]``, stacked in the model's channel
  order; or an explicit mapping of contrast name to file.

Any problem with an input raises :class:`gpedge.errors.InputError` naming the file: the readers'
own exceptions never escape (:func:`reading`). The size of an input is read from its header before
any pixel is decoded and refused above ``max_pixels`` (:data:`DEFAULT_MAX_PIXELS`; see
:func:`check_size`).
"""
from __future__ import annotations

import gzip
import re
import struct
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from gpedge.atomic import atomic_write_bytes
from gpedge.errors import GpedgeError, InputError

if TYPE_CHECKING:
    import nibabel as nib

#: Smallest accepted image side in pixels.
MIN_SIZE = 16
#: Most pixels one input may hold, over all its slices or frames and per channel (512 x 512 x 512).
#: Peak memory is about ``4 * (channels + classes) + 2`` bytes per pixel; override with
#: ``Predictor(max_pixels=...)`` or ``gpedge infer --max-pixels``.
DEFAULT_MAX_PIXELS = 1 << 27
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
DICOM_SUFFIXES = (".dcm", ".dicom")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
CONTRASTS = ("t1", "t2", "t1ce", "flair")
_CONTRAST_FILE = re.compile(r"^(?P<stem>.*)_(?P<contrast>t1|t2|t1ce|flair)\.nii(\.gz)?$", re.IGNORECASE)
#: File name endings that are outputs or ground truth, skipped when a folder is expanded.
_SKIP_STEMS = ("_mask", "_heatmap", "_overlay", "_seg")


@dataclass
class VolumeGeometry:
    """What is needed to write a per-slice mask stack back into the source volume's voxel grid."""

    affine: np.ndarray
    header: object
    shape: tuple[int, int, int]
    to_ras: np.ndarray


@dataclass
class Scan:
    """Model inputs read from one source.

    ``images`` is (S, C, H, W) float32 raw intensities; ``slices`` holds the slice or frame
    number of each image for volumes and multi-frame DICOM (``None`` for a single 2-D image);
    ``channels`` names the contrasts when known; ``volume`` is set for NIfTI sources; ``pixel_spacing``
    is (between rows, between columns) of the images in mm when the source says it (NIfTI, DICOM with
    patient geometry), else ``None`` (square pixels are assumed).
    """

    images: np.ndarray
    path: Path | None = None
    name: str = "image"
    slices: list[int] | None = None
    channels: list[str] | None = None
    volume: VolumeGeometry | None = None
    load_ms: float = 0.0
    pixel_spacing: tuple[float, float] | None = None

    @property
    def is_volume(self) -> bool:
        return self.slices is not None

    @property
    def pixel_aspect(self) -> float:
        """A pixel's width over its height (1 when the spacing is unknown)."""
        return 1.0 if self.pixel_spacing is None else self.pixel_spacing[1] / self.pixel_spacing[0]


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", *IMAGE_SUFFIXES, *DICOM_SUFFIXES, ".nii"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


@contextmanager
def reading(where: str | Path, what: str = "file") -> Iterator[None]:
    """Turn any exception of a third-party reader into an :class:`InputError` naming ``where``.

    Floating-point warnings of numpy are silenced inside (damaged headers divide by zero); the
    error says what was found, so nothing else needs to be printed.
    """
    try:
        with np.errstate(all="ignore"):
            yield
    except GpedgeError:
        raise
    except MemoryError:
        raise InputError(f"{where}: too large to read into memory") from None
    except OSError as exc:
        raise InputError(f"{where}: cannot be read ({exc.strerror or exc})") from exc
    except Exception as exc:  # pydicom, nibabel and OpenCV raise many types for damaged files
        raise InputError(f"{where}: damaged or not a valid {what} ({type(exc).__name__}: {_first_line(exc)})") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else "no details"


def check_size(shape: Sequence[int], where: str | Path, max_pixels: int) -> None:
    """Refuse an input whose ``shape`` (slices or frames, rows, columns; from its header) exceeds ``max_pixels``."""
    pixels = int(np.prod([int(v) for v in shape], dtype=np.float64))
    if pixels > max_pixels:
        dims = " x ".join(str(int(v)) for v in shape)
        raise InputError(
            f"{where}: {dims} = {pixels:,} pixels, more than the limit of {max_pixels:,}; "
            "raise it with --max-pixels (Predictor(max_pixels=...)) if this input is genuine"
        )


#: The first four bytes of a classic or Big TIFF, little- or big-endian.
TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def image_header_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) of a PNG, JPEG or TIFF from its header, without decoding; None if not one of these."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return height, width
    if data[:2] == b"\xff\xd8":
        return _jpeg_size(data)
    if data[:4] in TIFF_MAGIC:
        directories = _tiff_directories(data, limit=1)
        return (directories[0]["height"], directories[0]["width"]) if directories else None
    return None


#: JPEG start-of-frame markers (baseline, extended, progressive, lossless; Huffman and arithmetic).
_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker in _SOF_MARKERS and pos + 9 <= len(data):
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return height, width
        if marker in (0xD9, 0xDA) or length < 2:
            return None
        pos += 2 + length
    return None


#: TIFF field types by size and struct format (SHORT, LONG, LONG8).
_TIFF_TYPES = {3: "H", 4: "I", 16: "Q"}
#: The tags read: ImageWidth, ImageLength, BitsPerSample, SamplesPerPixel, PlanarConfiguration, NewSubfileType.
_TIFF_TAGS = {256: "width", 257: "height", 258: "bits", 277: "samples", 284: "planar", 254: "subfile"}


def _tiff_directories(data: bytes, limit: int = 2) -> list[dict[str, int]] | None:
    """The first value of the tags in :data:`_TIFF_TAGS` for up to ``limit`` directories of a classic or Big TIFF.

    The chain ends at a directory seen before (a loop) and once more entries were read than the file can hold
    without overlapping directories: a crafted chain costs no more than reading the file once."""
    order = "<" if data[:2] == b"II" else ">"
    big = struct.unpack(order + "H", data[2:4])[0] == 43
    offset_format, count_format, entry, inline = ("Q", "Q", 20, 8) if big else ("I", "H", 12, 4)
    offset_size, count_size = struct.calcsize(offset_format), struct.calcsize(count_format)
    directories: list[dict[str, int]] = []
    seen: set[int] = set()
    entries_left = len(data) // entry + 4096  # directories that do not overlap hold no more entries than this
    try:
        (offset,) = struct.unpack(order + offset_format, data[8:16] if big else data[4:8])
        while offset and offset not in seen and len(directories) < limit:
            seen.add(offset)
            (count,) = struct.unpack(order + count_format, data[offset : offset + count_size])
            entries_left -= min(count, 4096)
            if entries_left < 0:
                break
            start = offset + count_size
            found: dict[str, int] = {}
            for i in range(min(count, 4096)):
                at = start + i * entry
                tag, kind = struct.unpack(order + "HH", data[at : at + 4])
                fmt = _TIFF_TYPES.get(kind)
                if tag not in _TIFF_TAGS or fmt is None:
                    continue
                (values,) = struct.unpack(order + offset_format, data[at + 4 : at + 4 + offset_size])
                value_at = at + 4 + offset_size
                if values * struct.calcsize(fmt) > inline:
                    (value_at,) = struct.unpack(order + offset_format, data[value_at : value_at + offset_size])
                (found[_TIFF_TAGS[tag]],) = struct.unpack(order + fmt, data[value_at : value_at + struct.calcsize(fmt)])
            directories.append(found)
            next_at = start + count * entry
            (offset,) = struct.unpack(order + offset_format, data[next_at : next_at + offset_size])
    except struct.error:
        pass  # a damaged directory ends the list; the ones read before it stand
    return directories if directories and {"width", "height"} <= directories[0].keys() else None


#: Most TIFF directories walked (pages and their thumbnails); a longer chain is refused as damaged.
_MAX_TIFF_DIRECTORIES = 65536


def _tiff_pages(data: bytes, where: Path, max_pixels: int) -> list[int]:
    """Indices of a TIFF's full-resolution pages (thumbnails, NewSubfileType bit 0, left out), checked before decoding:
    every page the size of the first, the stack within ``max_pixels``, no layout OpenCV would decode wrongly."""
    directories = _tiff_directories(data, limit=_MAX_TIFF_DIRECTORIES + 1) or [{}]
    if len(directories) > _MAX_TIFF_DIRECTORIES:
        raise InputError(f"{where}: TIFF with more than {_MAX_TIFF_DIRECTORIES:,} directories; damaged or not a scan")
    first = directories[0]
    pages = [i for i, d in enumerate(directories) if not d.get("subfile", 0) & 1] or [0]
    for i in pages:
        page = directories[i]
        if page.get("planar") == 2 and page.get("samples", 1) > 1 and page.get("bits", 8) > 8:
            raise InputError(
                f"{where}: TIFF with {page['bits']}-bit samples stored as separate colour planes, which OpenCV "
                "decodes wrongly; save it as one grey channel or with interleaved samples (PlanarConfiguration 1)"
            )
        if (page.get("height"), page.get("width")) != (first.get("height"), first.get("width")):
            raise InputError(
                f"{where}: TIFF page {i + 1} is {page.get('height')}x{page.get('width')} px, page 1 "
                f"{first.get('height')}x{first.get('width')}; a multi-page TIFF is read as a stack of slices of one "
                "size: save the pages as separate files"
            )
    if len(pages) > 1:
        check_size((len(pages), first["height"], first["width"]), where, max_pixels)
    return pages


def _check_pixels(arr: np.ndarray, where: str) -> np.ndarray:
    if arr.shape[-1] < MIN_SIZE or arr.shape[-2] < MIN_SIZE:
        raise InputError(
            f"{where}: image is {arr.shape[-2]}x{arr.shape[-1]} px, too small (at least {MIN_SIZE}x{MIN_SIZE} px needed)"
        )
    if not np.isfinite(arr).all():
        raise InputError(f"{where}: contains NaN or infinite values; replace them (e.g. with 0) and retry")
    return arr


def luminance(rgb: np.ndarray) -> np.ndarray:
    """(..., 3|4) in RGB(A) order -> (...) float32 luminance (ITU-R BT.601 weights)."""
    return rgb[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _to_grey(arr: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 3|4) in RGB(A) order -> (H, W) float32 luminance."""
    return luminance(arr) if arr.ndim == 3 else arr.astype(np.float32)


def _decoded_to_grey(arr: np.ndarray, size: tuple[int, int], where: Path) -> np.ndarray:
    """One image as OpenCV decodes it (grey, BGR or BGRA) -> (H, W) float32 grey, checked against the header's size."""
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.shape[:2] != size:
        raise InputError(f"{where}: decoded {arr.shape[0]}x{arr.shape[1]} px, the header says {size[0]}x{size[1]}")
    if arr.ndim == 3:
        order = cv2.COLOR_BGRA2RGBA if arr.shape[2] == 4 else cv2.COLOR_BGR2RGB
        arr = cv2.cvtColor(arr, order)
    return _check_pixels(_to_grey(arr), str(where))


def read_image(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Scan:
    """Read a PNG, JPEG or TIFF (8/16-bit or float, grey or colour) as one 1-channel slice; a multi-page TIFF as a
    stack of slices, one per full-resolution page (thumbnails left out).

    The size is read from the header and checked against ``max_pixels`` before decoding.
    """
    flags = cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH
    unreadable = f"{path}: not a readable image (damaged, truncated or not a PNG/JPEG/TIFF file)"
    with reading(path, "PNG/JPEG/TIFF image"):
        raw = path.read_bytes()
        size = image_header_size(raw)
        if size is None:
            raise InputError(unreadable)
        check_size(size, path, max_pixels)
        pages = _tiff_pages(raw, path, max_pixels) if raw[:4] in TIFF_MAGIC else [0]
        if len(pages) > 1:
            decoded, images = cv2.imdecodemulti(np.frombuffer(raw, np.uint8), flags)
            if not decoded or len(images) <= pages[-1]:
                raise InputError(f"{path}: not every page of this multi-page TIFF could be decoded (damaged?)")
            stack = np.stack([_decoded_to_grey(images[i], size, path) for i in pages])
            return Scan(images=stack[:, None], path=path, name=_stem(path), slices=list(range(len(pages))))
        arr = cv2.imdecode(np.frombuffer(raw, np.uint8), flags)
        if arr is None:
            raise InputError(unreadable)
        grey = _decoded_to_grey(arr, size, path)
    return Scan(images=grey[None, None], path=path, name=_stem(path))


def read_dicom(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Scan:
    """Read one DICOM file (single- or multi-frame) as a stack in display orientation (see ``gpedge.dicom``)."""
    from gpedge.dicom.study import read_series

    return read_series([path]).load(max_pixels)


def _display_stack(volume: np.ndarray) -> np.ndarray:
    """RAS (X, Y, Z) -> (Z, rows, cols) axial slices, anterior up, patient's right on the left."""
    return np.ascontiguousarray(volume.transpose(2, 1, 0)[:, ::-1, ::-1])


def _from_display_stack(stack: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_display_stack`."""
    return stack[:, ::-1, ::-1].transpose(2, 1, 0)


def read_nifti(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Scan:
    """Read a 3-D NIfTI volume (or a 2-D slice) as one slice per axial plane in radiological display orientation.

    The shape is read from the header and checked against ``max_pixels`` before the data.
    """
    import nibabel as nib
    from nibabel.orientations import apply_orientation, axcodes2ornt, io_orientation, ornt_transform

    with reading(path, "NIfTI file"):
        img = nib.load(path)
        shape = tuple(int(v) for v in img.shape)
        if len(shape) == 4 and shape[3] == 1:
            shape = shape[:3]
        if len(shape) == 2:
            shape = (*shape, 1)  # one slice stored as a 2-D image
        if len(shape) != 3:
            raise InputError(
                f"{path}: NIfTI image has shape {shape}; a 3-D volume or a 2-D slice is needed "
                "(pass one file per contrast with --t1/--t2/--t1ce/--flair)"
            )
        check_size(shape, path, max_pixels)
        affine = np.asarray(img.affine, dtype=np.float64)
        if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
            raise InputError(
                f"{path}: the NIfTI header's affine (sform/qform) is degenerate (zero or not finite), so the "
                "slice orientation is unknown; fix the header (e.g. nibabel or fslorient) and retry"
            )
        data = _nifti_voxels(img, path).reshape(shape)
        to_ras = ornt_transform(io_orientation(affine), axcodes2ornt("RAS"))
        stack = _check_pixels(_display_stack(apply_orientation(data, to_ras)), str(path))
    geometry = VolumeGeometry(affine=img.affine, header=img.header, shape=shape, to_ras=to_ras)
    return Scan(
        images=stack[:, None], path=path, name=_stem(path), slices=list(range(stack.shape[0])), volume=geometry,
        pixel_spacing=_display_spacing(affine),
    )


def _display_spacing(affine: np.ndarray) -> tuple[float, float]:
    """(between rows, between columns) in mm of :func:`_display_stack` slices: the voxel sizes along
    anterior-posterior and left-right."""
    from nibabel.orientations import io_orientation

    sizes = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    along = {int(axis): float(size) for (axis, _), size in zip(io_orientation(affine), sizes)}
    return along[1], along[0]


def _nifti_voxels(img: nib.spatialimages.SpatialImage, path: Path) -> np.ndarray:
    """Scaled voxel values as float32; RGB(A) voxels become grey as colour images do, complex ones are refused."""
    dtype = img.get_data_dtype()
    if dtype.kind == "c":
        raise InputError(
            f"{path}: NIfTI voxels are complex ({dtype}); gpedge reads magnitude images: save the magnitude "
            "(e.g. numpy.abs of the data) as a real-valued NIfTI and retry"
        )
    if dtype.names:
        voxels = np.asarray(img.dataobj)
        return luminance(np.stack([voxels[name] for name in dtype.names], axis=-1))
    return np.asarray(img.dataobj, dtype=np.float32)


def read_file(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Scan:
    """Read one scan file (format from its name; DICOM also by its magic bytes)."""
    path = Path(path)
    with reading(path):
        if not path.exists():
            raise InputError(f"{path}: no such file or folder")
        if path.is_dir():
            raise InputError(f"{path}: is a folder, not a file")
        if path.stat().st_size == 0:
            raise InputError(f"{path}: file is empty")
    name = path.name.lower()
    if name.endswith(NIFTI_SUFFIXES):
        return read_nifti(path, max_pixels)
    if is_dicom_file(path):
        return read_dicom(path, max_pixels)
    if name.endswith(IMAGE_SUFFIXES):
        return read_image(path, max_pixels)
    raise InputError(
        f"{path}: unsupported file type; use PNG, JPEG, TIFF, DICOM (.dcm) or NIfTI (.nii, .nii.gz)"
    )


def is_dicom_file(path: Path) -> bool:
    """Whether ``path`` is a file with a DICOM suffix or the DICOM preamble (``DICM`` at byte 128)."""
    try:
        if not path.is_file():
            return False
        if path.name.lower().endswith(DICOM_SUFFIXES):
            return True
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM"


def contrast_files(folder: Path) -> dict[str, Path]:
    """The ``<patient>_<contrast>.nii[.gz]`` files of a BraTS patient folder, by contrast."""
    found: dict[str, Path] = {}
    for entry in sorted(folder.iterdir()):
        match = _CONTRAST_FILE.match(entry.name)
        if match and entry.is_file():
            found.setdefault(match["contrast"].lower(), entry)
    return found


def is_patient_folder(path: Path) -> bool:
    """Whether ``path`` is a folder holding BraTS-style contrast files."""
    return path.is_dir() and bool(contrast_files(path))


def read_contrasts(
    files: Mapping[str, str | Path], channels: Sequence[str], where: str | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Scan:
    """Read one file per contrast and stack them in ``channels`` order into one multi-channel scan."""
    files = {k.lower(): Path(v) for k, v in files.items() if v is not None}
    missing = [c for c in channels if c not in files]
    where = where or ", ".join(str(p) for p in files.values()) or "inputs"
    if missing:
        flags = " ".join(f"--{c}" for c in missing)
        raise InputError(
            f"{where}: the model needs the contrasts {', '.join(channels)}; missing {', '.join(missing)} (pass {flags})"
        )
    scans = [read_file(files[c], max_pixels) for c in channels]
    first = scans[0]
    for contrast, scan in zip(channels, scans):
        if scan.images.shape != first.images.shape:
            raise InputError(
                f"{files[contrast]}: {contrast} has {_describe(scan)}, but {files[channels[0]]} has "
                f"{_describe(first)}; all contrasts must be co-registered on the same grid"
            )
    images = np.concatenate([s.images for s in scans], axis=1)
    match = _CONTRAST_FILE.match(first.path.name) if first.path else None
    name = match["stem"] if match else first.name
    return Scan(
        images=images, path=first.path, name=name, slices=first.slices, channels=list(channels), volume=first.volume,
        pixel_spacing=first.pixel_spacing,
    )


def _describe(scan: Scan) -> str:
    s, _, h, w = scan.images.shape
    return f"{s} slice(s) of {h}x{w}"


def read_patient_folder(folder: Path, channels: Sequence[str], max_pixels: int = DEFAULT_MAX_PIXELS) -> Scan:
    """Read a BraTS patient folder, stacking the contrasts the model needs in its channel order."""
    with reading(folder):
        found = contrast_files(folder)
    missing = [c for c in channels if c not in found]
    if missing:
        raise InputError(
            f"{folder}: no {', '.join(missing)} file (expected <patient>_{missing[0]}.nii.gz); "
            f"the model needs {', '.join(channels)}"
        )
    scan = read_contrasts({c: found[c] for c in channels}, channels, str(folder), max_pixels)
    scan.path, scan.name = folder, folder.name
    return scan


def from_array(array: np.ndarray, name: str = "array", max_pixels: int = DEFAULT_MAX_PIXELS) -> Scan:
    """Wrap an (H, W), (C, H, W) or (N, C, H, W) array of raw intensities."""
    arr = np.asarray(array)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number) or arr.ndim not in (2, 3, 4):
        raise InputError(
            f"{name}: expected a numeric array of shape (H, W), (C, H, W) or (N, C, H, W), got a {arr.dtype} array "
            f"of shape {arr.shape}"
        )
    if arr.ndim == 3 and arr.shape[-1] in (3, 4) and min(arr.shape[:2]) >= MIN_SIZE:
        raise InputError(
            f"{name}: an array of shape {arr.shape} is a channels-last colour image; pass it as grey (H, W) "
            "(gpedge.runtime.io.luminance(array)) or as channels first (C, H, W)"
        )
    check_size((arr.shape[0] if arr.ndim == 4 else 1, *arr.shape[-2:]), name, max_pixels)
    arr = arr.astype(np.float32).reshape((1,) * (4 - arr.ndim) + arr.shape)
    _check_pixels(arr, name)
    slices = list(range(arr.shape[0])) if np.ndim(array) == 4 else None
    return Scan(images=arr, name=name, slices=slices)


def load_input(item: object, channels: Sequence[str], name: str = "array", max_pixels: int = DEFAULT_MAX_PIXELS) -> Scan:
    """Read any supported input (array, file, patient folder, {contrast: file} mapping, DICOM study
    from ``gpedge.dicom``) for a model.

    Raises :class:`InputError` if the input cannot be read, holds more than ``max_pixels`` pixels
    (per channel, over all slices) or its channel count does not match the model's ``channels``.
    """
    from gpedge.dicom.study import DicomStudy, read_study

    if isinstance(item, Scan):
        scan = item
    elif isinstance(item, np.ndarray):
        scan = from_array(item, name, max_pixels)
    elif isinstance(item, DicomStudy):
        scan = item.load(max_pixels)
    elif isinstance(item, Mapping):
        scan = read_contrasts(item, channels, max_pixels=max_pixels)
    elif isinstance(item, (str, Path)):
        path = Path(item)
        with reading(path):
            folder = path.is_dir()
            patient = folder and is_patient_folder(path)
        if patient:
            scan = read_patient_folder(path, channels, max_pixels)
        elif folder or is_dicom_file(path):
            scan = read_study(path, channels).load(max_pixels)
        else:
            scan = read_file(path, max_pixels)
    else:
        raise InputError(f"unsupported input of type {type(item).__name__}; pass an array, a path or a list of them")
    check_channels(scan, channels)
    if scan.channels is None and len(channels) == scan.images.shape[1]:
        scan.channels = list(channels)
    return scan


def check_channels(scan: Scan, channels: Sequence[str]) -> None:
    """Raise :class:`InputError` unless the scan has as many channels as the model."""
    have, need = scan.images.shape[1], len(channels)
    if have == need:
        return
    where = str(scan.path) if scan.path else scan.name
    hint = (
        "pass a BraTS patient folder, a DICOM study with a series per contrast, or one file per contrast "
        "(gpedge infer --t1/--t2/--t1ce/--flair, Predictor.predict({contrast: path}))"
        if need > 1
        else f"pass a single-contrast ({channels[0]}) image"
    )
    raise InputError(
        f"{where}: input has {have} channel(s), the model needs {need} ({', '.join(channels)}); {hint}"
    )


def expand_paths(
    paths: Sequence[str | Path], on_error: Callable[[InputError], None] | None = None
) -> list[Path]:
    """Files and patient folders to process: folders that are not patient folders are expanded
    to their image and NIfTI files and patient sub-folders (sorted; ground-truth and output files
    skipped). DICOM files in folders are left to ``gpedge.dicom``, which groups them into series.

    A folder that cannot be listed raises :class:`InputError`, or is passed to ``on_error`` and
    skipped. Files are not opened here: their readers report their problems.
    """
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        try:
            with reading(path):
                out.extend(_expand(path))
        except InputError as exc:
            if on_error is None:
                raise
            on_error(exc)
    return out


def _expand(path: Path) -> list[Path]:
    if not path.is_dir() or is_patient_folder(path):
        return [path]
    out: list[Path] = []
    for entry in sorted(path.iterdir()):
        lower = entry.name.lower()
        if entry.is_dir():
            if is_patient_folder(entry):
                out.append(entry)
        elif lower.endswith(IMAGE_SUFFIXES + NIFTI_SUFFIXES) and not _stem(entry).lower().endswith(_SKIP_STEMS):
            out.append(entry)
    return out


# -- writers -------------------------------------------------------------------------------------
def png_bytes(image: np.ndarray, where: str | Path = "image") -> bytes:
    """A (H, W) grey or (H, W, 3) RGB uint8 image encoded as PNG."""
    arr = np.ascontiguousarray(image)
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", arr)
    if not ok:
        raise OSError(f"could not encode {where} as PNG")
    return buf.tobytes()


def write_png(path: str | Path, image: np.ndarray) -> None:
    """Write a (H, W) grey or (H, W, 3) RGB uint8 image as PNG, atomically."""
    atomic_write_bytes(path, png_bytes(image, path))


def mask_nifti_bytes(masks: np.ndarray, volume: VolumeGeometry, compress: bool = True) -> bytes:
    """A (S, H, W) display-orientation mask stack as a uint8 NIfTI file on the source grid (gzipped when ``compress``)."""
    import nibabel as nib
    from nibabel.orientations import apply_orientation

    ras = _from_display_stack(np.asarray(masks, dtype=np.uint8))
    data = np.ascontiguousarray(apply_orientation(ras, _inverse(volume.to_ras)))
    header = volume.header.copy() if isinstance(volume.header, nib.Nifti1Header) else None
    if header is not None:
        data = data.reshape(header.get_data_shape())  # the source's own shape: a 2-D slice stays 2-D
    img = nib.Nifti1Image(data.astype(np.uint8), volume.affine, header=header)
    img.set_data_dtype(np.uint8)
    img.header.set_slope_inter(1.0, 0.0)
    payload = img.to_bytes()
    return gzip.compress(payload, compresslevel=6) if compress else payload


def write_mask_nifti(path: str | Path, masks: np.ndarray, volume: VolumeGeometry) -> None:
    """Write a (S, H, W) display-orientation mask stack as a uint8 NIfTI on the source grid, atomically."""
    atomic_write_bytes(path, mask_nifti_bytes(masks, volume, str(path).endswith(".gz")))


def _inverse(ornt: np.ndarray) -> np.ndarray:
    """The orientation transform that undoes ``ornt`` (an ``ornt_transform`` result)."""
    inverse = np.empty_like(ornt)
    for axis, (target, flip) in enumerate(ornt):
        inverse[int(target)] = (axis, flip)
    return inverse
