"""Decoding DICOM pixel data into float32 frames of scanner values (pydicom).

The modality transform is applied (Rescale Slope/Intercept or Modality LUT; per frame from the
functional groups of enhanced multi-frame objects), MONOCHROME1 is inverted so that bright means
high signal, colour (RGB, YBR, PALETTE COLOR through its lookup table) is converted to grey. A
transfer syntax that no installed pydicom plugin decodes gives an :class:`~gpedge.errors.InputError`
naming the syntax and what to install.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from gpedge.errors import InputError


def decode(ds: Dataset, where: str | Path) -> np.ndarray:
    """All frames of ``ds`` as (F, rows, columns) float32 scanner values."""
    if not any(tag in ds for tag in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise InputError(f"{where}: DICOM object has no pixel data (not an image)")
    _check_decoder(ds, where)
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # pydicom raises many types for damaged or unsupported pixel data
        reason = " ".join(str(exc).split())[:400]
        raise InputError(f"{where}: DICOM pixel data cannot be decoded ({reason}); {_CONVERT}") from exc
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames == 1:
        pixels = pixels[None]
    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    if int(ds.get("SamplesPerPixel", 1)) > 1 or photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        from gpedge.runtime.io import luminance

        return luminance(apply_color_lut(pixels, ds) if photometric == "PALETTE COLOR" else pixels)
    out = np.stack([_modality(ds, f, i) for i, f in enumerate(pixels)]).astype(np.float32)
    if photometric == "MONOCHROME1":
        out = out.max() + out.min() - out
    return out


def _modality(ds: Dataset, frame: np.ndarray, index: int) -> np.ndarray:
    """Apply the frame's modality transform (per-frame, then shared functional groups, then top level)."""
    from pydicom.pixels import apply_modality_lut

    for groups in (_item(ds, "PerFrameFunctionalGroupsSequence", index), _item(ds, "SharedFunctionalGroupsSequence", 0)):
        transform = _item(groups, "PixelValueTransformationSequence", 0) if groups is not None else None
        if transform is not None and "RescaleSlope" in transform:
            slope = float(transform.RescaleSlope)
            intercept = float(transform.get("RescaleIntercept", 0.0))
            return frame.astype(np.float64) * slope + intercept
    return np.asarray(apply_modality_lut(frame, ds), dtype=np.float64)


def _item(ds: Dataset | None, keyword: str, index: int) -> Dataset | None:
    seq = ds.get(keyword) if ds is not None else None
    return seq[index] if seq is not None and len(seq) > index else None


def _check_decoder(ds: Dataset, where: str | Path) -> None:
    """Raise a clear error when the transfer syntax is compressed and nothing here decodes it."""
    from pydicom.pixels import get_decoder

    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if syntax is None or not syntax.is_compressed:
        return
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise InputError(
            f"{where}: pixel data is compressed as '{syntax.name}' ({syntax}), which pydicom cannot decode; {_CONVERT}"
        ) from None
    if not decoder.is_available:
        raise InputError(
            f"{where}: pixel data is compressed as '{syntax.name}' ({syntax}) and no installed decoder reads it; "
            f"{install_hint(decoder.missing_dependencies)}, or {_CONVERT}"
        )


#: What to do with pixel data no installed decoder reads.
_CONVERT = "convert the series to an uncompressed transfer syntax (e.g. dcmdjpeg IN OUT, gdcmconv --raw IN OUT)"
#: The pydicom plugins that ``gpedge[dicom]`` installs (Pillow and pyjpegls with highdicom, python-gdcm).
_EXTRA_PLUGINS = ("gdcm", "pillow", "pyjpegls")
#: PyPI names of the packages pydicom names by their import names.
_DISTRIBUTIONS = {"gdcm": "python-gdcm"}


def install_hint(missing_dependencies: list[str]) -> str:
    """What to install for a transfer syntax, from pydicom's ``missing_dependencies`` of its decoder:
    gpedge's DICOM extra where one of its plugins decodes the syntax, else the plugins themselves."""
    options = [_install_command(dep) for dep in missing_dependencies]
    if any(dep.partition(" - ")[0] in _EXTRA_PLUGINS for dep in missing_dependencies):
        options.insert(0, "pip install 'gpedge[dicom]'")
    return f"install a decoder ({' or '.join(options)})"


def _install_command(dependency: str) -> str:
    """pydicom's "gdcm - requires gdcm>=3.0.10" -> 'pip install "python-gdcm>=3.0.10"'."""
    _, _, requires = dependency.partition(" - requires ")
    packages = [p.strip() for p in (requires or dependency).split(" and ")]
    return "pip install " + " ".join(f'"{_distribution(p)}"' for p in packages)


def _distribution(requirement: str) -> str:
    name = re.match(r"[A-Za-z0-9_.-]+", requirement)
    if name is None or name.group() not in _DISTRIBUTIONS:
        return requirement
    return _DISTRIBUTIONS[name.group()] + requirement[name.end():]
