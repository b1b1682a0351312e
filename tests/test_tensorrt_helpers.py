"""The TensorRT-free parts of the engine path: precision parsing, names, the target build command."""
from __future__ import annotations

import pytest

from gpedge.export import tensorrt_build
from gpedge.runtime.backends.tensorrt import engine_file_name


@pytest.mark.parametrize(
    ("text", "precision"),
    [
        ("Half", "FP16"),
        ("Float", "FP32"),
        ("Row major linear FP16 format", "FP16"),
        ("Channel major FP16 format where channel % 8 == 0", "FP16"),
        ("Row major linear FP32", "FP32"),
        ("BFloat16", "BF16"),
        ("UInt8", "UINT8"),
        ("Int8", "INT8"),
        ("Int32", "INT32"),
    ],
)
def test_layer_precision_from_inspector_text(text: str, precision: str) -> None:
    assert tensorrt_build._precision(text) == precision


def test_engine_without_fp16_layers_is_refused() -> None:
    io = {name: {"mode": "input" if name == "image" else "output", "dtype": dtype} for name, dtype in tensorrt_build.EXPECTED_IO.items()}
    with pytest.raises(tensorrt_build.GpedgeError, match="no FP16 layers"):
        tensorrt_build._check_precision({"io": io, "layer_precisions": {"FP32": 40}}, "model.fp16.onnx")
    tensorrt_build._check_precision({"io": io, "layer_precisions": {"FP16": 30, "FP32": 10}}, "model.fp16.onnx")


def test_engine_with_int64_label_is_refused() -> None:
    io = {name: {"mode": "output", "dtype": dtype} for name, dtype in tensorrt_build.EXPECTED_IO.items()}
    io["label"]["dtype"] = "INT64"
    with pytest.raises(tensorrt_build.GpedgeError, match="unexpected I/O dtypes"):
        tensorrt_build._check_precision({"io": io, "layer_precisions": {"FP16": 3}}, "model.fp16.onnx")


def test_engine_name_and_target_command() -> None:
    name = engine_file_name("NVIDIA H100 80GB HBM3", "9.0", "10.13.0.35")
    assert name == "nvidia-h100-80gb-hbm3-sm90-trt10.13.0.35.engine"
    command = tensorrt_build.build_command("model.fp16.onnx", (1, 128, 128), 16, "x.engine")
    assert "--stronglyTyped" in command and "--maxShapes=image:16x1x128x128" in command


def test_build_without_tensorrt_says_what_to_install() -> None:
    reason = tensorrt_build.unavailable_reason()
    if reason is None:
        pytest.skip("TensorRT and a GPU are present here")
    with pytest.raises(tensorrt_build.BackendUnavailable, match="install TensorRT"):
        tensorrt_build.build_engine("model.fp16.onnx", "x.engine", (1, 64, 64), max_batch=4)
