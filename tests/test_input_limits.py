"""Bounded resources: an input's size is read from its header and refused above the pixel limit before
anything is decoded; overlays stay small whatever the input's shape."""
from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import pydicom
import pytest

from gpedge.errors import InputError
from gpedge.runtime.io import load_input
from conftest import EXAMPLES, EXAMPLE_SCAN

#: The memory a subprocess may use in the tests below (address space): the refusals must fit.
MEMORY_LIMIT = 3 << 30


def zero_png(path: Path, height: int, width: int) -> Path:
    """A valid 8-bit grey PNG of zeros, written row by row into a zlib stream (no large array in the test)."""
    compressor = zlib.compressobj(9)
    row = b"\x00" * (width + 1)  # filter byte + pixels
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


def infer_limited(*args: str | Path) -> subprocess.CompletedProcess:
    """``gpedge infer`` with at most MEMORY_LIMIT bytes of address space."""
    code = (
        "import resource, sys; resource.setrlimit(resource.RLIMIT_AS, ({0}, {0})); "
        "sys.argv = ['gpedge', 'infer'] + sys.argv[1:]; from gpedge.cli import main; main()"
    ).format(MEMORY_LIMIT)
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("side", [30000, 40000])
def test_huge_png_is_refused_from_its_header(tmp_path: Path, side: int) -> None:
    """0.9-1.6 MB files that decode to 0.9-1.6 gigapixels: one line, exit 2, within 3 GB of address space."""
    path = zero_png(tmp_path / f"zeros{side}.png", side, side)
    assert path.stat().st_size < 2 << 20
    done = infer_limited(path, EXAMPLE_SCAN, "--json", "--backend", "onnxruntime")
    assert done.returncode == 2, done.stderr[-2000:]
    errors = done.stderr.strip().splitlines()
    assert len(errors) == 1 and f"{side} x {side}" in errors[0] and "--max-pixels" in errors[0], done.stderr[-2000:]
    assert "cv2.error" not in done.stderr and "Traceback" not in done.stderr
    assert len(done.stdout.splitlines()) == 1  # the example after it was still processed


def test_elongated_png_gets_a_small_overlay(tmp_path: Path) -> None:
    """100000 x 16 pixels: accepted (1.6 megapixels), and its overlay is not scaled to gigapixels."""
    path = tmp_path / "strip.png"
    cv2.imwrite(str(path), np.random.default_rng(0).integers(1, 255, (16, 100_000), dtype=np.uint8))
    out = tmp_path / "out"
    done = infer_limited(path, "--out", out, "--backend", "onnxruntime")
    assert done.returncode == 0, done.stderr[-2000:]
    overlay = cv2.imread(str(out / "strip_overlay.png"))
    assert overlay is not None and max(overlay.shape[:2]) <= 2048 + 200


def test_limit_is_configurable(tmp_path: Path) -> None:
    from gpedge.runtime.predictor import Predictor

    with Predictor(backend="onnxruntime", max_pixels=200 * 200) as predictor:
        with pytest.raises(InputError, match=r"240 x 240 = 57,600 pixels, more than the limit of 40,000"):
            predictor.predict(EXAMPLE_SCAN)
        with pytest.raises(InputError, match="more than the limit"):
            predictor.predict(np.ones((2, 1, 150, 150), np.float32))
    done = subprocess.run(
        [sys.executable, "-m", "gpedge.cli", "infer", str(EXAMPLE_SCAN), "--max-pixels", "1000"],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2 and "more than the limit of 1,000" in done.stderr


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif"])
@pytest.mark.parametrize("shape", [(17, 300), (300, 17), (64, 64)])
def test_header_sizes_match_what_opencv_decodes(tmp_path: Path, suffix: str, shape: tuple[int, int]) -> None:
    from gpedge.runtime.io import image_header_size

    image = np.random.default_rng(1).integers(0, 255, shape, dtype=np.uint8)
    for data in (image, cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)):
        ok, buf = cv2.imencode(suffix, data)
        assert ok
        assert image_header_size(buf.tobytes()) == shape
    assert image_header_size(b"BM" + b"\x00" * 64) is None  # a BMP is not a documented input


def test_dicom_size_is_checked_before_decoding(tmp_path: Path) -> None:
    """A header claiming 60000 x 60000 pixels is refused by the limit, not by the decoder."""
    ds = pydicom.dcmread(EXAMPLES / "hgg_flair.dcm")
    ds.Rows = ds.Columns = 60000
    path = tmp_path / "huge.dcm"
    ds.save_as(path)
    with pytest.raises(InputError, match="60000 x 60000 = 3,600,000,000 pixels"):
        load_input(path, ["flair"])


def test_nifti_size_is_checked_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge.nii"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), np.eye(4)), path)
    data = bytearray(path.read_bytes())
    struct.pack_into("<8h", data, 40, 3, 30000, 30000, 400, 1, 1, 1, 1)  # dim[0..7]
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="30000 x 30000 x 400"):
        load_input(path, ["t1ce"])
