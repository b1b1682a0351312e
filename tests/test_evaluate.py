"""``gpedge evaluate`` end to end on tiny BraTS, Figshare (.mat v7.3) and image-folder data sets."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import h5py
import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import TINY_CHANNELS, make_slices, train_tiny_run
from gpedge.atomic import atomic_write_json
from gpedge.cli import app
from gpedge.errors import DataError
from gpedge.evaluate.metrics import dice_score
from gpedge.package import ModelPackage, class_bias_text

FIGSHARE_CLASSES = ["meningioma", "glioma", "pituitary"]


def _with_split(package: Path, dest: Path, split: dict[str, list[str]]) -> Path:
    """A copy of ``package`` whose manifest records ``split`` (the patients of the test data)."""
    shutil.copytree(package, dest)
    manifest = json.loads((dest / "manifest.json").read_text())
    manifest["split"] = split
    atomic_write_json(dest / "manifest.json", manifest)
    return dest


def _slices_of(labels: list[int], seed: int):
    """Synthetic slices (raw intensities, masks) with the requested labels, drawn from a labelled pool."""
    pool = make_slices(3 * len(labels) + 3, seed=seed)
    picked = [int(np.flatnonzero(pool.labels == lab)[i]) for i, lab in _occurrences(labels)]
    return pool.images[picked, 0], pool.masks[picked]


def _occurrences(labels: list[int]):
    seen: dict[int, int] = {}
    for lab in labels:
        yield seen.get(lab, 0), lab
        seen[lab] = seen.get(lab, 0) + 1


def write_brats(root: Path, grades: dict[str, str], seed: int = 3) -> Path:
    """BraTS 2020 layout: 4 slices a patient (healthy, tumour, tumour, healthy), all four contrasts + seg."""
    root.mkdir(parents=True)
    rows = ["Grade,BraTS_2019_subject_ID,BraTS_2020_subject_ID"]
    for n, (patient, grade) in enumerate(grades.items()):
        tumour = 1 if grade == "LGG" else 2
        images, masks = _slices_of([0, tumour, tumour, 0], seed + n)
        folder = root / patient
        folder.mkdir()
        volume = np.transpose(images, (2, 1, 0)).astype(np.float32)
        affine = np.diag([1.0, 1.0, 1.0, 1.0])
        for contrast, gain in (("t1", 0.8), ("t2", 1.1), ("t1ce", 1.0), ("flair", 0.9)):
            nib.save(nib.Nifti1Image(volume * gain, affine), folder / f"{patient}_{contrast}.nii.gz")
        seg = np.transpose(masks * 4, (2, 1, 0)).astype(np.uint8)
        nib.save(nib.Nifti1Image(seg, affine), folder / f"{patient}_seg.nii.gz")
        rows.append(f"{grade},NA,{patient}")
    (root / "name_mapping.csv").write_text("\n".join(rows) + "\n")
    return root


def write_figshare(root: Path, patients: dict[str, list[int]], seed: int = 5) -> Path:
    """Figshare layout: one MATLAB v7.3 (HDF5) file per slice, arrays stored transposed."""
    root.mkdir(parents=True)
    number = 1
    for n, (pid, labels) in enumerate(patients.items()):
        images, masks = _slices_of([1 + (lab % 2) for lab in labels], seed + n)
        for image, mask, lab in zip(images, masks, labels):
            with h5py.File(root / f"{number}.mat", "w", userblock_size=512) as fh:
                group = fh.create_group("cjdata")
                group["image"] = np.round(image).astype(np.int16).T
                group["label"] = np.array([[lab + 1.0]])
                group["tumorMask"] = mask.astype(np.uint8).T
                group["PID"] = np.array([[ord(c)] for c in pid], dtype=np.uint16)
            number += 1
    return root


def write_folder(root: Path, names: dict[str, list[tuple[str, int]]], seed: int = 9) -> Path:
    """Image folder: ``<class>/<name>.png`` (16-bit) with ``<name>_mask.png`` ground truth."""
    for n, (folder, items) in enumerate(names.items()):
        (root / folder).mkdir(parents=True)
        images, masks = _slices_of([lab for _, lab in items], seed + n)
        for (stem, _), image, mask in zip(items, images, masks):
            cv2.imwrite(str(root / folder / f"{stem}.png"), np.clip(image, 0, 65535).astype(np.uint16))
            cv2.imwrite(str(root / folder / f"{stem}_mask.png"), mask * 255)
    return root


def _evaluate(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["evaluate", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def _check_report(out: Path, metrics: dict) -> None:
    for name in ("report.md", "report.html"):
        text = (out / name).read_text()
        images = re.findall(r"\(([\w.]+\.png)\)" if name.endswith(".md") else r'src="([\w.]+\.png)"', text)
        assert len(images) >= 5
        for image in images:
            assert (out / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"{metrics['accuracy']:.3f}" in text
    assert "| Grad-CAM++ |" in (out / "report.md").read_text()
    assert f"| class bias | {class_bias_text(metrics['model']['classes'], metrics['model']['class_bias'])} |" in (
        out / "report.md").read_text()


@pytest.fixture(scope="module")
def brats_root(tmp_path_factory) -> Path:
    grades = {"BraTS20_Training_001": "HGG", "BraTS20_Training_002": "LGG", "BraTS20_Training_003": "HGG", "BraTS20_Training_004": "LGG"}
    return write_brats(tmp_path_factory.mktemp("brats") / "data", grades)


@pytest.fixture()
def brats_package(tiny_package: Path, tmp_path: Path) -> Path:
    split = {"train": ["BraTS20_Training_001"], "val": ["BraTS20_Training_002"], "test": ["BraTS20_Training_003", "BraTS20_Training_004"]}
    return _with_split(tiny_package, tmp_path / "pkg", split)


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPEDGE_CACHE", str(tmp_path / "cache"))


def test_evaluate_brats_with_offset_sweep(brats_root: Path, brats_package: Path, tmp_path: Path):
    out = tmp_path / "report"
    code, output = _evaluate(
        "--model", str(brats_package), "--data", str(brats_root), "--out", str(out),
        "--mask-rules", "paper,relative", "--offsets", "0,0.5,1", "--bootstrap", "50", "--seed", "3",
        "--backend", "onnxruntime",
    )
    assert code == 0, output
    metrics = json.loads((out / "metrics.json").read_text())
    # the test split only: patients 003 and 004, four slices each
    assert (metrics["num_patients"], metrics["num_slices"]) == (2, 8)
    assert metrics["data"]["format"] == "brats"
    assert sum(map(sum, metrics["confusion_matrix"])) == 8
    assert (metrics["tumour_slices"], metrics["healthy_slices"]) == (4, 4)
    sweep = metrics["offset_sweep"]
    assert sweep["split"] == "val"
    assert [(r["rule"], r["offset"]) for r in sweep["table"]] == [(rule, o) for rule in ("paper", "relative") for o in (0.0, 0.5, 1.0)]
    assert all(r["tumour_slices"] == 2 and r["healthy_slices"] == 2 for r in sweep["table"])
    best = max(sweep["table"], key=lambda r: r["dice_median"])["dice_median"]
    rows = {(r["rule"], r["offset"]): r for r in sweep["table"]}
    assert rows[(sweep["best_rule"], sweep["best_offset"])]["dice_median"] == best
    for rule, summary in sweep["per_rule"].items():  # each rule at its own best offset, with its healthy FP rate
        row = rows[(rule, summary["offset"])]
        assert summary["dice_median"] == max(r["dice_median"] for r in sweep["table"] if r["rule"] == rule) == row["dice_median"]
        assert summary["healthy_fp_rate"] == row["healthy_fp_rate"]
    assert (sweep["previous_rule"], sweep["previous_offset"]) == ("paper", 0.5)
    stored = ModelPackage.load(brats_package)
    assert (stored.mask_rule, stored.offset) == (sweep["best_rule"], sweep["best_offset"]) == (metrics["mask_rule"], metrics["offset"])
    assert "Mask-rule sweep" in (out / "report.md").read_text()
    low, high = metrics["dice_ci95"]
    assert low <= metrics["dice_median"] <= high
    assert "over patients" in metrics["dice_ci_method"]
    assert 0.0 <= metrics["healthy_fp_rate"] <= 1.0
    posthoc = metrics["posthoc_comparison"]
    assert posthoc["slices"] == 4
    assert set(posthoc["methods"]) == {"inherent", "grad_cam", "grad_cam_pp"}
    for scores in posthoc["methods"].values():
        assert 0.0 <= scores["dice_median"] <= 1.0 and 0.0 <= scores["pointing_game"] <= 1.0
    _check_report(out, metrics)
    _check_against_runtime(brats_package, brats_root, metrics)


def _check_against_runtime(package: Path, root: Path, metrics: dict) -> None:
    """Recompute accuracy and median Dice of the test split directly with the Predictor."""
    from gpedge import Predictor
    from gpedge.data import open_dataset

    data = open_dataset(root, channels=list(TINY_CHANNELS))
    test = data.subset(["BraTS20_Training_003", "BraTS20_Training_004"])
    samples = [test[i] for i in range(len(test))]
    with Predictor(model=package, backend="onnxruntime") as predictor:
        results = predictor.predict([s["image"] for s in samples])
    accuracy = np.mean([r.class_index == s["label"] for r, s in zip(results, samples)])
    dice = [dice_score(r.mask, s["mask"]) for r, s in zip(results, samples) if s["mask"].any()]
    assert metrics["accuracy"] == pytest.approx(accuracy)
    assert metrics["dice_median"] == pytest.approx(np.median(dice))


def _cli(*args: str) -> subprocess.CompletedProcess:
    """The installed command line in a subprocess: user errors are one line on stderr and exit code 2."""
    return subprocess.run([sys.executable, "-m", "gpedge.cli", "evaluate", *args], capture_output=True, text=True, timeout=300)


def test_split_errors(brats_root: Path, brats_package: Path, tmp_path: Path):
    done = _cli("--model", str(brats_package), "--data", str(brats_root), "--out", str(tmp_path / "a"), "--split", "all")
    assert done.returncode == 2 and "--split all is for external data" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    other = {"train": ["X1"], "val": ["X2"], "test": ["X3"]}
    package = _with_split(brats_package, tmp_path / "other", other)
    with pytest.raises(DataError, match="holds none of the 1 'test' patients"):
        _evaluate("--model", str(package), "--data", str(brats_root), "--out", str(tmp_path / "b"))
    with pytest.raises(DataError, match="records no 'val' patients"):
        _evaluate("--model", str(_with_split(brats_package, tmp_path / "noval", {**other, "val": []})),
                  "--data", str(brats_root), "--out", str(tmp_path / "b"), "--split", "val")
    assert not (tmp_path / "b").exists()


def test_external_split_takes_patients_that_share_training_ids(tiny_package: Path, tmp_path: Path):
    """--split all refuses data whose IDs the package trained on; --split external evaluates them, and says so."""
    root = write_folder(tmp_path / "folder", {"healthy": [("scan01", 0), ("scan02", 0)], "hgg": [("scan03", 2), ("scan04", 2)]})
    package = _with_split(tiny_package, tmp_path / "pkg", {"train": ["scan01", "scan03"], "val": ["x"], "test": ["y"]})
    with pytest.raises(DataError, match="--split external if these are other patients"):
        _evaluate("--model", str(package), "--data", str(root), "--split", "all", "--out", str(tmp_path / "a"), "--no-posthoc")
    assert not (tmp_path / "a").exists()
    out = tmp_path / "b"
    code, output = _evaluate("--model", str(package), "--data", str(root), "--split", "external", "--out", str(out),
                             "--no-posthoc", "--bootstrap", "20")
    assert code == 0, output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_slices"] == 4
    assert (metrics["data"]["split"], metrics["data"]["ids_shared_with_training"]) == ("external", 2)
    assert "2 patient ID(s) of the data set are also training or validation IDs" in (out / "report.md").read_text()


@pytest.fixture(scope="module")
def figshare_package(tmp_path_factory) -> Path:
    """A 3-class figshare-like model: the tiny run relabelled meningioma/glioma/pituitary, exported."""
    from gpedge.export import ExportOptions, export_package
    from gpedge.runs import RunConfig

    run = train_tiny_run(tmp_path_factory.mktemp("fig_run") / "run", steps=20)
    config = RunConfig.load(run)
    config.class_names, config.no_tumour_class = list(FIGSHARE_CLASSES), None
    config.split = {"train": ["100360"], "val": ["100361"], "test": ["100362", "100363"]}
    config.save(run)
    options = ExportOptions(max_batch=4, fp16=False, engine=False, parity_samples=2)
    return export_package(run, tmp_path_factory.mktemp("fig_pkg") / "pkg", options)


@pytest.mark.slow
def test_evaluate_figshare_mat_v73(figshare_package: Path, tmp_path: Path):
    patients = {"100360": [0, 1], "100361": [1, 2], "100362": [0, 1, 2], "100363": [2, 0]}
    root = write_figshare(tmp_path / "figshare", patients)
    out = tmp_path / "report"
    code, output = _evaluate(
        "--model", str(figshare_package), "--data", str(root), "--format", "figshare", "--out", str(out),
        "--bootstrap", "20", "--no-posthoc",
    )
    assert code == 0, output
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["num_patients"], metrics["num_slices"], metrics["tumour_slices"]) == (2, 5, 5)
    assert metrics["healthy_fp_rate"] is None and metrics["healthy_slices"] == 0
    assert set(metrics["per_class"]) == set(FIGSHARE_CLASSES)
    assert metrics["offset_sweep"] is None
    assert metrics["posthoc_comparison"] == {"skipped": "disabled with --no-posthoc"}
    assert "Skipped: disabled with --no-posthoc" in (out / "report.md").read_text()


def test_evaluate_image_folder_with_masks(tiny_package: Path, tmp_path: Path):
    names = {
        "healthy": [("scan01", 0), ("scan02", 0), ("scan03", 0)],
        "lgg": [("scan04", 1), ("scan05", 1)],
        "hgg": [("scan06", 2), ("scan07", 2)],
    }
    root = write_folder(tmp_path / "folder", names)
    package = _with_split(tiny_package, tmp_path / "pkg", {"train": ["other"], "val": ["x"], "test": ["y"]})
    out = tmp_path / "report"
    code, output = _evaluate("--model", str(package), "--data", str(root), "--split", "all", "--out", str(out), "--bootstrap", "20")
    assert code == 0, output
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["num_slices"], metrics["tumour_slices"], metrics["healthy_slices"]) == (7, 4, 3)
    # folder classes (sorted: healthy, hgg, lgg) are mapped onto the package's Healthy, LGG, HGG by name
    assert [c["support"] for c in metrics["per_class"].values()] == [3, 2, 2]
    assert metrics["posthoc_comparison"]["slices"] == 4
    _check_report(out, metrics)
