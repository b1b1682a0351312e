"""Triton model repository: configs parsed with Triton's own schema and held to the ONNX models they
describe, batched requests reproduce the package, the client example up to the server.

The server itself cannot run here (it ships as a container with its backends); these tests check
everything it reads, and what its onnxruntime backend does with a merged batch: run the ONNX model
on the requests' inputs concatenated along the batch axis.
"""
from __future__ import annotations

import dataclasses

import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from conftest import EXAMPLES, make_slices

pytest.importorskip("tritonclient.grpc", reason="tritonclient is not installed: pip install 'gpedge[triton]'")
from google.protobuf import text_format  # noqa: E402
from tritonclient.grpc import model_config_pb2 as mc  # noqa: E402

from gpedge.errors import GpedgeError  # noqa: E402
from gpedge.export.triton import TritonOptions, write_repository  # noqa: E402
from gpedge.graph.contract import OUTPUTS, batched_input_specs  # noqa: E402
from gpedge.package import ModelPackage  # noqa: E402
from gpedge.runtime.backends.onnxruntime import OnnxRuntimeBackend  # noqa: E402

ONNX_TO_TRITON = {onnx.TensorProto.FLOAT: mc.TYPE_FP32, onnx.TensorProto.INT32: mc.TYPE_INT32,
                  onnx.TensorProto.UINT8: mc.TYPE_UINT8}


@pytest.fixture(scope="module")
def repo(tiny_package: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("triton") / "models"
    write_repository(tiny_package, root, TritonOptions(name="tiny", kind="cpu", instances=2, preferred_batch=[2, 4]))
    return root


def _parse(folder: Path) -> mc.ModelConfig:
    return text_format.Parse((folder / "config.pbtxt").read_text(), mc.ModelConfig())


def _shape(value: onnx.ValueInfoProto) -> list[int]:
    return [d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim]


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_onnx_model_config_matches_the_onnx_model_exactly(repo: Path, tiny_package: Path) -> None:
    folder = repo / "tiny"
    assert sorted(p.name for p in folder.iterdir()) == ["1", "config.pbtxt", "labels.txt", "manifest.json"]
    config = _parse(folder)
    assert config.name == "tiny" and config.backend == "onnxruntime" and config.max_batch_size == 4
    assert list(config.dynamic_batching.preferred_batch_size) == [2, 4]
    assert config.dynamic_batching.max_queue_delay_microseconds == 1000
    assert [(g.count, g.kind) for g in config.instance_group] == [(2, mc.ModelInstanceGroup.KIND_CPU)]
    model = onnx.load(str(folder / "1" / config.default_model_filename))
    onnx.checker.check_model(model, full_check=True)
    for configured, values in ((config.input, model.graph.input), (config.output, model.graph.output)):
        assert [t.name for t in configured] == [v.name for v in values]
        for tensor, value in zip(configured, values):
            # Triton's batch axis is implicit; a reshape gives the shape the model sees per sample
            per_sample = list(tensor.reshape.shape) if tensor.HasField("reshape") else list(tensor.dims)
            assert [-1, *per_sample] == _shape(value), tensor.name
            assert tensor.data_type == ONNX_TO_TRITON[value.type.tensor_type.elem_type], tensor.name
    # the served graph fixes the package's mask rule: only the image and the per-sample offset are inputs
    assert [t.name for t in config.input] == list(batched_input_specs(1, 64, 64)) == ["image", "offset"]
    assert [t.name for t in config.output] == list(OUTPUTS)
    assert (folder / "labels.txt").read_text().split() == ["Healthy", "LGG", "HGG"]
    assert next(t for t in config.output if t.name == "probs").label_filename == "labels.txt"
    assert (folder / "manifest.json").read_bytes() == (tiny_package / "manifest.json").read_bytes()
    parameters = {k: v.string_value for k, v in config.parameters.items()}
    assert float(parameters["gpedge_mask_offset"]) == ModelPackage.load(tiny_package).offset
    assert parameters["gpedge_mask_rule"] == ModelPackage.load(tiny_package).mask_rule
    assert parameters["gpedge_source_sha256"] == hashlib.sha256((tiny_package / "model.onnx").read_bytes()).hexdigest()


def test_a_merged_batch_reproduces_each_request_on_the_package(repo: Path, tiny_package: Path) -> None:
    """What Triton's dynamic batcher and onnxruntime backend do: concatenate requests along the batch axis."""
    session = _session(repo / "tiny" / "1" / "model.onnx")
    backend = OnnxRuntimeBackend(ModelPackage.load(tiny_package), "cpu")
    images = make_slices(4, seed=11).images
    requests = [(images[:1], 0.0), (images[1:3], 0.75), (images[3:], 3.0)]
    merged = dict(zip(OUTPUTS, session.run(list(OUTPUTS), {
        "image": np.concatenate([r[0] for r in requests]),
        "offset": np.concatenate([np.full((len(r[0]), 1), r[1], np.float32) for r in requests]),
    })))
    row = 0
    for batch, offset in requests:
        alone = backend.run(batch, offset)
        for name in OUTPUTS:
            got = merged[name][row : row + len(batch)]
            if name in ("label", "mask", "threshold"):
                np.testing.assert_array_equal(got, alone[name], err_msg=name)
            else:
                np.testing.assert_allclose(got, alone[name], atol=1e-5, err_msg=name)
        row += len(batch)
    assert merged["mask"].any(), "the check needs non-empty masks"


def _with_engines(package: Path, out: Path) -> Path:
    """A copy of ``package`` whose manifest lists two engines for two compute capabilities.

    The plan bytes are placeholders: the repository writer copies them verbatim and never parses
    them (the TensorRT-marked test below writes a real one).
    """
    shutil.copytree(package, out)
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "engines").mkdir()
    for gpu, cc in (("nvidia-l4", "8.9"), ("nvidia-h100", "9.0")):
        name = f"engines/{gpu}-sm{cc.replace('.', '')}-trt10.13.0.35.engine"
        data = f"placeholder plan for {gpu}".encode()
        (out / name).write_bytes(data)
        manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "precision": "float16"}
        manifest["engines"].append({"file": name, "tensorrt_version": "10.13.0.35", "gpu_name": gpu,
                                    "compute_capability": cc, "version_compatible": False,
                                    "profile": {"min": 1, "opt": 4, "max": 4}})
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def test_packaged_engines_become_a_tensorrt_plan_model(tiny_package: Path, tmp_path: Path) -> None:
    package = _with_engines(tiny_package, tmp_path / "pkg")
    folders = write_repository(package, tmp_path / "models", TritonOptions(name="m"))
    assert [f.name for f in folders] == ["m", "m-tensorrt"]
    config = _parse(tmp_path / "models" / "m-tensorrt")
    assert config.backend == "tensorrt" and config.max_batch_size == 0 and not config.HasField("dynamic_batching")
    assert dict(config.cc_model_filenames) == {"8.9": "nvidia-l4-sm89-trt10.13.0.35.engine",
                                              "9.0": "nvidia-h100-sm90-trt10.13.0.35.engine"}
    for cc, name in config.cc_model_filenames.items():
        assert (tmp_path / "models" / "m-tensorrt" / "1" / name).read_bytes() == (package / "engines" / name).read_bytes()
    assert [g.kind for g in config.instance_group] == [mc.ModelInstanceGroup.KIND_GPU]
    dims = {t.name: list(t.dims) for t in [*config.input, *config.output]}
    assert dims == {"image": [-1, 1, 64, 64], "offset": [1], "mask_rule": [3], "logits": [-1, 3], "probs": [-1, 3],
                    "label": [-1], "heatmaps": [-1, 3, 64, 64], "score": [-1, 64, 64], "threshold": [-1],
                    "mask": [-1, 64, 64]}
    assert _parse(tmp_path / "models" / "m").instance_group[0].kind == mc.ModelInstanceGroup.KIND_AUTO


def test_a_damaged_engine_is_refused_and_nothing_is_left(tiny_package: Path, tmp_path: Path) -> None:
    package = _with_engines(tiny_package, tmp_path / "pkg")
    next((package / "engines").iterdir()).write_bytes(b"edited")
    with pytest.raises(GpedgeError, match="sha256"):
        write_repository(package, tmp_path / "models", TritonOptions(name="m"))
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["m"]


def _client_module():
    spec = importlib.util.spec_from_file_location("triton_client", EXAMPLES / "triton_client.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_client_example_up_to_the_server(repo: Path, tiny_package: Path, protocol: str) -> None:
    """The example's requests, as tritonclient builds them, run on the served model give what
    ``gpedge infer`` gives on the package."""
    from google.protobuf import json_format

    from gpedge.runtime.predictor import Predictor
    from gpedge.runtime.io import load_input

    client = _client_module()
    api = pytest.importorskip(f"tritonclient.{protocol}")
    config = json_format.MessageToDict(_parse(repo / "tiny"), preserving_proto_field_name=True)  # as Triton serves it
    info = client.model_info(config)
    assert (info.size, info.channels, info.max_batch) == ((64, 64), ["t1ce"], 4)
    scan = load_input(EXAMPLES / "hgg_t1ce.png", info.channels)
    arrays = client.request_arrays(scan.images, info)
    for name, array in arrays.items():
        api.InferInput(name, list(array.shape), "FP32").set_data_from_numpy(array)
    session = _session(repo / "tiny" / "1" / "model.onnx")
    outputs = dict(zip(client.OUTPUTS, session.run(list(client.OUTPUTS), arrays)))
    found = client.results(scan, outputs, info)
    with Predictor(tiny_package, backend="onnxruntime", device="cpu") as predictor:
        expected = predictor.predict(EXAMPLES / "hgg_t1ce.png")
    assert [r["label"] for r in found] == [r.label for r in expected]
    np.testing.assert_array_equal(found[0]["mask"], expected[0].mask)
    assert found[0]["mask"].shape == scan.images.shape[-2:]
    # a +guided rule's host-side step needs the scan itself: the client applies it as gpedge infer does
    guided = client.results(scan, outputs, dataclasses.replace(info, post="guided"))
    with Predictor(tiny_package, backend="onnxruntime", device="cpu") as predictor:
        expected = predictor.predict(EXAMPLES / "hgg_t1ce.png", mask_rule=f"{predictor.mask_rule}+guided", offset=info.offset)
    assert expected[0].mask.any() and not np.array_equal(expected[0].mask, found[0]["mask"])
    np.testing.assert_array_equal(guided[0]["mask"], expected[0].mask)


def _gpedge(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gpedge.cli", *args], capture_output=True, text=True, timeout=120)


def test_cli_refuses_to_replace_a_model_and_bad_options(tiny_package: Path, tmp_path: Path) -> None:
    first = _gpedge("triton", str(tiny_package), str(tmp_path / "models"), "--name", "m", "--kind", "cpu")
    assert first.returncode == 0, first.stderr
    assert "onnxruntime model" in first.stdout and "tritonserver --model-repository" in first.stdout
    for args, message in (
        (["--name", "m"], "already exists"),
        (["--name", "n", "--precision", "int8"], "model.int8.onnx"),
        (["--name", "n", "--preferred-batch", "8"], "--preferred-batch"),
        (["--name", "../n"], "--name"),
    ):
        result = _gpedge("triton", str(tiny_package), str(tmp_path / "models"), *args)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["m"]


@pytest.mark.tensorrt
def test_tensorrt_plan_config_matches_the_real_engine(repo: Path) -> None:
    from gpedge.tensorrt.cuda import unavailable_reason

    reason = unavailable_reason()
    if reason:
        pytest.skip(f"needs TensorRT and a CUDA GPU: {reason}")
    import tensorrt as trt

    from gpedge.tensorrt.loader import deserialize

    config = _parse(repo / "tiny-tensorrt")
    plan = repo / "tiny-tensorrt" / "1" / config.default_model_filename
    engine = deserialize(plan.read_bytes(), version_compatible=False, source=str(plan))
    types = {trt.DataType.FLOAT: mc.TYPE_FP32, trt.DataType.INT32: mc.TYPE_INT32, trt.DataType.UINT8: mc.TYPE_UINT8}
    tensors = {t.name: t for t in [*config.input, *config.output]}
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    assert sorted(names) == sorted(tensors)
    for name in names:
        assert list(engine.get_tensor_shape(name)) == list(tensors[name].dims), name
        assert types[engine.get_tensor_dtype(name)] == tensors[name].data_type, name


def test_cpu_instances_serve_the_packaged_int8_graph(int8_package: Path, tmp_path: Path) -> None:
    (folder,) = write_repository(int8_package, tmp_path / "models", TritonOptions(name="q", kind="cpu"))
    config = _parse(folder)
    assert config.parameters["gpedge_precision"].string_value == "int8"
    assert config.parameters["gpedge_source_graph"].string_value == "model.int8.onnx"
    ops = {n.op_type for n in onnx.load(str(folder / "1" / "model.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    (gpu,) = write_repository(int8_package, tmp_path / "models", TritonOptions(name="f", kind="gpu"))
    assert _parse(gpu).parameters["gpedge_precision"].string_value == "fp32"
