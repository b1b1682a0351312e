"""The bundled default model and the README's main command on the bundled examples."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

import gpedge
from gpedge.package import ModelPackage
from gpedge.runtime.predictor import DEFAULT_MODEL

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_bundled_package_is_complete_and_verified() -> None:
    package = ModelPackage.load(DEFAULT_MODEL)
    for name in package.manifest["files"]:
        assert package.file(name).is_file()
    assert package.classes == ["Healthy", "LGG", "HGG"]
    assert package.channels == ["t1ce"]
    assert package.manifest["dataset"]["format"] == "brats"
    assert package.manifest["parity"]["onnxruntime_fp32_vs_torch"]["label_agreement"] == 1.0


def test_predictor_defaults_to_the_bundled_model() -> None:
    with gpedge.Predictor() as predictor:
        result = predictor.predict(EXAMPLES / "hgg_t1ce.png")[0]
    assert result.label in ("Healthy", "LGG", "HGG")
    assert abs(sum(result.probabilities.values()) - 1.0) < 1e-5
    assert result.mask.shape == result.heatmap.shape == (240, 240)
    assert set(result.speed) >= {"preprocess", "inference", "postprocess"}


def test_readme_main_command_on_every_example(tmp_path: Path) -> None:
    scans = [EXAMPLES / n for n in ("hgg_t1ce.png", "lgg_t1ce.png", "healthy_t1ce.png", "hgg_t1ce.dcm", "lgg_t1ce.nii.gz")]
    proc = subprocess.run(
        [sys.executable, "-m", "gpedge.cli", "infer", *map(str, scans), "--out", str(tmp_path), "--json"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    by_file = {}
    for record in records:
        by_file.setdefault(Path(record["file"]).name, []).append(record)
    assert set(by_file) == {s.name for s in scans}
    assert len(by_file["lgg_t1ce.nii.gz"]) == nib.load(EXAMPLES / "lgg_t1ce.nii.gz").shape[2]
    png, dcm = by_file["hgg_t1ce.png"][0], by_file["hgg_t1ce.dcm"][0]
    assert png["label"] == dcm["label"] and np.allclose(list(png["probabilities"].values()), list(dcm["probabilities"].values()), atol=1e-5)
    for name in ("hgg_t1ce.png", "lgg_t1ce.png", "healthy_t1ce.png", "hgg_t1ce.dcm"):
        outputs = by_file[name][0]["outputs"]
        for kind in ("mask", "heatmap", "overlay", "json"):
            assert Path(outputs[kind]).is_file() and Path(outputs[kind]).parent == tmp_path
    volume_outputs = by_file["lgg_t1ce.nii.gz"][0]["outputs"]
    mask = nib.load(volume_outputs["mask_nifti"])
    source = nib.load(EXAMPLES / "lgg_t1ce.nii.gz")
    assert mask.shape == source.shape and np.allclose(mask.affine, source.affine)
