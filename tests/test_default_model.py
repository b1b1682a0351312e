"""The bundled models and the README's commands on the bundled examples."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np

import pytest

import gpedge
from gpedge.package import BUNDLED, ModelPackage
from gpedge.pretrained import PRETRAINED
from gpedge.runs import WEIGHTS
from conftest import EXAMPLES, EXAMPLE_SCAN

FOUR_CONTRASTS = ("t1", "t2", "t1ce", "flair")


@pytest.mark.parametrize("name, channels", [
    ("default", ["flair"]), ("gp-unet-t1ce", ["t1ce"]), ("gp-unet-synth", list(FOUR_CONTRASTS)),
])
def test_bundled_package_is_complete_and_verified(name: str, channels: list[str]) -> None:
    package = ModelPackage.load(name)
    assert package.root == BUNDLED[name]
    for file in package.manifest["files"]:
        assert package.file(file).is_file()
    assert package.classes == ["Healthy", "LGG", "HGG"]
    assert package.channels == channels
    assert package.manifest["dataset"]["format"] == "brats"
    assert package.manifest["parity"]["onnxruntime_fp32_vs_torch"]["label_agreement"] == 1.0


def test_a_bundled_name_is_one_network() -> None:
    """A name shipped both as training weights (--init-from, --distil-from) and as a package holds the same weights."""
    for name in set(BUNDLED) & set(PRETRAINED):
        assert ModelPackage.load(name).manifest["files"][WEIGHTS]["sha256"] == PRETRAINED[name][WEIGHTS]


def test_predictor_defaults_to_the_bundled_model() -> None:
    with gpedge.Predictor() as predictor:
        result = predictor.predict(EXAMPLE_SCAN)[0]
    assert result.label in ("Healthy", "LGG", "HGG")
    assert abs(sum(result.probabilities.values()) - 1.0) < 1e-5
    assert result.mask.shape == result.heatmap.shape == (240, 240)
    assert set(result.speed) >= {"preprocess", "inference", "postprocess"}


@pytest.mark.parametrize("contrast, model", [("flair", []), ("t1ce", ["--model", "gp-unet-t1ce"])])
def test_readme_main_command_on_every_example(tmp_path: Path, contrast: str, model: list[str]) -> None:
    """The default model on the FLAIR examples, the T1CE model on the T1CE ones."""
    png, dcm, volume = f"hgg_{contrast}.png", f"hgg_{contrast}.dcm", f"lgg_{contrast}.nii.gz"
    scans = [EXAMPLES / n for n in (png, f"lgg_{contrast}.png", f"healthy_{contrast}.png", dcm, volume)]
    proc = subprocess.run(
        [sys.executable, "-m", "gpedge.cli", "infer", *map(str, scans), *model, "--out", str(tmp_path), "--json"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    by_file = {}
    for record in records:
        by_file.setdefault(Path(record["file"]).name, []).append(record)
    assert set(by_file) == {s.name for s in scans}
    assert len(by_file[volume]) == nib.load(EXAMPLES / volume).shape[2]
    from_png, from_dcm = by_file[png][0], by_file[dcm][0]
    assert from_png["label"] == from_dcm["label"]
    assert np.allclose(list(from_png["probabilities"].values()), list(from_dcm["probabilities"].values()), atol=1e-5)
    for scan in scans[:4]:
        outputs = by_file[scan.name][0]["outputs"]
        for kind in ("mask", "heatmap", "overlay", "json"):
            assert Path(outputs[kind]).is_file() and Path(outputs[kind]).parent == tmp_path
    volume_outputs = by_file[volume][0]["outputs"]
    mask = nib.load(volume_outputs["mask_nifti"])
    source = nib.load(EXAMPLES / volume)
    assert mask.shape == source.shape and np.allclose(mask.affine, source.affine)


def test_readme_four_contrast_command(tmp_path: Path) -> None:
    """``gpedge infer --model gp-unet-synth`` with one file per contrast: one result for the four files."""
    files = [arg for c in FOUR_CONTRASTS for arg in (f"--{c}", str(EXAMPLES / f"lgg_heldout_{c}.png"))]
    proc = subprocess.run(
        [sys.executable, "-m", "gpedge.cli", "infer", "--model", "gp-unet-synth", *files, "--out", str(tmp_path), "--json"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    (record,) = [json.loads(line) for line in proc.stdout.splitlines()]
    assert record["label"] in ("Healthy", "LGG", "HGG")
    assert record["mask_area_px"] == int((cv2.imread(record["outputs"]["mask"], cv2.IMREAD_GRAYSCALE) > 0).sum())
