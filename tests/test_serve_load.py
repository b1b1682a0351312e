"""The loopback load test (benchmarks/serve_load.py) at a small size: parallel associations, nothing lost."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from dcmtk import need

SCRIPT = ROOT / "benchmarks" / "serve_load.py"


@pytest.mark.slow
def test_parallel_associations_lose_nothing(tmp_path: Path) -> None:
    need("storescu", "storescp", "echoscu")
    out = tmp_path / "load.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--series", "6", "--parallel", "3", "--workers", "2",
                           "--slices", "6", "--out", str(out)], capture_output=True, text=True, timeout=900)
    summary = json.loads(out.read_text())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert summary["series_processed"] == 6 and summary["lost_series"] == 0 and summary["series_failed"] == 0
    assert summary["objects_at_destination"] == 18 and summary["spool_left"] == []
    assert summary["latency_s"]["e2e_s"]["max"] >= summary["latency_s"]["process_s"]["max"] > 0
