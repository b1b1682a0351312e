"""``gpedge export`` command line: error paths print one line and exit 2."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gpedge.tensorrt.cuda import unavailable_reason


def _gpedge(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gpedge.cli", *args], capture_output=True, text=True, timeout=120)


def test_missing_run_dir(tmp_path: Path) -> None:
    result = _gpedge("export", str(tmp_path / "nope"), "--out", str(tmp_path / "pkg"))
    assert result.returncode == 2
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "pkg").exists()


@pytest.mark.skipif(unavailable_reason() is None, reason="TensorRT and a GPU are present here")
def test_engine_without_tensorrt_is_a_clear_error(tiny_run_dir: Path, tmp_path: Path) -> None:
    result = _gpedge("export", str(tiny_run_dir), "--out", str(tmp_path / "pkg"), "--engine")
    assert result.returncode == 2
    assert "--engine" in result.stderr and "TensorRT" in result.stderr
    assert not (tmp_path / "pkg").exists()


@pytest.mark.slow
def test_export_writes_a_package(tiny_run_dir: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from gpedge.cli import app

    result = CliRunner().invoke(app, ["export", str(tiny_run_dir), "--out", str(tmp_path / "pkg"), "--max-batch", "2",
                                      "--no-fp16", "--no-engine", "--offset", "0.25", "--parity-samples", "2"])
    assert result.exit_code == 0, result.output
    assert "onnxruntime_fp32_vs_torch" in result.output
    assert (tmp_path / "pkg" / "model.onnx").is_file() and not (tmp_path / "pkg" / "model.fp16.onnx").exists()
    assert json.loads((tmp_path / "pkg" / "manifest.json").read_text())["mask_rule"]["offset"] == 0.25
