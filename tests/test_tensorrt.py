"""TensorRT engines of the FP16 graph (marker ``tensorrt``; skipped without TensorRT and a CUDA GPU)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import make_slices
from gpedge.export.parity import backend_outputs, compare
from gpedge.package import ModelPackage
from gpedge.runtime.backends.base import rule_inputs
from gpedge.runtime.backends.onnxruntime import OnnxRuntimeBackend
from gpedge.tensorrt.cuda import unavailable_reason

REASON = unavailable_reason()
pytestmark = [
    pytest.mark.tensorrt,
    pytest.mark.skipif(REASON is not None, reason=f"TensorRT tests need TensorRT and a CUDA GPU: {REASON}"),
]


def test_package_ships_a_verified_fp16_engine(tiny_package: Path) -> None:
    package = ModelPackage.load(tiny_package)
    engines = package.manifest["engines"]
    assert len(engines) == 1
    meta = engines[0]
    assert package.file(meta["file"]).is_file()
    assert meta["io"]["image"]["dtype"] == "FLOAT" and meta["io"]["offset"]["dtype"] == "FLOAT"
    assert meta["io"]["label"]["dtype"] == "INT32" and meta["io"]["mask"]["dtype"] == "UINT8"
    assert meta["layer_precisions"].get("FP16", 0) > 0
    assert meta["profile"] == {"min": 1, "opt": 4, "max": 4}
    parity = package.manifest["parity"]["tensorrt_vs_fp32"]
    assert parity["label_agreement"] >= 0.8 and parity["max_abs_diff_probs"] < 1e-2


def test_built_engine_matches_onnxruntime_fp32(tiny_package: Path, tmp_path: Path) -> None:
    from gpedge.tensorrt.builder import build_engine
    from gpedge.tensorrt.inspection import EXPECTED_IO
    from gpedge.tensorrt.loader import deserialize
    from gpedge.tensorrt.runner import EngineRunner

    engine = tmp_path / "tiny.engine"
    meta = build_engine(tiny_package / "model.fp16.onnx", engine, (1, 64, 64), max_batch=4, cache_dir=tmp_path)
    assert (tmp_path / "timing.cache").is_file()
    assert meta["sha256"] and meta["layer_precisions"].get("FP16", 0) > 0
    assert {name: entry["dtype"] for name, entry in meta["io"].items()} == EXPECTED_IO
    images = make_slices(3, seed=4).images
    runner = EngineRunner(deserialize(engine.read_bytes(), version_compatible=False, source=str(engine)))
    for offset in (0.0, 0.5):
        trt_out = runner.run({"image": images, **rule_inputs(offset, "paper")})
        reference = backend_outputs(OnnxRuntimeBackend(ModelPackage.load(tiny_package), "cpu"), images, offset)
        assert trt_out["label"].dtype == np.int32 and trt_out["mask"].dtype == np.uint8
        assert trt_out["heatmaps"].shape == (3, 3, 64, 64)
        result = compare(reference, trt_out)
        print(json.dumps(result))
        assert result["max_abs_diff_probs"] < 1e-2
        assert result["label_agreement"] >= 2 / 3
        same = reference["label"] == trt_out["label"]
        assert (reference["mask"][same] == trt_out["mask"][same]).mean() >= 0.99
    runner.close()


def test_int8_engine_from_the_packaged_qdq_graph(int8_package: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """TensorRT's explicit quantization of the package's Q/DQ graph, against ONNX Runtime running the same graph."""
    from gpedge.runtime.backends.tensorrt import TensorRTBackend

    monkeypatch.setenv("GPEDGE_CACHE", str(tmp_path))
    package = ModelPackage.load(int8_package)
    images = make_slices(4, seed=5).images
    with TensorRTBackend(package, precision="int8") as backend:
        assert backend.precision == "int8" and backend.engine_meta["built_from"] == "model.int8.onnx"
        assert backend.engine_meta["layer_precisions"].get("INT8", 0) > 0
        trt_out = backend_outputs(backend, images, 0.5)
    reference = backend_outputs(OnnxRuntimeBackend(package, "cpu", precision="int8"), images, 0.5)
    result = compare(reference, trt_out)
    print(json.dumps(result))
    assert result["max_abs_diff_probs"] < 5e-2 and result["label_agreement"] >= 0.75
