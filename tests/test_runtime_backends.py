"""Backends: ORT vs torch agreement, auto choice, torch-free import path, TensorRT (marker)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gpedge
from conftest import make_slices
from gpedge.errors import BackendUnavailable
from gpedge.graph.contract import OUTPUTS
from gpedge.package import ModelPackage
from gpedge.runtime.backends import create_backend
from gpedge.cpus import physical_cores
from gpedge.tensorrt.cuda import tensorrt_available


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_import_and_onnxruntime_path_import_no_torch(tiny_package: Path) -> None:
    code = (
        "import sys, numpy as np, gpedge\n"
        "assert 'torch' not in sys.modules, 'import gpedge'\n"
        f"p = gpedge.Predictor({str(tiny_package)!r}, backend='auto')\n"
        "r = p.predict(np.random.rand(40, 48).astype('float32') * 1000)\n"
        "assert 'torch' not in sys.modules, 'predict'\n"
        "print(p.backend_name)\n"
    )
    done = _python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ("tensorrt" if tensorrt_available() else "onnxruntime")


def test_onnxruntime_and_torch_agree(tiny_package: Path) -> None:
    pytest.importorskip("torch")
    package = ModelPackage.load(tiny_package)
    batch = make_slices(4, seed=5).images
    ort = create_backend("onnxruntime", package, "cpu")
    ref = create_backend("torch", package, "cpu")
    a, b = ort.run(batch), ref.run(batch)
    assert set(a) == set(b) == set(OUTPUTS)
    np.testing.assert_array_equal(a["label"], b["label"])
    np.testing.assert_allclose(a["probs"], b["probs"], atol=1e-5)
    np.testing.assert_allclose(a["heatmaps"], b["heatmaps"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(a["threshold"], b["threshold"], atol=1e-4)
    assert (a["mask"] != b["mask"]).mean() < 1e-3
    c, d = ort.run(batch, offset=0.1), ref.run(batch, offset=0.1)
    np.testing.assert_allclose(c["threshold"], d["threshold"], atol=1e-4)


def test_onnxruntime_session_settings(tiny_package: Path) -> None:
    backend = create_backend("onnxruntime", ModelPackage.load(tiny_package), "cpu")
    assert backend.providers == ["CPUExecutionProvider"]
    assert backend._session.get_session_options().intra_op_num_threads == physical_cores()
    assert "cpu" in backend.description


def test_unavailable_backends_say_what_to_install(tiny_package: Path) -> None:
    package = ModelPackage.load(tiny_package)
    with pytest.raises(BackendUnavailable, match="unknown backend"):
        create_backend("openvino", package)
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(BackendUnavailable, match="onnxruntime-gpu"):
            create_backend("onnxruntime", package, "cuda")
    if not tensorrt_available():
        with pytest.raises(BackendUnavailable, match="install"):
            gpedge.Predictor(tiny_package, backend="tensorrt")


@pytest.mark.tensorrt
def test_tensorrt_matches_onnxruntime(tiny_package: Path, tmp_path: Path, monkeypatch) -> None:
    if not tensorrt_available():
        pytest.skip("TensorRT, cuda-python or an NVIDIA GPU is not available")
    monkeypatch.setenv("GPEDGE_CACHE", str(tmp_path / "cache"))
    slices = make_slices(6, seed=9).images
    with gpedge.Predictor(tiny_package, backend="tensorrt", batch_size=4) as trt, \
            gpedge.Predictor(tiny_package, backend="onnxruntime", device="cpu", batch_size=4) as ort:
        assert trt.backend_name == "tensorrt"
        for a, b in zip(trt.predict(slices), ort.predict(slices)):
            assert a.class_index == b.class_index
            np.testing.assert_allclose(a.heatmaps, b.heatmaps, rtol=5e-2, atol=5e-2)  # FP16 engine
        again = trt.predict(slices)  # buffers reused across calls
        assert [r.class_index for r in again] == [r.class_index for r in trt.predict(slices)]


def test_engine_metadata_mismatch_is_explained() -> None:
    from gpedge.tensorrt.cuda import GpuInfo
    from gpedge.tensorrt.engines import engine_mismatch

    h100 = GpuInfo(0, "NVIDIA H100 80GB HBM3", "9.0")
    meta = {"tensorrt_version": "10.13.0", "gpu_name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0",
            "hardware_compatibility": "NONE", "version_compatible": False}
    assert engine_mismatch(meta, h100, "10.13.0") is None
    assert "TensorRT 10.13.0" in engine_mismatch(meta, h100, "10.14.1")
    assert engine_mismatch({**meta, "version_compatible": True}, h100, "10.14.1") is None
    orin = GpuInfo(0, "Orin", "8.7")
    assert "built for NVIDIA H100" in engine_mismatch(meta, orin, "10.13.0")
    assert engine_mismatch({**meta, "hardware_compatibility": "AMPERE_PLUS"}, orin, "10.13.0") is None
    turing = GpuInfo(0, "Tesla T4", "7.5")
    assert "Ampere" in engine_mismatch({**meta, "hardware_compatibility": "AMPERE_PLUS"}, turing, "10.13.0")


def test_onnxruntime_builds_installed_together_are_named_with_the_fix(tmp_path, monkeypatch) -> None:
    """A second ONNX Runtime distribution (here an onnxruntime-gpu dist-info beside the real onnxruntime)."""
    from gpedge.runtime.backends.onnxruntime import install_conflict

    info = tmp_path / "onnxruntime_gpu-1.31.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: onnxruntime-gpu\nVersion: 1.31.1\n")
    install_conflict.cache_clear()
    assert install_conflict() is None
    monkeypatch.syspath_prepend(str(tmp_path))
    install_conflict.cache_clear()
    try:
        message = install_conflict()
    finally:
        install_conflict.cache_clear()
    assert "onnxruntime and onnxruntime-gpu are installed together" in message
    assert "pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu" in message


def test_opening_a_backend_leaves_the_callers_floating_point_mode_alone(tiny_package) -> None:
    """ONNX Runtime's flush-to-zero mode (set_denormal_as_zero) stays in its own threads: the application's
    thread still computes with denormal numbers afterwards."""
    from gpedge.package import ModelPackage
    from gpedge.runtime.backends.onnxruntime import OnnxRuntimeBackend

    tiny = np.array([1e-40], np.float32)
    with OnnxRuntimeBackend(ModelPackage.load(tiny_package), "cpu") as backend:
        backend.run(np.ones((1, 1, 64, 64), np.float32))
        assert (tiny * np.float32(1.0))[0] != 0.0
