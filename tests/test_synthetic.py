"""Synthetic BraTS-like MRI: file layout, label/segmentation consistency, tissue contrasts, determinism."""
from __future__ import annotations

import csv

import nibabel as nib
import numpy as np
import pytest

from gpedge.data import open_dataset, write_synthetic_brats
from gpedge.data.synthetic import synthesise_patient
from gpedge.errors import DataError

SHAPE = (48, 48, 20)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "brats"
    write_synthetic_brats(root, 4, seed=3, size=SHAPE[:2], slices=SHAPE[2])
    return root


@pytest.fixture(scope="module")
def patients():
    """Two HGG and two LGG patients with their tissue maps."""
    return {
        grade: [synthesise_patient(np.random.default_rng(s), grade, SHAPE) for s in (11, 12)] for grade in ("HGG", "LGG")
    }


def test_layout_dtypes_and_affine(synth_root):
    ids = sorted(p.name for p in synth_root.iterdir() if p.is_dir())
    assert ids == [f"BraTS20_Training_00{i}" for i in range(1, 5)]
    folder = synth_root / ids[0]
    for name in ("t1", "t2", "t1ce", "flair", "seg"):
        img = nib.load(folder / f"{ids[0]}_{name}.nii.gz")
        assert img.shape == SHAPE
        assert img.get_data_dtype() == (np.uint8 if name == "seg" else np.int16)
        assert nib.aff2axcodes(img.affine) == ("L", "P", "S")
        assert np.allclose(np.abs(np.diag(img.affine)[:3]), [240 / 48, 240 / 48, 155 / 20])
    with open(synth_root / "name_mapping.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["BraTS_2020_subject_ID"] for r in rows] == ids
    assert sorted(r["Grade"] for r in rows) == ["HGG", "HGG", "LGG", "LGG"]


def test_full_size_affine_is_brats(tmp_path):
    patient = synthesise_patient(np.random.default_rng(0), None, (240, 240, 155))
    expected = np.array([[-1, 0, 0, 0], [0, -1, 0, 239], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=float)
    assert np.allclose(patient.affine, expected)
    assert not patient.seg.any()


def test_labels_follow_segmentation(synth_root, tmp_path):
    ds = open_dataset(synth_root, cache_dir=tmp_path)
    grades = {}
    with open(synth_root / "name_mapping.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            grades[row["BraTS_2020_subject_ID"]] = ds.class_names.index(row["Grade"])
    seen = set()
    for i in range(len(ds)):
        sample = ds[i]
        seg = nib.load(synth_root / sample["patient"] / f"{sample['patient']}_seg.nii.gz").get_fdata()
        tumour = seg[:, :, sample["slice"]].any()
        assert sample["label"] == (grades[sample["patient"]] if tumour else 0)
        assert sample["mask"].any() == tumour
        seen.add(sample["label"])
    assert seen == {0, 1, 2}


def test_segmentation_labels_by_grade(patients):
    for p in patients["HGG"]:
        assert set(np.unique(p.seg)) <= {0, 1, 2, 4} and 4 in p.seg and 2 in p.seg
    for p in patients["LGG"]:
        assert set(np.unique(p.seg)) <= {0, 1, 2} and 1 in p.seg
    for p in patients["HGG"] + patients["LGG"]:
        assert np.all(p.volumes["t1"][p.seg > 0] > 0), "tumour must lie inside the brain"
        assert np.all(p.volumes["t1"][p.tissue == 0] == 0), "skull-stripped: background is zero"


def _mean(volume, where):
    assert where.sum() > 20
    return float(volume[where].mean())


def test_tissue_contrasts(patients):
    for p in patients["HGG"] + patients["LGG"]:
        normal = p.seg == 0
        csf, gm, wm = ((p.tissue == k) & normal for k in (1, 2, 3))
        v = p.volumes
        assert _mean(v["t1"], wm) > _mean(v["t1"], gm) > _mean(v["t1"], csf)
        assert _mean(v["t1ce"], wm) > _mean(v["t1ce"], gm) > _mean(v["t1ce"], csf)
        assert _mean(v["t2"], csf) > _mean(v["t2"], gm) > _mean(v["t2"], wm)
        assert _mean(v["flair"], gm) > _mean(v["flair"], wm) > _mean(v["flair"], csf)
        assert _mean(v["flair"], p.seg == 2) > _mean(v["flair"], wm)


def test_tumour_contrasts(patients):
    for p in patients["HGG"]:
        v, wm = p.volumes, (p.tissue == 3) & (p.seg == 0)
        rim = p.seg == 4
        assert _mean(v["t1ce"], rim) > 1.2 * _mean(v["t1ce"], wm), "enhancing rim is bright on T1CE"
        assert _mean(v["t1"], rim) < _mean(v["t1"], wm), "no enhancement without contrast agent"
        assert _mean(v["t2"], p.seg == 2) > _mean(v["t2"], wm)
    for p in patients["LGG"]:
        v, wm = p.volumes, (p.tissue == 3) & (p.seg == 0)
        core = p.seg == 1
        assert _mean(v["t1ce"], core) < _mean(v["t1ce"], wm), "LGG does not enhance"
        assert _mean(v["t1"], core) < _mean(v["t1"], wm)
        assert _mean(v["t2"], core) > _mean(v["t2"], wm)
        assert _mean(v["flair"], core) > _mean(v["flair"], wm)


def test_deterministic_by_seed():
    a = synthesise_patient(np.random.default_rng(5), "HGG", SHAPE)
    b = synthesise_patient(np.random.default_rng(5), "HGG", SHAPE)
    c = synthesise_patient(np.random.default_rng(6), "HGG", SHAPE)
    for name in a.volumes:
        assert np.array_equal(a.volumes[name], b.volumes[name])
        assert not np.array_equal(a.volumes[name], c.volumes[name])
    assert np.array_equal(a.seg, b.seg) and not np.array_equal(a.seg, c.seg)


def test_written_files_deterministic(tmp_path):
    write_synthetic_brats(tmp_path / "a", 1, seed=9, size=32, slices=12)
    write_synthetic_brats(tmp_path / "b", 1, seed=9, size=32, slices=12)
    for file in (tmp_path / "a").rglob("*.*"):
        assert file.read_bytes() == (tmp_path / "b" / file.relative_to(tmp_path / "a")).read_bytes()


def test_refuses_non_empty_output_and_bad_arguments(tmp_path):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x.txt").write_text("keep me")
    with pytest.raises(DataError, match="not an empty folder"):
        write_synthetic_brats(tmp_path / "used", 1, seed=0, size=32, slices=12)
    with pytest.raises(DataError, match="at least 1"):
        write_synthetic_brats(tmp_path / "new", 0, seed=0)
    with pytest.raises(DataError, match="shape"):
        write_synthetic_brats(tmp_path / "new", 1, seed=0, size=4, slices=12)


def test_synth_command(tmp_path):
    from typer.testing import CliRunner

    from gpedge.cli import app

    out = tmp_path / "cli"
    result = CliRunner().invoke(app, ["synth", str(out), "--patients", "2", "--seed", "1", "--size", "32", "--slices", "12"])
    assert result.exit_code == 0, result.output
    ds = open_dataset(out, cache_dir=tmp_path / "cache", image_size=32)
    assert ds.patients == ["BraTS20_Training_001", "BraTS20_Training_002"]
    assert ds[0]["image"].shape == (4, 32, 32)
