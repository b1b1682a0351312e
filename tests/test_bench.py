"""gpedge bench: rows, accuracy fields, INT8 path, process isolation, refusals, FLOPs, volumes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gpedge.bench.backends import available_backends, unavailable_reason
from gpedge.bench.runner import BenchSettings, benchmark_volume, realistic_slices
from gpedge.graph.agreement import compare, mask_dice
from gpedge.package import ModelPackage

ROW_FIELDS = (
    "backend", "batch", "p50_ms", "p90_ms", "p99_ms", "throughput", "peak_mem_mb", "preprocess_ms",
    "inference_ms", "postprocess_ms", "gflop", "tflops", "pid", "cpu", "load",
)
ACCURACY_FIELDS = ("label_agreement", "max_prob_diff", "mask_dice", "accuracy_slices", "mask_slices")
TINY = ["bench", "--arch", "gp-unet", "--width", "4", "--image-size", "32", "--channels", "1"]


def _gpedge(*args: str, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "GPEDGE_CACHE": str(cache)}
    return subprocess.run([sys.executable, "-m", "gpedge.cli", *args], capture_output=True, text=True, env=env)


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    from gpedge.export.untrained import untrained_package

    out = tmp_path_factory.mktemp("bench") / "package"
    return untrained_package("gp-unet", channels=1, image_size=32, options={"width": 4}, max_batch=4, out_dir=out)


@pytest.mark.slow
def test_cli_rows_for_every_backend_each_from_its_own_process(tmp_path):
    proc = _gpedge(*TINY, "--iters", "3", "--warmup", "1", "--batch", "1,2", "--accuracy-slices", "4", "--json", cache=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    backends = available_backends()
    assert {"torch", "onnxruntime", "onnxruntime-int8"} <= set(backends)
    assert sorted((r["backend"], r["batch"]) for r in rows) == sorted((b, n) for b in backends for n in (1, 2))
    for row in rows:
        missing = [f for f in ROW_FIELDS + ACCURACY_FIELDS if f not in row]
        assert not missing, f"{row['backend']} row lacks {missing}"
        for field in ("p50_ms", "p90_ms", "p99_ms", "throughput", "peak_mem_mb", "gflop", "tflops", "inference_ms"):
            assert row[field] > 0, f"{row['backend']} {field} = {row[field]}"
        assert row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"]
        assert 0.0 <= row["label_agreement"] <= 1.0 and 0.0 <= row["mask_dice"] <= 1.0
        assert row["accuracy_slices"] == 4
    pids = {b: {r["pid"] for r in rows if r["backend"] == b} for b in backends}
    print("child pid per backend:", pids)
    assert all(len(p) == 1 for p in pids.values()), pids
    assert len({p for ps in pids.values() for p in ps}) == len(backends), pids
    assert os.getpid() not in {p for ps in pids.values() for p in ps}
    torch_rows = [r for r in rows if r["backend"] == "torch"]
    # eager FP32 runs the same fused function as the FP32 graph
    assert all(r["label_agreement"] == 1.0 and r["max_prob_diff"] < 1e-4 for r in torch_rows)


def test_table_output_for_a_package(package, tmp_path):
    proc = _gpedge("bench", "--model", str(package), "--backend", "onnxruntime", "--iters", "2", "--warmup", "0", "--batch", "1",
                   "--accuracy-slices", "2", "--out", str(tmp_path / "rows.json"), cache=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "onnxruntime" in proc.stdout and "GFLOP" in proc.stdout
    row = json.loads((tmp_path / "rows.json").read_text())[0]
    assert row["backend"] == "onnxruntime" and row["load"] == "idle"
    assert row["cpu"] and row["cpu"].split(" (")[0] in Path("/proc/cpuinfo").read_text()
    assert "spinning" not in row["description"]  # no busy-waiting pool threads by default


def test_competing_process_rows(package, tmp_path):
    """The row says it ran beside a competitor, and the competitor really used the CPUs meanwhile."""
    from gpedge.bench.runner import competing_process

    start = os.times()
    with competing_process():
        proc = _gpedge("bench", "--model", str(package), "--backend", "onnxruntime", "--iters", "2", "--warmup", "0",
                       "--batch", "1", "--accuracy-slices", "2", "--competing-process", "--json", cache=tmp_path)
    busy = os.times().children_user - start.children_user
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["load"].startswith("1 competing process")
    assert busy > 0.5, f"the competitor used only {busy:.2f} s of CPU"


@pytest.mark.parametrize("backend", ["tensorrt", "tensorrt-int8", "torch-fp16", "onnxruntime-cuda", "no-such-backend"])
def test_unavailable_backend_is_refused_with_the_reason(tmp_path, backend):
    reason = unavailable_reason(backend)
    if reason is None:
        pytest.skip(f"{backend} is available on this machine")
    proc = _gpedge(*TINY, "--backend", backend, cache=tmp_path)
    assert proc.returncode == 2
    message = proc.stderr.strip()
    assert len(message.splitlines()) == 1 and backend in message and reason in message


def test_int8_backends_need_the_packaged_int8_graph(package, tmp_path):
    proc = _gpedge("bench", "--model", str(package), "--backend", "onnxruntime,onnxruntime-int8", "--batch", "1", cache=tmp_path)
    assert proc.returncode == 2 and "model.int8.onnx" in proc.stderr and "gpedge export --int8" in proc.stderr
    proc = _gpedge("bench", "--model", str(package), "--int8-per-tensor", cache=tmp_path)
    assert proc.returncode == 2 and "gpedge export --int8" in proc.stderr


def test_flop_count_matches_torch_flop_counter(package):
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from gpedge.bench.flops import gflop_per_slice
    from gpedge.runtime.backends.base import rule_inputs
    from gpedge.runtime.backends.torch import load_fused_model

    pkg = ModelPackage.load(package)
    model = load_fused_model(pkg)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.rand(1, 1, 32, 32) * 1000.0, *(torch.from_numpy(v) for v in rule_inputs(pkg.offset, pkg.mask_rule).values()))
    assert gflop_per_slice(pkg.file("model.onnx")) == pytest.approx(counter.get_total_flops() / 1e9, rel=1e-9)


def test_mask_dice_and_agreement():
    ref = np.zeros((2, 8, 8), np.uint8)
    pred = np.zeros((2, 8, 8), np.uint8)
    ref[0, :4, :4] = 1  # 16 px
    pred[0, :4, :] = 1  # 32 px, 16 shared
    expected = 2 * 16 / (16 + 32)  # slice 1 is empty in both and does not count
    assert mask_dice(pred, ref) == pytest.approx(expected)
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]], np.float32)
    result = compare(
        {"label": np.array([0, 1]), "probs": probs + 0.05, "mask": pred},
        {"label": np.array([0, 2]), "probs": probs, "mask": ref},
    )
    assert result["label_agreement"] == 0.5 and result["mask_slices"] == 1
    assert result["max_prob_diff"] == pytest.approx(0.05, abs=1e-6)


def test_whole_volume_writes_the_mask(package, tmp_path):
    nib = pytest.importorskip("nibabel")
    volume = realistic_slices(5, 1, (32, 32), 3, seed=3)[:, 0].transpose(1, 2, 0)  # (H, W, S)
    scan = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(volume.astype(np.float32), np.eye(4)), str(scan))
    out = tmp_path / "mask.nii.gz"
    settings = BenchSettings(backends=["onnxruntime"], batches=[2], warmup=1, iters=2)
    (row,) = benchmark_volume(package, scan, out, settings)
    assert row["slices"] == 5 and row["pid"] != os.getpid()
    stages = ("read", "preprocess", "inference", "postprocess", "write")
    assert all(row[f"{s}_ms"] >= 0 for s in stages) and row["inference_ms"] > 0
    assert row["total_ms"] == pytest.approx(sum(row[f"{s}_ms"] for s in stages))
    mask = nib.load(str(out))
    assert mask.shape == volume.shape and mask.get_data_dtype() == np.uint8
    assert int(np.asarray(mask.dataobj).astype(bool).sum()) == row["tumour_voxels"]
