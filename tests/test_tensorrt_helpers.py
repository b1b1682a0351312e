"""The TensorRT-free parts of the engine path: inspector layouts, precision check, names, build command,
engine selection security. Runs everywhere (no TensorRT, no GPU).

``tests/data/tensorrt/inspector-{10,11}.x.json`` are engine-inspector outputs in the two layouts
NVIDIA documents (TensorRT 10.x engine-tools page; the 10.x -> 11.x IEngineInspector migration
guide), written for this project's graph, since no TensorRT is installable here.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpedge.errors import GpedgeError, PackageError
from gpedge.graph.contract import INPUTS, OUTPUTS
from gpedge.package import ModelPackage
from gpedge.tensorrt.builder import build_command, profile_shapes
from gpedge.tensorrt.engines import engine_file_name
from gpedge.tensorrt.inspection import EXPECTED_IO, check_engine, layer_precisions, precision_of

DATA = Path(__file__).parent / "data" / "tensorrt"


@pytest.mark.parametrize(
    ("text", "precision"),
    [
        ("Half", "FP16"),
        ("Float", "FP32"),
        ("Row major linear FP16 format", "FP16"),
        ("Row major linear FP16 format (kLINEAR)", "FP16"),
        ("Channel major FP16 format where channel % 8 == 0", "FP16"),
        ("Row major linear FP32", "FP32"),
        ("BFloat16", "BF16"),
        ("UInt8", "UINT8"),
        ("Int8", "INT8"),
        ("Int32", "INT32"),
    ],
)
def test_layer_precision_from_inspector_text(text: str, precision: str) -> None:
    assert precision_of(text) == precision


@pytest.mark.parametrize("version", ["10.x", "11.x"])
def test_layer_precisions_in_both_inspector_layouts(version: str) -> None:
    information = json.loads((DATA / f"inspector-{version}.json").read_text())
    assert layer_precisions(information) == {"FP16": 3, "FP32": 1, "UINT8": 1, "INT32": 1}


def test_the_11x_layout_is_read_from_its_datatype_field() -> None:
    """In 11.x the format text of a reformat layer says nothing about FP32 vs FP16 without the data type."""
    layer = {"Outputs": [{"DataType": "Half", "Format": "Row major linear format (kLINEAR)"}]}
    assert layer_precisions({"Layers": [layer]}) == {"FP16": 1}


def _io(**overrides: str) -> dict:
    io = {name: {"mode": "input" if name in INPUTS else "output", "dtype": dtype} for name, dtype in EXPECTED_IO.items()}
    for name, dtype in overrides.items():
        io[name]["dtype"] = dtype
    return io


def test_expected_engine_io_is_the_graph_contract() -> None:
    assert set(EXPECTED_IO) == set(INPUTS) | set(OUTPUTS)
    assert EXPECTED_IO["label"] == "INT32" and EXPECTED_IO["mask"] == "UINT8" and EXPECTED_IO["offset"] == "FLOAT"


def test_engine_without_fp16_layers_is_refused() -> None:
    with pytest.raises(GpedgeError, match="no FP16 layers"):
        check_engine({"io": _io(), "layer_precisions": {"FP32": 40}}, "model.fp16.onnx")
    check_engine({"io": _io(), "layer_precisions": {"FP16": 30, "FP32": 10}}, "model.fp16.onnx")


def test_engine_with_int64_label_is_refused() -> None:
    with pytest.raises(GpedgeError, match="unexpected I/O dtypes"):
        check_engine({"io": _io(label="INT64"), "layer_precisions": {"FP16": 3}}, "model.fp16.onnx")


def test_engine_name_profile_and_target_command() -> None:
    name = engine_file_name("NVIDIA H100 80GB HBM3", "9.0", "10.13.0.35")
    assert name == "nvidia-h100-80gb-hbm3-sm90-trt10.13.0.35.engine"
    command = build_command("model.fp16.onnx", (1, 128, 128), 16, "x.engine")
    assert "--stronglyTyped" in command and "--maxShapes=image:16x1x128x128" in command
    shapes = profile_shapes((1, 128, 128), 8, 16)
    assert set(shapes) == set(INPUTS)
    assert shapes["image"] == ((1, 1, 128, 128), (8, 1, 128, 128), (16, 1, 128, 128))
    assert shapes["offset"] == ((1,), (1,), (1,))
    assert shapes["mask_rule"] == ((3,), (3,), (3,))


def test_build_without_tensorrt_says_what_to_install() -> None:
    from gpedge.errors import BackendUnavailable
    from gpedge.tensorrt.builder import build_engine
    from gpedge.tensorrt.cuda import unavailable_reason

    if unavailable_reason() is None:
        pytest.skip("TensorRT and a GPU are present here")
    with pytest.raises(BackendUnavailable, match="install TensorRT"):
        build_engine("model.fp16.onnx", "x.engine", (1, 64, 64), max_batch=4)


def _package_with_engine(root: Path, name: str, sha: str | None) -> ModelPackage:
    root.mkdir(parents=True, exist_ok=True)
    files = {} if sha is None else {name: {"sha256": sha, "bytes": 4, "precision": "float16"}}
    return ModelPackage(root=root, manifest={"files": files, "engines": [{"file": name}]})


def test_packaged_engine_must_be_listed_inside_the_package_and_match_its_sha256(tmp_path: Path) -> None:
    """The checks run before any TensorRT call: a hostile manifest never gets a plan deserialised."""
    from gpedge.tensorrt.loader import _packaged_plan

    outside = tmp_path / "elsewhere.engine"
    outside.write_bytes(b"plan")
    package = _package_with_engine(tmp_path / "pkg", "../elsewhere.engine", "0" * 64)
    with pytest.raises(PackageError, match="outside the package"):
        _packaged_plan(package, "../elsewhere.engine")
    package = _package_with_engine(tmp_path / "pkg", str(outside), "0" * 64)
    with pytest.raises(PackageError, match="outside the package"):
        _packaged_plan(package, str(outside))

    engine = tmp_path / "pkg" / "engines" / "x.engine"
    engine.parent.mkdir()
    engine.write_bytes(b"plan")
    with pytest.raises(PackageError, match="not listed with a sha256"):
        _packaged_plan(_package_with_engine(tmp_path / "pkg", "engines/x.engine", None), "engines/x.engine")
    with pytest.raises(PackageError, match="does not match the sha256"):
        _packaged_plan(_package_with_engine(tmp_path / "pkg", "engines/x.engine", "0" * 64), "engines/x.engine")
    import hashlib

    good = _package_with_engine(tmp_path / "pkg", "engines/x.engine", hashlib.sha256(b"plan").hexdigest())
    assert _packaged_plan(good, "engines/x.engine") == (engine, b"plan")
