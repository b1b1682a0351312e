"""Figshare (Cheng et al.) reader on MATLAB v7.3 files written like MATLAB does (HDF5, transposed, char PID)."""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from gpedge.data import open_dataset
from gpedge.errors import DataError

MATLAB_HEADER = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."


def write_mat(path: Path, image: np.ndarray, label: int, pid: str, mask: np.ndarray, skip: str | None = None) -> None:
    """A v7.3 .mat file: 512-byte MATLAB user block, column-major (transposed) arrays, uint16 char PID."""
    with h5py.File(path, "w", userblock_size=512) as fh:
        group = fh.create_group("cjdata")
        items = {
            "image": (image.T.astype(np.int16), "int16"),
            "label": (np.array([[float(label)]]), "double"),
            "PID": (np.array([[ord(c)] for c in pid], dtype=np.uint16).T, "char"),
            "tumorMask": (mask.T.astype(np.uint8), "logical"),
            "tumorBorder": (np.array([[1.0, 2.0, 3.0, 4.0]]).T, "double"),
        }
        for name, (data, cls) in items.items():
            if name == skip:
                continue
            group.create_dataset(name, data=data).attrs["MATLAB_class"] = np.bytes_(cls)
    with open(path, "r+b") as fh:
        fh.write(MATLAB_HEADER.ljust(128, b" "))


def _slice(seed: int, shape=(24, 20)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 1000, size=shape)
    mask = np.zeros(shape, dtype=np.uint8)
    mask[5 + seed : 9 + seed, 3:12] = 1
    return image, mask


@pytest.fixture()
def figshare(tmp_path):
    root = tmp_path / "figshare"
    (root / "brainTumorDataPublic_1-766").mkdir(parents=True)
    (root / "brainTumorDataPublic_767-1532").mkdir()
    specs = [(1, 1, "100360"), (2, 2, "100360"), (10, 3, "MR029"), (800, 2, "112649")]
    for number, label, pid in specs:
        folder = root / ("brainTumorDataPublic_1-766" if number < 767 else "brainTumorDataPublic_767-1532")
        image, mask = _slice(number % 7)
        write_mat(folder / f"{number}.mat", image, label, pid, mask)
    (root / "cvind.mat").write_bytes(b"MATLAB 5.0 MAT-file" + bytes(200))
    return root


def test_reads_labels_patients_and_transposed_arrays(figshare):
    ds = open_dataset(figshare)
    assert ds.format == "figshare" and ds.class_names == ["meningioma", "glioma", "pituitary"]
    assert ds.no_tumour_class is None and ds.channels == ["t1ce"]
    assert [r.slice for r in ds.records] == [1, 2, 10, 800]
    assert ds.labels.tolist() == [0, 1, 2, 1]
    assert ds.patient_of == ["100360", "100360", "MR029", "112649"]
    sample = ds[2]
    image, mask = _slice(10 % 7)
    assert sample["image"].shape == (1, 24, 20)
    assert np.allclose(sample["image"][0], image / image.max())
    assert np.array_equal(sample["mask"], mask)
    assert ds.patient_classes == {"100360": 0, "112649": 1, "MR029": 2}


def test_resize_and_single_file(figshare):
    ds = open_dataset(figshare, image_size=(16, 12))
    assert ds[0]["image"].shape == (1, 16, 12) and ds[0]["mask"].shape == (16, 12)
    single = open_dataset(figshare / "brainTumorDataPublic_1-766" / "10.mat")
    assert len(single) == 1 and single.patients == ["MR029"]


def test_not_hdf5_error_names_file(figshare):
    bad = figshare / "brainTumorDataPublic_1-766" / "5.mat"
    bad.write_bytes(b"MATLAB 5.0 MAT-file" + bytes(300))
    with pytest.raises(DataError, match=r"5\.mat: not a MATLAB v7\.3 \(HDF5\) file"):
        open_dataset(figshare)


@pytest.mark.parametrize("key", ["label", "PID", "image", "tumorMask"])
def test_missing_key_error(figshare, key):
    image, mask = _slice(1)
    write_mat(figshare / "brainTumorDataPublic_1-766" / "7.mat", image, 1, "1", mask, skip=key)
    with pytest.raises(DataError, match=f"7.mat: missing cjdata/{key}"):
        open_dataset(figshare)


def test_bad_label_and_channels(figshare):
    image, mask = _slice(1)
    write_mat(figshare / "brainTumorDataPublic_1-766" / "8.mat", image, 4, "1", mask)
    with pytest.raises(DataError, match="8.mat: cjdata/label is \\[4.0\\]"):
        open_dataset(figshare)
    with pytest.raises(DataError, match="single channel t1ce"):
        open_dataset(figshare, format="figshare", channels=["t1", "t2"])


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no .mat files"):
        open_dataset(tmp_path / "empty", format="figshare")
