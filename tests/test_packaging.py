"""The wheel maps export/ and cli.py into the gpedge namespace and ships the bundled model."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT


@pytest.mark.slow
def test_wheel_layout(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("gpedge-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top_level == {"gpedge"}
    for required in ("gpedge/cli.py", "gpedge/export/__init__.py", "gpedge/export/exporter.py",
                     "gpedge/graph/contract.py", "gpedge/graph/fused.py", "gpedge/tensorrt/runner.py",
                     "gpedge/assets/default_model/manifest.json", "gpedge/assets/default_model/model.onnx"):
        assert required in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "gpedge = gpedge.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
