"""Blank and out-of-distribution inputs get no diagnosis (``gpedge.runtime.ood``)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import pydicom
import pytest

from gpedge.errors import InputError
from conftest import EXAMPLES, EXAMPLE_SCAN


@pytest.fixture(scope="module")
def predictor():
    from gpedge.runtime.predictor import Predictor

    with Predictor(backend="onnxruntime") as p:
        yield p


@pytest.fixture(scope="module")
def brain() -> np.ndarray:
    return cv2.imread(str(EXAMPLE_SCAN), cv2.IMREAD_UNCHANGED).astype(np.float32)


def infer(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gpedge.cli", "infer", *map(str, args)], capture_output=True, text=True,
                          timeout=180)


def test_blank_images_are_refused(predictor, tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "black.png"), np.zeros((240, 240), np.uint8))
    cv2.imwrite(str(tmp_path / "negative.tif"), -np.random.default_rng(0).random((64, 64)).astype(np.float32) - 1)
    ds = pydicom.dcmread(EXAMPLES / "hgg_flair.dcm")
    ds.RescaleSlope, ds.RescaleIntercept = 0, 0
    ds.save_as(tmp_path / "slope0.dcm")
    for name, message in (("black.png", "blank image (every pixel is 0)"), ("negative.tif", "no positive intensity"),
                          ("slope0.dcm", "blank image")):
        with pytest.raises(InputError, match=re.escape(message)) as info:
            predictor.predict(tmp_path / name)
        assert name in str(info.value) and "nothing to classify" in str(info.value)
    done = infer(tmp_path / "black.png", tmp_path / "slope0.dcm", tmp_path / "negative.tif", EXAMPLE_SCAN, "--json")
    assert done.returncode == 2
    errors = done.stderr.strip().splitlines()
    assert len(errors) == 3 and all("nothing to classify" in line for line in errors), done.stderr
    assert len(done.stdout.splitlines()) == 1


def test_blank_slices_of_a_volume_are_flagged_and_an_all_blank_volume_refused(predictor, brain, tmp_path: Path) -> None:
    volume = np.zeros((240, 240, 3), np.float32)
    volume[..., 1] = brain.T[:, ::-1]
    nib.save(nib.Nifti1Image(volume, np.eye(4)), tmp_path / "vol.nii.gz")
    results = predictor.predict(tmp_path / "vol.nii.gz")
    assert [r.out_of_distribution for r in results] == [True, False, True]
    assert results[0].ood_reasons == ("blank image (every pixel is 0)",)
    nib.save(nib.Nifti1Image(np.zeros((64, 64, 3), np.float32), np.eye(4)), tmp_path / "empty.nii.gz")
    with pytest.raises(InputError, match="every slice is blank"):
        predictor.predict(tmp_path / "empty.nii.gz")


def _non_brains(brain: np.ndarray) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:240, :240].astype(np.float32)
    return {
        "uniform noise": rng.uniform(0, 1000, (240, 240)),
        "inverted scan (MONOCHROME1 read as MONOCHROME2)": brain.max() - brain,
        "gradient": xx + yy,
        "checkerboard": ((xx // 30 + yy // 30) % 2) * 800 + 100,
        "noise everywhere around a scan": brain + rng.uniform(0, brain.max(), brain.shape) * (brain == 0),
    }


def test_non_brain_images_are_flagged_and_the_examples_are_not(predictor, brain) -> None:
    assert predictor.ood.available, "the bundled model must carry its training input statistics"
    for name, image in _non_brains(brain).items():
        result = predictor.predict(image)[0]
        assert result.out_of_distribution, name
        assert all("training range" in reason for reason in result.ood_reasons), result.ood_reasons
    for path in ("hgg_flair.png", "lgg_flair.png", "healthy_flair.png", "hgg_flair.dcm"):
        assert not predictor.predict(EXAMPLES / path)[0].out_of_distribution, path
    volume = predictor.predict(EXAMPLES / "lgg_flair.nii.gz")
    assert not any(r.out_of_distribution for r in volume)


def test_a_flagged_slice_has_no_mask_in_any_output(predictor, brain, tmp_path: Path) -> None:
    """No diagnosis means no mask: not in the Result, the PNG, the NIfTI, nor the volume's mask count."""
    noisy = _non_brains(brain)["noise everywhere around a scan"]
    flagged = predictor.predict(noisy)[0]
    assert flagged.out_of_distribution
    assert flagged.is_tumour, "this test needs a flagged slice the network calls tumour"
    assert flagged.heatmap.max() > flagged.threshold, "this test needs a map above its threshold"
    assert flagged.mask_area_px == 0
    nib.save(nib.Nifti1Image(np.stack([brain, noisy], axis=-1).transpose(1, 0, 2)[:, ::-1], np.eye(4)),
             tmp_path / "vol.nii.gz")
    done = infer(tmp_path / "vol.nii.gz", "--out", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "out" / "vol.json").read_text())
    assert record["out_of_distribution_slices"] == [1] and record["tumour_slices"] == [0]
    per_slice = nib.load(tmp_path / "out" / "vol_mask.nii.gz").get_fdata().sum(axis=(0, 1))
    assert per_slice[0] > 0 and per_slice[1] == 0
    assert record["mask_volume_px"] == per_slice[0]
    cv2.imwrite(str(tmp_path / "noisy.png"), noisy.astype(np.uint16))
    done = infer(tmp_path / "noisy.png", "--out", tmp_path / "png")
    assert done.returncode == 0, done.stderr
    assert not cv2.imread(str(tmp_path / "png" / "noisy_mask.png"), cv2.IMREAD_UNCHANGED).any()


def test_another_synthetic_family_is_in_distribution(predictor) -> None:
    """Slices from a different generator (``gpedge.data.samples``: other head shapes, sizes and contrasts)
    than the training data (``gpedge synth``) are not flagged: the check must not refuse ordinary head slices."""
    from gpedge.data.samples import synthetic_slices

    slices = synthetic_slices(96, channels=1, size=160, num_classes=3, seed=11).images
    flagged = [r for r in predictor.predict(slices) if r.out_of_distribution]
    assert len(flagged) <= 0.05 * len(slices), flagged[0].ood_reasons if flagged else None


def test_noise_added_to_a_scan_is_not_flagged(predictor, brain) -> None:
    """Real scans have noise in the background (Rician, a few percent of the maximum)."""
    noisy = brain + np.abs(np.random.default_rng(4).normal(0, 0.03 * brain.max(), brain.shape))
    assert not predictor.predict(noisy)[0].out_of_distribution


def test_the_flag_is_in_the_result_json_cli_and_overlay(predictor, brain, tmp_path: Path) -> None:
    noise = np.random.default_rng(3).uniform(0, 60000, (240, 240)).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "noise.png"), noise)
    result = predictor.predict(tmp_path / "noise.png")[0]
    record = result.to_dict()
    assert record["out_of_distribution"] is True and record["ood_reasons"] == list(result.ood_reasons)
    assert record["provider"] == "onnxruntime CPUExecutionProvider"
    done = infer(tmp_path / "noise.png", "--json", "--out", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    line = json.loads(done.stdout)
    assert line["out_of_distribution"] is True and line["ood_reasons"]
    assert json.loads((tmp_path / "out" / "noise.json").read_text())["out_of_distribution"] is True
    table = infer(tmp_path / "noise.png", EXAMPLE_SCAN)
    assert table.returncode == 0
    rows = [line for line in table.stdout.splitlines() if line.count("│") > 3 and line.split("│")[3].strip()]
    assert len(rows) == 2, table.stdout
    assert "out of distribution" in rows[0] and "no diagnosis" in rows[0] and not re.search("Healthy|LGG|HGG", rows[0])
    assert "out of distribution" not in rows[1] and "HGG" in rows[1]
    assert re.search(r"noise.png: 1 image\(s\)/slice\(s\) out of distribution, no diagnosis \(.* (above|below) the training range", table.stdout)
    banner = result.plot()[:40]
    assert banner.shape[1] >= 512


def test_a_package_without_statistics_only_checks_for_blank_images(tiny_package: Path, synthetic_batch) -> None:
    from gpedge.runtime.predictor import Predictor

    with Predictor(tiny_package, backend="onnxruntime") as predictor:
        assert not predictor.ood.available
        assert not predictor.predict(np.random.default_rng(0).uniform(0, 1, (64, 64)))[0].out_of_distribution
        with pytest.raises(InputError, match="blank"):
            predictor.predict(np.zeros((64, 64)))


def test_upper_percentile_equals_numpy_on_both_of_its_paths() -> None:
    from gpedge.runtime.ood import upper_percentile

    rng = np.random.default_rng(3)
    n = 240 * 240
    spread = rng.gamma(2.0, 1.0, (3, 2, n)) * (rng.uniform(size=(3, 2, n)) > 0.6)  # a head: zeros and a tail
    ties = np.repeat(rng.integers(0, 5, (2, 1, n // 8)), 8, axis=-1).astype(np.float32)
    # The values every 16th position samples are the row's largest but too few: the full path.
    hidden = rng.uniform(size=(1, 1, n))
    hidden[..., ::16] = 1000.0 + np.arange(n // 16)
    for values in (spread.astype(np.float32), ties, hidden, np.zeros((2, 4, n), np.float32), rng.normal(size=(5, 7))):
        for q in (99.0, 90.0, 99.9):
            np.testing.assert_allclose(upper_percentile(values, q), np.percentile(values, q, axis=-1), rtol=1e-6, atol=1e-6)


def test_the_check_computes_a_batch_over_threads_as_in_one() -> None:
    from gpedge.runtime.ood import OutOfDistribution, features, statistics

    rng = np.random.default_rng(5)
    batch = (rng.gamma(2.0, 1.0, (7, 2, 48, 48)) * (rng.uniform(size=(7, 2, 48, 48)) > 0.5)).astype(np.float32)
    recorded = statistics(features(batch), ["t1", "flair"], "test")
    check = OutOfDistribution(recorded, threads=3)
    try:
        np.testing.assert_array_equal(check.features(batch), features(batch))
        np.testing.assert_array_equal(check.features(batch[:1]), features(batch[:1]))
    finally:
        check.close()
    assert list(OutOfDistribution(None, threads=3).features(batch)) == [None] * 7
