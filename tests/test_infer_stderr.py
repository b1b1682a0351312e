"""``gpedge infer`` keeps stderr to one line per problem: libpng, OpenCV's TIFF reader, nibabel's logger
and numpy's RuntimeWarnings print nothing of their own."""
from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np

from conftest import EXAMPLES, EXAMPLE_SCAN


def _noisy_inputs(folder: Path) -> tuple[list[Path], list[Path]]:
    """Inputs whose libraries print to stderr: (those gpedge reads, those it refuses)."""
    png = (EXAMPLE_SCAN).read_bytes()
    end_of_ihdr = 8 + 25
    bad_text = struct.pack(">I", 5) + b"tEXt" + b"a\x00bcd" + b"\x00\x00\x00\x00"  # libpng warning: tEXt: CRC error
    (folder / "text_crc.png").write_bytes(png[:end_of_ihdr] + bad_text + png[end_of_ihdr:])
    (folder / "truncated.png").write_bytes(png[: len(png) // 2])  # libpng error
    ok, tiff = cv2.imencode(".tiff", cv2.imread(str(EXAMPLE_SCAN), cv2.IMREAD_UNCHANGED))
    tiff = bytearray(tiff.tobytes())
    (ifd,) = struct.unpack("<I", tiff[4:8])
    (count,) = struct.unpack("<H", tiff[ifd : ifd + 2])
    for at in range(ifd + 2, ifd + 2 + 12 * count, 12):
        if struct.unpack("<H", tiff[at : at + 2])[0] == 284:  # PlanarConfiguration: a wrong count, a libtiff error
            struct.pack_into("<I", tiff, at + 4, 2)
    (folder / "planar.tif").write_bytes(bytes(tiff))
    volume = np.asarray(nib.load(EXAMPLES / "lgg_flair.nii.gz").dataobj)[..., :2]
    header = bytearray(nib.Nifti1Image(volume, np.eye(4)).to_bytes())
    struct.pack_into("<8f", header, 76, 1, 0, 0, 0, 1, 1, 1, 1)  # zero pixdims: nibabel logs a fix
    struct.pack_into("<hh", header, 252, 0, 0)
    (folder / "pixdim.nii").write_bytes(bytes(header))
    struct.pack_into("<hh", header, 252, 0, 1)
    struct.pack_into("<12f", header, 280, *([0.0] * 12))  # zero sform: numpy RuntimeWarnings in nibabel
    (folder / "affine.nii").write_bytes(bytes(header))
    read = [folder / "text_crc.png", folder / "pixdim.nii", EXAMPLES / "hgg_flair.dcm"]
    refused = [folder / "truncated.png", folder / "planar.tif", folder / "affine.nii"]
    return read, refused


def test_stderr_is_one_line_per_problem(tmp_path: Path) -> None:
    read, refused = _noisy_inputs(tmp_path)
    command = [sys.executable, "-m", "gpedge.cli", "infer", *map(str, read + refused), "--json", "--backend", "onnxruntime"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == len(refused), done.stderr
    for line, path in zip(lines, refused):
        assert line.startswith(f"error: {path}: "), line
    assert len(done.stdout.splitlines()) == 1 + 2 + 1  # text_crc.png, pixdim.nii's two slices, the DICOM


def test_a_clean_run_prints_nothing_on_stderr(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "gpedge.cli", "infer", str(EXAMPLE_SCAN), "--out",
                           str(tmp_path), "--backend", "onnxruntime"], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0 and done.stderr == "", done.stderr
