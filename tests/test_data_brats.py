"""BraTS 2020 reader on small hand-made volumes in the real layout (NIfTI + name_mapping.csv)."""
from __future__ import annotations

import csv
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from gpedge.data import open_dataset
from gpedge.errors import DataError

BRATS_AFFINE = np.array([[-1.0, 0, 0, 0], [0, -1.0, 0, 239], [0, 0, 1.0, 0], [0, 0, 0, 1]])
SHAPE = (20, 18, 6)  # X, Y, Z (the runtime reads slices of 16 px or more)
SCALE = {"t1": 100, "t2": 200, "t1ce": 300, "flair": 400}
GRADES = {"BraTS20_Training_001": "HGG", "BraTS20_Training_002": "LGG", "BraTS20_Training_003": "HGG"}
TUMOUR_SLICES = {"BraTS20_Training_001": {2, 3}, "BraTS20_Training_002": {1}, "BraTS20_Training_003": set()}


def _volume(seed: int, scale: int) -> np.ndarray:
    vol = np.random.default_rng(seed).integers(1, 50, size=SHAPE).astype(np.int16) * scale // 50
    vol[:, :, 0] = 0  # empty slice (dropped)
    vol[:, :, 5] = 0  # empty slice (dropped)
    return vol


def _save(data: np.ndarray, path: Path) -> None:
    nib.save(nib.Nifti1Image(data, BRATS_AFFINE), path)


def make_brats(root: Path, suffix: str = ".nii.gz") -> Path:
    root.mkdir(parents=True)
    for n, (patient, grade) in enumerate(GRADES.items()):
        folder = root / patient
        folder.mkdir()
        for c, contrast in enumerate(SCALE):
            _save(_volume(10 * n + c, SCALE[contrast]), folder / f"{patient}_{contrast}{suffix}")
        seg = np.zeros(SHAPE, dtype=np.uint8)
        for z in TUMOUR_SLICES[patient]:
            seg[3:6, 4:7, z] = 4 if grade == "HGG" else 1
            seg[2, 4, z] = 2
        _save(seg, folder / f"{patient}_seg{suffix}")
    with open(root / "name_mapping.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["Grade", "BraTS_2017_subject_ID", "BraTS_2020_subject_ID"])
        for patient, grade in GRADES.items():
            writer.writerow([grade, "NA", patient])
    return root


@pytest.fixture()
def brats(tmp_path):
    return make_brats(tmp_path / "MICCAI_BraTS2020_TrainingData")


@pytest.fixture()
def cache(tmp_path):
    return tmp_path / "cache"


def test_labels_and_dropped_slices(brats, cache):
    ds = open_dataset(brats, cache_dir=cache)
    assert ds.format == "brats" and ds.class_names == ["Healthy", "LGG", "HGG"] and ds.no_tumour_class == 0
    assert ds.channels == ["t1", "t2", "t1ce", "flair"]
    assert ds.patients == sorted(GRADES)
    assert len(ds) == 3 * 4  # slices 0 and 5 are all zero
    expected = []
    for patient, grade in GRADES.items():
        for z in range(1, 5):
            expected.append((patient, z, ds.class_names.index(grade) if z in TUMOUR_SLICES[patient] else 0))
    assert [(s["patient"], s["slice"], s["label"]) for s in (ds[i] for i in range(len(ds)))] == expected
    assert ds.labels.tolist() == [e[2] for e in expected]
    assert ds.patient_of == [e[0] for e in expected]
    assert ds.patient_classes == {"BraTS20_Training_001": 2, "BraTS20_Training_002": 1, "BraTS20_Training_003": 0}


def test_sample_normalisation_orientation_and_mask(brats, cache):
    from gpedge.runtime.io import read_nifti

    ds = open_dataset(brats, channels=["flair", "t1"], cache_dir=cache)
    sample = ds[1]
    patient, z = sample["patient"], sample["slice"]
    assert sample["image"].dtype == np.float32 and sample["image"].shape == (2, SHAPE[1], SHAPE[0])
    raw = np.stack([read_nifti(brats / patient / f"{patient}_{c}.nii.gz").images[z, 0] for c in ("flair", "t1")])
    assert np.allclose(sample["image"], raw / raw.max())  # joint maximum, not per channel
    assert sample["image"].max() == pytest.approx(1.0) and sample["image"][1].max() < 0.5
    seg = read_nifti(brats / patient / f"{patient}_seg.nii.gz").images[z, 0]
    assert sample["mask"].dtype == np.uint8 and np.array_equal(sample["mask"], (seg > 0).astype(np.uint8))


def test_resize(brats, cache):
    ds = open_dataset(brats, image_size=16, cache_dir=cache)
    sample = ds[2]
    assert sample["image"].shape == (4, 16, 16) and sample["mask"].shape == (16, 16)
    assert sample["image"].max() == pytest.approx(1.0)
    assert sample["mask"].any()


def test_channel_subset_drops_slices_empty_in_selected_channels(brats, cache):
    patient = brats / "BraTS20_Training_002"
    flair = nib.load(patient / "BraTS20_Training_002_flair.nii.gz").get_fdata().astype(np.int16)
    flair[:, :, 4] = 0
    _save(flair, patient / "BraTS20_Training_002_flair.nii.gz")
    assert len(open_dataset(brats, channels=["flair"], cache_dir=cache)) == 11
    assert len(open_dataset(brats, channels=["flair", "t2"], cache_dir=cache)) == 12


def test_cache_reused_and_invalidated(brats, cache):
    open_dataset(brats, cache_dir=cache)
    entries = sorted(p.name for p in cache.rglob("*.npy"))
    assert len(entries) == 6
    stamp = {p: p.stat().st_mtime_ns for p in cache.rglob("*.npy")}
    ds = open_dataset(brats, channels=["t2"], cache_dir=cache)
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*.npy")} == stamp
    assert len(ds) == 12

    seg_path = brats / "BraTS20_Training_003" / "BraTS20_Training_003_seg.nii.gz"
    seg = np.zeros(SHAPE, dtype=np.uint8)
    seg[5, 5, 4] = 2
    _save(seg, seg_path)
    os.utime(seg_path, ns=(1, 1))
    ds = open_dataset(brats, cache_dir=cache)
    assert sorted(p.name for p in cache.rglob("*.npy")) != entries
    assert len(list(cache.rglob("*.npy"))) == 6  # the stale entry was removed
    labels = {(s.patient, s.slice): s.label for s in ds.records}
    assert labels[("BraTS20_Training_003", 4)] == 2


def test_cache_dir_from_environment(brats, tmp_path, monkeypatch):
    monkeypatch.setenv("GPEDGE_CACHE", str(tmp_path / "env-cache"))
    ds = open_dataset(brats)
    assert len(list((tmp_path / "env-cache").rglob("*.json"))) == 3
    assert ds[0]["image"].shape == (4, SHAPE[1], SHAPE[0])


def test_plain_nii_and_patient_355_seg_name(tmp_path, cache):
    root = make_brats(tmp_path / "brats", suffix=".nii")
    folder = root / "BraTS20_Training_002"
    (folder / "BraTS20_Training_002_seg.nii").rename(folder / "W39_1998.09.19_Segm.nii")
    ds = open_dataset(root, format="brats", cache_dir=cache)
    assert ds.labels.tolist().count(1) == 1


def test_run_records_the_data_set_by_absolute_path(brats, cache, tmp_path, monkeypatch):
    """A data set opened by a relative path is recorded by its absolute one, so that export and evaluate
    find the run's validation patients from any working folder."""
    monkeypatch.chdir(brats.parent)
    ds = open_dataset(Path(brats.name), cache_dir=cache)
    monkeypatch.chdir(tmp_path.parent)
    recorded = Path(ds.describe()["path"])
    assert recorded.is_absolute() and recorded == brats


def test_subset_and_pickle(brats, cache):
    import pickle

    ds = open_dataset(brats, cache_dir=cache)
    ds[0]
    sub = ds.subset(["BraTS20_Training_002"])
    assert set(sub.patient_of) == {"BraTS20_Training_002"} and len(sub) == 4
    clone = pickle.loads(pickle.dumps(sub))
    assert np.array_equal(clone[0]["image"], sub[0]["image"])
    with pytest.raises(DataError, match="not in the data set"):
        ds.subset(["BraTS20_Training_999"])


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda r: (r / "BraTS20_Training_001" / "BraTS20_Training_001_t1ce.nii.gz").unlink(), "no t1ce file"),
        (lambda r: (r / "BraTS20_Training_001" / "BraTS20_Training_001_seg.nii.gz").unlink(), "no segmentation file"),
        (lambda r: (r / "name_mapping.csv").unlink(), "name_mapping.csv not found"),
        (lambda r: (r / "name_mapping.csv").write_text("Grade,ID\nHGG,BraTS20_Training_001\n"), "BraTS_2020_subject_ID missing"),
        (
            lambda r: (r / "name_mapping.csv").write_text(
                "Grade,BraTS_2020_subject_ID\nHGG,BraTS20_Training_001\nGBM,BraTS20_Training_002\n"
            ),
            "line 3: Grade is 'GBM'",
        ),
        (
            lambda r: (r / "name_mapping.csv").write_text("Grade,BraTS_2020_subject_ID\nHGG,BraTS20_Training_001\n"),
            "BraTS20_Training_002 has no row",
        ),
        (
            lambda r: _save(np.ones((20, 18, 7), np.int16), r / "BraTS20_Training_003" / "BraTS20_Training_003_t2.nii.gz"),
            "BraTS20_Training_003_t2.nii.gz: shape",
        ),
        (
            lambda r: (r / "BraTS20_Training_001" / "BraTS20_Training_001_flair.nii.gz").write_bytes(b"not a nifti"),
            "BraTS20_Training_001_flair.nii.gz: not a readable NIfTI",
        ),
    ],
)
def test_malformed_data_errors(brats, cache, damage, message):
    damage(brats)
    with pytest.raises(DataError, match=message):
        open_dataset(brats, cache_dir=cache)


def test_bad_channels(brats, cache):
    with pytest.raises(DataError, match="choose distinct names"):
        open_dataset(brats, channels=["t1", "dwi"], cache_dir=cache)
