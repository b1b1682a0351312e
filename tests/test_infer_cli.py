"""``gpedge infer`` end to end in a subprocess: outputs, JSON lines, per-input errors, exit codes; the commands'
help text."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import pytest

from conftest import make_slices


def infer(*args: str | Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "gpedge.cli", "infer", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Good and bad inputs side by side."""
    root = tmp_path_factory.mktemp("inputs")
    slices = make_slices(4, seed=21).images
    cv2.imwrite(str(root / "scan.png"), (slices[1, 0] / slices[1, 0].max() * 65535).astype(np.uint16))
    nib.save(nib.Nifti1Image(np.stack([s[0] for s in slices], axis=-1), np.eye(4)), root / "vol.nii.gz")
    (root / "empty.png").write_bytes(b"")
    (root / "text.jpg").write_text("not an image")
    ok, buf = cv2.imencode(".png", (slices[2, 0] / slices[2, 0].max() * 255).astype(np.uint8))
    (root / "cut.png").write_bytes(buf.tobytes()[: len(buf) // 3])
    cv2.imwrite(str(root / "tiny.png"), np.ones((8, 8), np.uint8))
    (root / "bad.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\x02\x00broken")
    return root


BAD = ("empty.png", "text.jpg", "cut.png", "tiny.png", "bad.dcm", "missing.png")


def test_json_outputs_and_per_input_errors(tiny_package: Path, inputs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    files = [inputs / "scan.png", *(inputs / name for name in BAD), inputs / "vol.nii.gz"]
    done = infer(*files, "--model", tiny_package, "--backend", "onnxruntime", "--json", "--out", out)
    assert done.returncode == 2
    errors = done.stderr.strip().splitlines()
    assert len(errors) == len(BAD), done.stderr
    assert "Traceback" not in done.stderr
    for name in BAD:
        assert sum(str(inputs / name) in line for line in errors) == 1
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["file"] for r in records] == [str(inputs / "scan.png")] + [str(inputs / "vol.nii.gz")] * 4
    assert [r.get("slice") for r in records] == [None, 0, 1, 2, 3]
    for record in records:
        assert {"label", "class_index", "probabilities", "mask_area_px", "speed_ms", "outputs"} <= set(record)
    assert set(records[0]["outputs"]) == {"mask", "heatmap", "overlay", "json"}
    assert set(records[1]["outputs"]) == {"mask_nifti", "overlay", "heatmap", "json"}
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["scan_mask.png", "scan_heatmap.png", "scan_overlay.png", "scan.json",
                            "vol_mask.nii.gz", "vol_overlay.png", "vol_heatmap.png", "vol.json"])
    mask = nib.load(out / "vol_mask.nii.gz")
    assert mask.shape == (64, 64, 4) and mask.get_data_dtype() == np.uint8
    assert int(np.asarray(mask.dataobj).sum()) == sum(r["mask_area_px"] for r in records[1:])
    summary = json.loads((out / "vol.json").read_text())
    assert summary["slices"] == 4 and len(summary["per_slice"]) == 4


def test_table_output_and_success_exit(tiny_package: Path, inputs: Path) -> None:
    done = infer(inputs / "scan.png", "--model", tiny_package, "--backend", "onnxruntime")
    assert done.returncode == 0, done.stderr
    assert "scan.png" in done.stdout and "backend: onnxruntime" in done.stdout
    assert any(label in done.stdout for label in ("Healthy", "LGG", "HGG"))


def test_contrast_flags(tiny_package: Path, inputs: Path, tmp_path: Path) -> None:
    done = infer("--t1ce", inputs / "vol.nii.gz", "--model", tiny_package, "--backend", "onnxruntime", "--json")
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 4
    missing = infer("--flair", inputs / "vol.nii.gz", "--model", tiny_package, "--backend", "onnxruntime")
    assert missing.returncode == 2
    assert "missing t1ce" in missing.stderr and len(missing.stderr.strip().splitlines()) == 1


def test_a_folder_with_nothing_readable_is_reported(tiny_package: Path, inputs: Path, tmp_path: Path) -> None:
    """Beside a good input, an empty folder and one whose images are only in sub-folders are errors, not skipped."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "nested" / "deeper").mkdir(parents=True)
    shutil.copy(inputs / "scan.png", tmp_path / "nested" / "deeper" / "scan.png")
    done = infer(tmp_path / "empty", tmp_path / "nested", inputs / "scan.png", "--model", tiny_package, "--json")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    errors = done.stderr.strip().splitlines()
    assert len(errors) == 2 and all("holds no images" in line and "folder itself" in line for line in errors), errors
    assert [json.loads(line)["file"] for line in done.stdout.splitlines()] == [str(inputs / "scan.png")]
    alone = infer(tmp_path / "empty", "--model", tiny_package)
    assert alone.returncode == 2 and alone.stderr.count("error:") == 1 and "holds no images" in alone.stderr


def test_damaged_package_is_one_line_exit_2(tiny_package: Path, inputs: Path, tmp_path: Path) -> None:
    broken = tmp_path / "pkg"
    shutil.copytree(tiny_package, broken)
    (broken / "model.onnx").write_bytes(b"truncated")
    done = infer(inputs / "scan.png", "--model", broken)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "model.onnx" in done.stderr
    assert "re-export" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("command", ["infer", "train", "serve"])
def test_help_paragraphs_wrap_to_the_terminal(command: str) -> None:
    """A docstring paragraph is reflowed at the terminal's width, not broken where its source line ended."""
    import inspect

    from typer.testing import CliRunner

    from gpedge.cli import app

    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    module = __import__(f"gpedge.commands.{command}", fromlist=["main"])
    first, second, *_ = inspect.cleandoc(module.main.__doc__).split("\n\n")[1].splitlines()
    joined = f"{first} {second.split()[0]}"
    assert len(joined) < 150
    assert any(joined in line for line in result.output.splitlines()), result.output
