"""INT8 as a product: ``gpedge export --int8`` (calibration, gate, manifest), the Q/DQ graph's structure,
precision selection in the runtime (``auto`` picks INT8 on the CPU), and the refusals."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from gpedge.errors import BackendUnavailable, GpedgeError, Int8GateRefused, PackageError
from gpedge.export import ExportOptions, export_package
from gpedge.export.int8 import GATE_LABEL_AGREEMENT, GATE_MASK_DICE, calibration_slices, network_nodes
from gpedge.export.parity import backend_outputs, run_slices
from gpedge.graph.agreement import mask_dice
from gpedge.package import ModelPackage, sha256_file
from gpedge.runs import RunConfig
from gpedge.runtime.backends import create_backend
from gpedge.runtime.backends.onnxruntime import OnnxRuntimeBackend
from gpedge.runtime.predictor import Predictor
from conftest import EXAMPLES


def test_int8_package_passes_its_gate_on_the_validation_patients(int8_package: Path, int8_run_dir: Path) -> None:
    manifest = json.loads((int8_package / "manifest.json").read_text())
    entry = manifest["files"]["model.int8.onnx"]
    assert entry["precision"] == "int8" and entry["sha256"] == sha256_file(int8_package / "model.int8.onnx")
    record, gate = manifest["int8"], manifest["int8"]["gate"]
    assert record["calibration"]["slices"] == 32 and "training patients" in record["calibration"]["source"]
    assert gate["passed"] and gate["enforced"] and "validation patients" in gate["source"]
    assert (gate["label_agreement_min"], gate["mask_dice_min"]) == (GATE_LABEL_AGREEMENT, GATE_MASK_DICE)
    # recomputed here on every validation slice (fewer than the 64 gate slices asked for)
    config = RunConfig.load(int8_run_dir)
    images = run_slices(config, "val", 1000, np.random.default_rng(0))
    assert gate["slices"] == len(images) and gate["mask_slices"] > 0
    package = ModelPackage.load(int8_package)
    fp32, int8 = (backend_outputs(OnnxRuntimeBackend(package, "cpu", precision=p), images, gate["offset"]) for p in ("fp32", "int8"))
    assert np.mean(fp32["label"] == int8["label"]) == gate["label_agreement"] >= GATE_LABEL_AGREEMENT
    assert mask_dice(int8["mask"], fp32["mask"]) == pytest.approx(gate["mask_dice"], abs=1e-12)
    assert gate["mask_dice"] >= GATE_MASK_DICE
    assert manifest["parity"]["int8_vs_fp32"]["label_agreement"] == gate["label_agreement"]


def test_qdq_graph_quantizes_the_network_symmetrically_and_keeps_input_layer_head_and_mask_rule_fp32(
    int8_package: Path,
) -> None:
    fp32 = onnx.load(str(int8_package / "model.onnx"))
    graph = onnx.load(str(int8_package / "model.int8.onnx")).graph
    nodes = network_nodes(fp32)
    reads_image = {name for name, _, first in nodes if first}
    head = {name for name, path, _ in nodes if path.startswith("network.head")}
    assert len(reads_image) == 1 and len(head) == 2  # with flip averaging too: one network call on both views
    initializers = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    dequantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    quantized = {n.name for n in graph.node if n.op_type in ("Conv", "MatMul") and any(i in dequantized for i in n.input)}
    assert quantized == {name for name, _, _ in nodes} - reads_image - head
    mask_rule = {n.name for n in graph.node if n.op_type == "MatMul"} - {name for name, _, _ in nodes}
    assert mask_rule and not mask_rule & quantized
    # TensorRT's explicit quantization: signed INT8 with zero point 0 everywhere
    zero_points = [initializers[n.input[2]] for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)
    record = json.loads((int8_package / "manifest.json").read_text())["int8"]
    assert record["quantized_nodes"] == len(quantized) and set(record["fp32_nodes"]) == reads_image | head


def test_a_failed_gate_refuses_the_export_with_the_figures(int8_run_dir: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("gpedge.export.int8.GATE_MASK_DICE", 1.01)  # no INT8 graph reaches it
    options = ExportOptions(max_batch=4, fp16=False, engine=False, parity_samples=2, int8=True, calibration_slices=8)
    with pytest.raises(Int8GateRefused) as error:
        export_package(int8_run_dir, tmp_path / "pkg", options)
    message = str(error.value)
    assert "--int8 refused" in message and "mean mask Dice" in message and "gate >= 1.01" in message
    assert "validation patients" in message and "Nothing was written" in message
    assert not (tmp_path / "pkg").exists() and list(tmp_path.iterdir()) == []


def test_calibration_data_is_checked(int8_run_dir: Path, small_brats: Path, tmp_path: Path) -> None:
    config = RunConfig.load(int8_run_dir)
    slices, source = calibration_slices(config, small_brats, 5)
    assert slices.shape == (5, 1, 64, 64) and source == str(small_brats)
    good = tmp_path / "good.npy"
    np.save(good, np.random.default_rng(0).uniform(0, 900, (7, 1, 64, 64)).astype(np.float32))
    assert calibration_slices(config, good, 4)[0].shape == (4, 1, 64, 64)
    for name, array, message in (
        ("shape.npy", np.zeros((3, 2, 64, 64), np.float32), "expected float slices of shape (N, 1, 64, 64)"),
        ("nan.npy", np.full((3, 1, 64, 64), np.nan, np.float32), "NaN"),
    ):
        np.save(tmp_path / name, array)
        with pytest.raises(GpedgeError, match=message.replace("(", r"\(").replace(")", r"\)")):
            calibration_slices(config, tmp_path / name, 4)
    with pytest.raises(GpedgeError, match="not a data-set folder or a .npy file"):
        calibration_slices(config, tmp_path / "missing", 4)
    moved = RunConfig.load(int8_run_dir)
    moved.dataset = {"format": "brats", "path": str(tmp_path / "elsewhere")}
    with pytest.raises(GpedgeError, match="--calibration DATA"):
        calibration_slices(moved, None, 4)


def test_auto_precision_picks_int8_on_the_cpu_and_results_say_so(int8_package: Path, tiny_package: Path) -> None:
    image = EXAMPLES / "hgg_t1ce.png"
    with Predictor(int8_package, backend="onnxruntime", device="cpu") as predictor:
        assert predictor.precision == "int8" and "model.int8.onnx" in predictor.backend_description
        result = predictor.predict(image)[0]
        assert result.precision == "int8" and result.to_dict()["precision"] == "int8"
    with Predictor(int8_package, device="cpu", precision="fp32") as predictor:
        assert predictor.predict(image)[0].precision == "fp32"
    with Predictor(tiny_package, device="cpu") as predictor:  # no INT8 graph: FP32
        assert predictor.precision == "fp32"
    with Predictor(tiny_package, device="cpu", precision="fp16") as predictor:
        assert predictor.precision == "fp16" and "model.fp16.onnx" in predictor.backend_description


def test_precisions_a_backend_or_package_cannot_run_are_refused(tiny_package: Path) -> None:
    package = ModelPackage.load(tiny_package)
    with pytest.raises(PackageError, match="no model.int8.onnx.*gpedge export --int8"):
        create_backend("onnxruntime", package, "cpu", precision="int8")
    with pytest.raises(BackendUnavailable, match="torch backend runs fp32, not int8"):
        create_backend("torch", package, "cpu", precision="int8")
    with pytest.raises(BackendUnavailable, match="tensorrt backend runs fp16 or int8, not fp32"):
        create_backend("tensorrt", package, precision="fp32")
    with pytest.raises(BackendUnavailable, match="'int4' is not one of auto, fp32, fp16, int8"):
        create_backend("onnxruntime", package, "cpu", precision="int4")


def test_infer_cli_states_the_precision(int8_package: Path) -> None:
    args = [sys.executable, "-m", "gpedge.cli", "infer", str(EXAMPLES / "hgg_t1ce.png"), "--model", str(int8_package)]
    record = json.loads(subprocess.run(args + ["--json"], capture_output=True, text=True, check=True).stdout)
    assert record["precision"] == "int8"
    refused = subprocess.run(args + ["--precision", "int4"], capture_output=True, text=True)
    assert refused.returncode == 2 and "int4" in refused.stderr and "Traceback" not in refused.stderr
