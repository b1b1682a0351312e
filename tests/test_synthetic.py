"""Synthetic brain MRI: layout, labels, contrasts, randomisation, no class cue but the lesion, held-out family, PNG sets."""
from __future__ import annotations

import csv

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from gpedge.data import open_dataset, write_synthetic_brats
from gpedge.data.brats import read_grades
from gpedge.data.synthetic import FAMILIES, display_slices, synthesise_patient, write_synthetic_pngs
from gpedge.data.synthetic import contrast, lesions, scanner
from gpedge.data.synthetic.anatomy import template_source
from gpedge.data.synthetic.fields import Grid
from gpedge.errors import DataError

SHAPE = (48, 48, 20)
PATIENT_SHAPE = (64, 64, 32)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "brats"
    write_synthetic_brats(root, 4, seed=3, size=SHAPE[:2], slices=SHAPE[2])
    return root


@pytest.fixture(scope="module")
def patients():
    """Per family: two HGG, two LGG and two healthy patients (skull kept on half of them)."""
    return {
        (name, grade): [synthesise_patient(np.random.default_rng([s, 1]), grade, PATIENT_SHAPE, name, 0.5) for s in (21, 22)]
        for name in FAMILIES
        for grade in ("HGG", "LGG", None)
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


def test_full_size_affine_is_brats():
    expected = np.array([[-1, 0, 0, 0], [0, -1, 0, 239], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=float)
    assert np.allclose(Grid((240, 240, 155)).affine, expected)


def test_labels_follow_segmentation_and_orientation(synth_root, tmp_path):
    ds = open_dataset(synth_root, cache_dir=tmp_path)
    grades = {}
    with open(synth_root / "name_mapping.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            grades[row["BraTS_2020_subject_ID"]] = ds.class_names.index(row["Grade"])
    seen = set()
    for i in range(len(ds)):
        sample = ds[i]
        seg = np.asarray(nib.load(synth_root / sample["patient"] / f"{sample['patient']}_seg.nii.gz").dataobj)
        shown = display_slices(seg)[sample["slice"]] > 0
        assert np.array_equal(sample["mask"] > 0, shown), "PNG writer and BraTS reader must show slices alike"
        assert sample["label"] == (grades[sample["patient"]] if shown.any() else 0)
        seen.add(sample["label"])
    assert seen == {0, 1, 2}


def _paint(grade: str, model: str) -> np.ndarray:
    grid = Grid(PATIENT_SHAPE)
    ones = np.ones(grid.shape, dtype=np.float32)
    tissue = {"brain": ones, "gm": 0.4 * ones, "wm": 0.6 * ones, "csf": 0 * ones}
    lesion = lesions.Lesion(np.zeros(3), radius=40.0, core=22.0, mass_effect=0.3, support=60.0)
    rng = np.random.default_rng(0)
    fractions = lesions.paint(rng, grade, model, [lesion], grid, tissue)
    total = sum(fractions.values())
    assert total.max() <= 1.0 + 1e-5 and min(v.min() for v in fractions.values()) >= 0.0
    return lesions.segmentation(fractions, ones > 0)


@pytest.mark.parametrize("model", ["irregular", "lobulated"])
def test_lesion_compartments_follow_brats_labels(model):
    hgg, lgg = _paint("HGG", model), _paint("LGG", model)
    assert set(np.unique(hgg)) == {0, 1, 2, 4}, "HGG: necrosis (1), oedema (2), enhancing (4)"
    assert 1 in lgg and 4 not in lgg and set(np.unique(lgg)) <= {0, 1, 2}, "LGG does not enhance"
    core = np.isin(hgg, (1, 4))
    inner = ndimage.binary_erosion(core, iterations=2)
    assert (hgg[inner] == 1).mean() > (hgg[core & ~inner] == 1).mean(), "necrosis sits inside the enhancing wall"


def test_segmentation_inside_brain_and_background(patients):
    for (name, grade), group in patients.items():
        for p in group:
            assert set(np.unique(p.seg)) <= ({0, 1, 2, 4} if grade == "HGG" else {0, 1, 2} if grade == "LGG" else {0})
            assert np.all(p.tissue[p.seg > 0] > 0), "tumour lies inside the brain"
            if not p.params["skull"]:
                assert np.all(p.volumes["t1"][p.tissue == 0] == 0), "skull-stripped: background is zero"
            else:
                assert (p.volumes["t1"][p.tissue == 0] > 0).mean() > 0.5, "with skull: scalp and noisy air"


def _mean(volume, where):
    assert where.sum() > 20
    return float(volume[where].mean())


def test_acquisition_keeps_contrast_and_sets_noise():
    """Bias, blur and noise leave block means in their ratio; noise follows the drawn SNR; stripping zeroes the air."""
    grid = Grid((64, 64, 16))
    ideal = np.ones(grid.shape, dtype=np.float32)
    ideal[32:] = 2.0
    brain = np.zeros(grid.shape, dtype=np.float32)
    brain[8:56, 8:56] = 1.0
    inner_low, inner_high = np.zeros(grid.shape, bool), np.zeros(grid.shape, bool)
    inner_low[12:28, 12:52, 2:14], inner_high[36:52, 12:52, 2:14] = True, True
    for seed in range(4):
        rng = np.random.default_rng(seed)
        volumes, params = scanner.acquire(rng, {"t1": ideal}, {"t1": 1.0}, grid, brain, stripped=True)
        image, p = volumes["t1"].astype(float), params["t1"]
        assert image.dtype == float and np.all(image[brain == 0] == 0)
        assert 1.6 < image[inner_high].mean() / image[inner_low].mean() < 2.5
        smooth = ndimage.uniform_filter(image, (5, 5, 1))
        noise = (image - smooth)[inner_low].std() / image[inner_low].mean()
        assert 0.3 / p["snr"] < noise < 3.0 / p["snr"], (noise, p)
        assert 0.5 * p["level"] < image[inner_low].mean() < 2.0 * p["level"]


def test_image_follows_tissue_signals(patients):
    """Normal-tissue means follow that patient's drawn signals wherever they differ by > 50 % (partial volume at 3.75 mm)."""
    names = {1: "csf", 2: "gm", 3: "wm"}
    checked = 0
    for group in patients.values():
        for p in group:
            normal = ndimage.binary_erosion(p.seg == 0, iterations=3) & (p.tissue > 0)
            for c, contrast_name in enumerate(contrast.CONTRASTS):
                signal = {k: p.params["signals"][n][c] for k, n in names.items()}
                means = {k: _mean(p.volumes[contrast_name], normal & (p.tissue == k)) for k in names}
                for a in names:
                    for b in names:
                        if signal[a] > 1.5 * signal[b]:
                            assert means[a] > means[b], (contrast_name, names[a], names[b], p.params["family"])
                            checked += 1
    assert checked > 60


@pytest.mark.parametrize("model", [contrast.physics_signals, contrast.table_signals])
def test_textbook_contrasts_hold_for_most_draws(model):
    """Across many patients, the drawn signals keep the textbook tissue order (protocols vary, physics does not)."""
    ok = []
    for i in range(300):
        s = model(np.random.default_rng([i, 0]), np.random.default_rng([i, 1]))
        t1, t2, t1ce, flair = (lambda k, c=c: s[k][c] for c in range(4))
        ok.append(
            [
                t1("wm") > t1("gm") > t1("csf"),
                t2("csf") > t2("gm") > t2("wm"),
                flair("gm") > flair("wm") > flair("csf"),
                flair("oedema") > flair("wm") and t2("oedema") > t2("wm"),
                t1ce("enhancing") > 1.2 * t1ce("wm") and t1("enhancing") < t1("wm"),
                t1ce("nonenhancing") < t1ce("wm") and flair("nonenhancing") > flair("wm"),
                t2("necrosis") > t2("wm"),
            ]
        )
    assert np.mean(ok, axis=0).min() >= 0.95, np.mean(ok, axis=0)


def test_tumours_show_in_the_images(patients):
    for name in FAMILIES:
        for p in patients[(name, "HGG")]:
            wm = (p.tissue == 3) & ndimage.binary_erosion(p.seg == 0, iterations=3)
            if (p.seg == 4).sum() > 20:
                assert _mean(p.volumes["t1ce"], p.seg == 4) > 1.15 * _mean(p.volumes["t1ce"], wm), "enhancing on T1CE"
        for p in patients[(name, "LGG")]:
            wm = (p.tissue == 3) & ndimage.binary_erosion(p.seg == 0, iterations=3)
            if (p.seg == 1).sum() > 20:
                assert _mean(p.volumes["flair"], p.seg == 1) > _mean(p.volumes["flair"], wm), "LGG is FLAIR bright"


def test_only_the_lesion_differs_between_classes():
    """Same seed with and without a tumour: anatomy, pose and scanner are shared; far from the lesion the images agree."""
    for name in FAMILIES:
        rng_seed = [5, 5]
        healthy = synthesise_patient(np.random.default_rng(rng_seed), None, PATIENT_SHAPE, name)
        tumour = synthesise_patient(np.random.default_rng(rng_seed), "HGG", PATIENT_SHAPE, name)
        assert healthy.params["acquisition"] == tumour.params["acquisition"]
        assert healthy.params["skull"] == tumour.params["skull"]
        grid = Grid(PATIENT_SHAPE)
        near = np.zeros(PATIENT_SHAPE, dtype=bool)
        axes = np.meshgrid(*grid.axes, indexing="ij")
        for lesion in tumour.params["lesions"]:
            reach = 2.4 * lesion["radius"] + 2 * grid.spacing.max()
            near |= sum((a - c) ** 2 for a, c in zip(axes, lesion["centre"])) < reach**2
        far = ~ndimage.binary_dilation(near, iterations=2)
        assert far.mean() > 0.2
        for c in contrast.CONTRASTS:
            a, b = healthy.volumes[c].astype(float), tumour.volumes[c].astype(float)
            level = np.percentile(a[healthy.tissue > 0], 50)
            assert np.abs(a - b)[far].mean() < 0.01 * level, (name, c)
        assert not np.array_equal(healthy.volumes["t1ce"], tumour.volumes["t1ce"])


def test_randomisation_varies():
    """Pose, anatomy proportions, contrast, scanner and lesions all vary between patients of one family."""
    group = [synthesise_patient(np.random.default_rng([s, 9]), "HGG", SHAPE, "train", 0.5) for s in range(8)]
    params = [p.params for p in group]
    assert np.std([p["head_scale"] for p in params]) > 0.02
    assert len({p["mirror"] for p in params}) == 2 and len({p["skull"] for p in params}) == 2
    assert np.std([p["angles"][2] for p in params]) > 2.0
    snr = [p["acquisition"]["t1ce"]["snr"] for p in params]
    assert max(snr) > 1.5 * min(snr)
    grey_white = [p["signals"]["gm"][0] for p in params]
    assert max(grey_white) - min(grey_white) > 0.05
    radii = [lesion["radius"] for p in params for lesion in p["lesions"]]
    assert max(radii) > 2.5 * min(radii) and max(len(p["lesions"]) for p in params) > 1
    # ... and the images show it: brain size and the grey/white contrast differ between patients.
    brain = [(p.tissue > 0).sum() for p in group]
    assert max(brain) > 1.15 * min(brain)
    ratio = []
    for p in group:
        normal = p.seg == 0
        ratio.append(_mean(p.volumes["t1"], normal & (p.tissue == 2)) / _mean(p.volumes["t1"], normal & (p.tissue == 3)))
    assert np.std(ratio) > 0.03


def test_lesion_heights_are_uniform():
    """Both location priors draw the lesion's height uniformly (tumour and healthy slices share levels);
    the held-out prior then prefers white matter."""
    source = template_source((2.0, 2.0, 2.0))
    rng = np.random.default_rng(0)
    lo, hi = source.sites[:, 2].min(), source.sites[:, 2].max()
    wm_share = {}
    for model in ("irregular", "lobulated"):
        first = [lesions.plan(rng, "HGG", model, source.sites, source.site_wm, source.site_depth)[0] for _ in range(600)]
        counts, _ = np.histogram([lesion.centre[2] for lesion in first], bins=5, range=(lo, hi))
        assert counts.min() > 0.6 * counts.mean(), (model, counts)
        assert all(lesion.support <= 2.2 * lesion.radius + 1e-6 for lesion in first)
        index = [int(np.argmin(np.abs(source.sites - lesion.centre).sum(axis=1))) for lesion in first]
        wm_share[model] = float(source.site_wm[index].mean())
    assert wm_share["lobulated"] > wm_share["irregular"] + 0.1, wm_share


def test_heldout_family_has_other_anatomy(patients):
    """Pose-free anatomy statistics separate the families: the phantom is more folded and has more white matter."""

    def stats(p):
        gm, wm = p.tissue == 2, p.tissue == 3
        interface = sum(((gm & np.roll(wm, 1, a)) | (wm & np.roll(gm, 1, a))).sum() for a in (0, 1))
        return interface / (p.tissue > 0).sum(), wm.sum() / (gm.sum() + wm.sum())

    train = np.array([stats(p) for grade in (None, "LGG") for p in patients[("train", grade)]])
    heldout = np.array([stats(p) for grade in (None, "LGG") for p in patients[("heldout", grade)]])
    assert heldout[:, 0].min() > train[:, 0].max(), "grey/white interface per brain voxel (folding)"
    assert heldout[:, 1].min() > train[:, 1].max(), "white-matter share of the parenchyma"


def test_deterministic_by_seed():
    a = synthesise_patient(np.random.default_rng(5), "HGG", SHAPE)
    b = synthesise_patient(np.random.default_rng(5), "HGG", SHAPE)
    c = synthesise_patient(np.random.default_rng(6), "HGG", SHAPE)
    for name in a.volumes:
        assert np.array_equal(a.volumes[name], b.volumes[name])
        assert not np.array_equal(a.volumes[name], c.volumes[name])
    assert np.array_equal(a.seg, b.seg) and not np.array_equal(a.seg, c.seg)


def test_same_seed_gives_the_same_volumes_for_any_blas_thread_count():
    """Multi-threaded BLAS sums in another order (the smooth fields are einsum products): without the generator's
    own one-thread limit, one and two BLAS threads differ by one grey level in a few voxels at this size."""
    from threadpoolctl import threadpool_limits

    patients = []
    for threads in (1, 2):
        with threadpool_limits(limits=threads, user_api="blas"):
            patients.append(synthesise_patient(np.random.default_rng(5), "HGG", (64, 64, 32), "heldout"))
    for name in patients[0].volumes:
        assert np.array_equal(patients[0].volumes[name], patients[1].volumes[name])


def test_written_files_deterministic_for_any_number_of_workers(tmp_path):
    write_synthetic_brats(tmp_path / "a", 2, seed=9, size=32, slices=12)
    write_synthetic_brats(tmp_path / "b", 2, seed=9, size=32, slices=12, workers=2)
    files = sorted((tmp_path / "a").rglob("*.*"))
    assert len(files) == 2 * 5 + 1
    for file in files:
        assert file.read_bytes() == (tmp_path / "b" / file.relative_to(tmp_path / "a")).read_bytes()


def test_first_id_renames_patients_without_changing_their_data(tmp_path):
    write_synthetic_brats(tmp_path / "a", 2, seed=9, size=32, slices=12)
    ids = write_synthetic_brats(tmp_path / "b", 2, seed=9, size=32, slices=12, first_id=101)
    assert ids == ["BraTS20_Training_101", "BraTS20_Training_102"]
    assert read_grades(tmp_path / "b") == {
        new: grade for (old, grade), new in zip(sorted(read_grades(tmp_path / "a").items()), ids)
    }
    for number in (1, 2):
        for name in ("t1", "t2", "t1ce", "flair", "seg"):
            old = nib.load(tmp_path / "a" / f"BraTS20_Training_00{number}" / f"BraTS20_Training_00{number}_{name}.nii.gz")
            new = nib.load(tmp_path / "b" / f"BraTS20_Training_10{number}" / f"BraTS20_Training_10{number}_{name}.nii.gz")
            assert np.array_equal(np.asanyarray(old.dataobj), np.asanyarray(new.dataobj))
    with pytest.raises(DataError, match="3-digit"):
        write_synthetic_brats(tmp_path / "c", 2, seed=9, size=32, slices=12, first_id=999)


def test_lesion_free_writes_the_same_patients_without_their_tumours(tmp_path):
    """``lesion_free``: the twins of a set written with the same arguments; their grade kept, no tumour voxel, and the
    images those of the set away from its lesions."""
    ids = write_synthetic_brats(tmp_path / "set", 2, seed=9, size=32, slices=12)
    assert write_synthetic_brats(tmp_path / "twins", 2, seed=9, size=32, slices=12, lesion_free=True) == ids
    assert read_grades(tmp_path / "twins") == read_grades(tmp_path / "set")
    for pid in ids:
        def volume(root, name):
            return np.asanyarray(nib.load(tmp_path / root / pid / f"{pid}_{name}.nii.gz").dataobj).astype(float)

        seg = volume("set", "seg") > 0
        assert seg.any() and not volume("twins", "seg").any()
        far = ~ndimage.binary_dilation(seg, iterations=4)
        assert far.mean() > 0.3
        in_lesion = []
        for name in contrast.CONTRASTS:
            with_tumour, twin = volume("set", name), volume("twins", name)
            level = np.percentile(twin[twin > 0], 50)
            assert np.abs(with_tumour - twin)[far].mean() < 0.01 * level, (pid, name)
            in_lesion.append(np.abs(with_tumour - twin)[seg].mean() / level)
        assert max(in_lesion) > 0.1, (pid, in_lesion)  # a lesion need not show in every contrast, but shows


def test_min_lesion_size_raises_every_radius():
    for seed in range(6):
        patient = synthesise_patient(np.random.default_rng(seed), "LGG", SHAPE, min_lesion_mm=20.0)
        assert patient.params["lesions"] and all(lesion["radius"] >= 20.0 for lesion in patient.params["lesions"])


def test_refuses_non_empty_output_and_bad_arguments(tmp_path):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x.txt").write_text("keep me")
    with pytest.raises(DataError, match="not an empty folder"):
        write_synthetic_brats(tmp_path / "used", 1, seed=0, size=32, slices=12)
    with pytest.raises(DataError, match="at least 1"):
        write_synthetic_brats(tmp_path / "new", 0, seed=0)
    with pytest.raises(DataError, match="shape"):
        write_synthetic_brats(tmp_path / "new", 1, seed=0, size=4, slices=12)
    with pytest.raises(DataError, match="family"):
        write_synthetic_brats(tmp_path / "new", 1, seed=0, size=32, slices=12, family="other")
    with pytest.raises(DataError, match="channel"):
        write_synthetic_pngs(tmp_path / "new", 1, seed=0, size=32, slices=12, channel="dwi")
    assert not (tmp_path / "new").exists()


def test_png_set_is_an_image_folder(tmp_path):
    root = tmp_path / "png"
    paths = write_synthetic_pngs(root, 2, seed=4, size=64, slices=16)
    assert len(paths) == 6
    ds = open_dataset(root, image_size=None)
    assert ds.format == "folder" and sorted(ds.class_names) == ["HGG", "Healthy", "LGG"]
    for i in range(len(ds)):
        raw = ds[i]
        assert raw["image"].shape == (1, 64, 64)
        has_tumour = ds.class_names[raw["label"]] != "Healthy"
        assert raw["mask"].any() == has_tumour
        if has_tumour:
            assert raw["image"][0][raw["mask"] > 0].mean() > 0, "the mask covers brain"
    import cv2

    stored = cv2.imread(str(paths[0]), cv2.IMREAD_UNCHANGED)
    assert stored.dtype == np.uint16 and stored.shape == (64, 64)


def test_synth_command(tmp_path):
    from typer.testing import CliRunner

    from gpedge.cli import app

    out = tmp_path / "cli"
    result = CliRunner().invoke(app, ["synth", str(out), "--patients", "2", "--seed", "1", "--size", "32", "--slices", "12"])
    assert result.exit_code == 0, result.output
    ds = open_dataset(out, cache_dir=tmp_path / "cache", image_size=32)
    assert ds.patients == ["BraTS20_Training_001", "BraTS20_Training_002"]
    assert ds[0]["image"].shape == (4, 32, 32)
    refused = CliRunner().invoke(app, ["synth", str(tmp_path / "no"), "--format", "png", "--lesion-free"])
    assert refused.exit_code != 0 and "--lesion-free" in str(refused.exception or refused.output)
    png = tmp_path / "png"
    args = ["synth", str(png), "--family", "heldout", "--format", "png", "--patients", "1", "--size", "48", "--slices", "12"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert sorted(p.parent.name for p in png.rglob("*_mask.png")) == ["HGG", "Healthy", "LGG"]
