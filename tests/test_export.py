"""gpedge export: fused graph contract, parity, mask rule in the graph, FP16 graph, package files."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from conftest import make_slices, train_tiny_run
from gpedge.errors import GpedgeError, PackageError
from gpedge.evaluate.metrics import dice_score
from gpedge.export import ExportOptions, export_package
from gpedge.export.fp16 import precision_summary
from gpedge.export.parity import backend_outputs
from gpedge.graph.contract import INPUTS, MASK_RULES, head_erosion_px, input_specs
from gpedge.package import ModelPackage, sha256_file
from gpedge.runtime.backends.base import rule_inputs
from gpedge.runtime.backends.onnxruntime import OnnxRuntimeBackend
from gpedge.runtime.predictor import Predictor
from mask_reference import mask_from_heatmap, multiotsu_threshold, reference_rule, rule_threshold

OUTPUTS = {"logits": np.float32, "probs": np.float32, "label": np.int32, "heatmaps": np.float32,
           "score": np.float32, "threshold": np.float32, "mask": np.uint8}


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _run(package: Path, images: np.ndarray, offset: float = 0.5, precision: str = "fp32",
         rule: str = "paper") -> dict[str, np.ndarray]:
    """A package's graph on the runtime's ONNX Runtime backend (CPU)."""
    return backend_outputs(OnnxRuntimeBackend(ModelPackage.load(package), "cpu", precision=precision), images, offset, rule)


def _fused(network, empty_for_class: int | None, images: np.ndarray, offset: float, rule: str = "paper"):
    """The fused torch module's outputs with the export's default graph (averaged with the mirror image)."""
    import torch

    from gpedge.graph.fused import FusedModel

    inputs = [torch.from_numpy(v) for v in rule_inputs(offset, rule).values()]
    with torch.no_grad():
        fused = FusedModel(network, empty_for_class, images.shape[-2:], flip_average=True).eval()
        return fused(torch.from_numpy(images), *inputs)


@pytest.mark.parametrize("batch", [1, 3])
def test_outputs_names_dtypes_shapes_with_dynamic_batch(tiny_package: Path, batch: int) -> None:
    session = _session(tiny_package / "model.onnx")
    assert [i.name for i in session.get_inputs()] == list(INPUTS)
    out = _run(tiny_package, make_slices(batch, seed=3).images)
    assert list(out) == list(OUTPUTS)
    for name, dtype in OUTPUTS.items():
        assert out[name].dtype == dtype, name
    assert out["logits"].shape == out["probs"].shape == (batch, 3)
    assert out["label"].shape == out["threshold"].shape == (batch,)
    assert out["heatmaps"].shape == (batch, 3, 64, 64)
    assert out["mask"].shape == (batch, 64, 64)
    np.testing.assert_allclose(out["probs"].sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(out["label"], out["logits"].argmax(axis=1))


def test_graph_is_valid_and_shape_inference_agrees(tiny_package: Path) -> None:
    model = onnx.load(str(tiny_package / "model.onnx"))
    onnx.checker.check_model(model, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.output}
    assert types["label"] == onnx.TensorProto.INT32 and types["mask"] == onnx.TensorProto.UINT8
    ops = {node.op_type for node in model.graph.node}
    assert not ops & {"CumSum", "Loop", "Scan", "ScatterElements", "ScatterND"}


def test_manifest_fields_and_checksums(tiny_package: Path, tiny_run_dir: Path) -> None:
    manifest = json.loads((tiny_package / "manifest.json").read_text())
    for key in ("schema_version", "gpedge_version", "created", "model", "classes", "input", "normalisation",
                "outputs", "mask_rule", "files", "engines", "exported_with", "parity", "split", "dataset"):
        assert key in manifest, key
    run_config = json.loads((tiny_run_dir / "config.json").read_text())
    assert manifest["classes"] == run_config["class_names"]
    assert manifest["split"] == run_config["split"]
    assert manifest["input"] == {"name": "image", "channels": ["t1ce"], "height": 64, "width": 64,
                                 "dtype": "float32", "layout": "NCHW", "max_batch": 4}
    assert manifest["mask_rule"]["offset"] == 0.5 and manifest["mask_rule"]["empty_for_class"] == 0
    assert set(manifest["files"]) >= {"model.onnx", "model.fp16.onnx", "model.safetensors"}
    for name, entry in manifest["files"].items():
        assert entry["sha256"] == sha256_file(tiny_package / name)
        assert entry["bytes"] == (tiny_package / name).stat().st_size
    assert manifest["exported_with"]["opset"] == 18
    package = ModelPackage.load(tiny_package)
    assert package.file("model.onnx").is_file()


def test_fp32_parity_with_pytorch(tiny_package: Path, tiny_run_dir: Path) -> None:
    from gpedge.runs import load_run

    network, _ = load_run(tiny_run_dir)
    images = make_slices(6, seed=11).images
    reference = _fused(network, 0, images, 0.5)
    out = _run(tiny_package, images)
    assert np.abs(out["probs"] - reference.probs.numpy()).max() <= 1e-4
    np.testing.assert_array_equal(out["label"], reference.label.numpy())
    assert (out["mask"] == reference.mask.numpy()).mean() >= 0.999
    recorded = json.loads((tiny_package / "manifest.json").read_text())["parity"]["onnxruntime_fp32_vs_torch"]
    assert recorded["max_abs_diff_probs"] <= 1e-4 and recorded["label_agreement"] == 1.0


def test_flip_average_is_the_mean_of_the_slice_and_its_mirror_image(tiny_package: Path, tiny_run_dir: Path,
                                                                    tmp_path: Path) -> None:
    """The default graph averages the network's logits and heatmaps over the slice and its left-right mirror image
    (the mirror's maps mirrored back): a mirrored slice gets the same call and mirrored maps. ``--no-flip-average``
    exports the single pass."""
    import torch

    from gpedge.graph.fused import normalise_slice_max
    from gpedge.runs import load_run

    network, _ = load_run(tiny_run_dir)
    network.eval()
    images = make_slices(5, seed=17).images
    assert ModelPackage.load(tiny_package).flip_average
    with torch.no_grad():
        x = normalise_slice_max(torch.from_numpy(images))
        (logits, maps), (mirrored_logits, mirrored_maps) = network(x), network(torch.flip(x, dims=[3]))
    out = _run(tiny_package, images)
    np.testing.assert_allclose(out["logits"], ((logits + mirrored_logits) / 2).numpy(), atol=1e-4)
    np.testing.assert_allclose(out["heatmaps"], ((maps + torch.flip(mirrored_maps, dims=[3])) / 2).numpy(), atol=1e-4)
    mirrored = _run(tiny_package, np.ascontiguousarray(images[..., ::-1]))
    np.testing.assert_allclose(mirrored["logits"], out["logits"], atol=1e-4)
    np.testing.assert_allclose(mirrored["heatmaps"], out["heatmaps"][..., ::-1], atol=1e-4)
    single = export_package(tiny_run_dir, tmp_path / "single", ExportOptions(max_batch=4, fp16=False, engine=False,
                                                                              parity_samples=2, flip_average=False))
    assert not ModelPackage.load(single).flip_average
    np.testing.assert_allclose(_run(single, images)["logits"], logits.numpy(), atol=1e-4)


@pytest.mark.parametrize("offset", [0.0, 0.5, 2.0])
def test_graph_mask_matches_scikit_image_on_model_heatmaps(tiny_package: Path, offset: float) -> None:
    images = make_slices(12, seed=5).images
    out = _run(tiny_package, images, offset)
    chosen = out["heatmaps"][np.arange(len(images)), out["label"]]
    host = np.stack([mask_from_heatmap(m, offset, empty=label == 0) for m, label in zip(chosen, out["label"])])
    assert (host == out["mask"]).mean() >= 0.99
    host_thresholds = np.array([multiotsu_threshold(m, offset) for m in chosen], np.float32)
    assert np.isclose(out["threshold"], host_thresholds, atol=1e-5).mean() >= 0.9


@pytest.mark.parametrize("rule", list(MASK_RULES))
@pytest.mark.parametrize("offset", [-0.5, 0.0, 0.4])
def test_every_rule_in_the_graph_matches_the_host_reference(every_class_package: Path, rule: str, offset: float) -> None:
    """Each named rule computed by the exported graph (score, threshold, mask) against numpy/SciPy/scikit-image."""
    images = make_slices(12, seed=5).images
    images[3, :, :6] = 0.0  # a dark band at the border: the head region must cut it away
    out = _run(every_class_package, images, offset, rule=rule)
    erosion = head_erosion_px(64, 64)
    masks_agree, thresholds_agree = [], []
    for row in range(len(images)):
        label = int(out["label"][row])
        score, threshold, mask = reference_rule(out["heatmaps"][row], label, images[row], offset, rule, None, erosion)
        np.testing.assert_allclose(out["score"][row], score, atol=1e-6, err_msg=f"{rule} row {row}")
        thresholds_agree.append(np.isclose(out["threshold"][row], threshold, atol=1e-5))
        masks_agree.append((out["mask"][row].astype(bool) == mask).mean())
    assert np.mean(thresholds_agree) >= 0.9 and np.mean(masks_agree) >= 0.99
    if offset >= 0:
        assert out["mask"].any()


def test_rules_differ_where_they_should(every_class_package: Path) -> None:
    """The rule input is honoured: contrast maps differ from class maps, head rules zero the border, and a
    relative offset of 1 moves the threshold to the lower multi-Otsu threshold."""
    images = make_slices(8, seed=13).images
    out = {rule: _run(every_class_package, images, 0.0, rule=rule) for rule in MASK_RULES}
    assert not np.array_equal(out["paper"]["score"], out["contrast"]["score"])
    np.testing.assert_array_equal(out["paper"]["score"], out["relative"]["score"])
    np.testing.assert_array_equal(out["paper"]["threshold"], out["relative"]["threshold"])  # offset 0: both the upper threshold
    border = head_erosion_px(64, 64)
    assert not np.array_equal(out["head"]["score"], out["relative"]["score"])
    assert not out["head"]["score"][:, :border].any() and not out["contrast-head"]["score"][:, :, -border:].any()
    lower = _run(every_class_package, images, 1.0, rule="relative")
    assert (lower["threshold"] <= out["relative"]["threshold"]).all()
    assert (lower["threshold"] < out["relative"]["threshold"]).any()


@pytest.mark.parametrize(("graph", "precision"), [("model.onnx", "fp32"), ("model.fp16.onnx", "fp16")])
def test_offset_and_rule_are_true_graph_inputs(tiny_package: Path, graph: str, precision: str) -> None:
    """No initializer stands in for the offset or the rule: a caller that does not feed them gets an error, not a default."""
    model = onnx.load(str(tiny_package / graph))
    assert not {"offset", "mask_rule"} & {t.name for t in model.graph.initializer}
    session = _session(tiny_package / graph)
    assert [i.name for i in session.get_inputs()] == list(INPUTS)
    assert not session.get_overridable_initializers()
    images = make_slices(4, seed=6).images
    feeds = rule_inputs(0.5, "paper")
    with pytest.raises(Exception, match="offset"):
        session.run(None, {"image": images, "mask_rule": feeds["mask_rule"]})
    with pytest.raises(Exception, match="mask_rule"):
        session.run(None, {"image": images, "offset": feeds["offset"]})
    default = _run(tiny_package, images, 0.5, precision)
    lower = _run(tiny_package, images, 0.0, precision)
    assert (lower["threshold"] >= default["threshold"]).all()
    assert (lower["threshold"] > default["threshold"]).any()


@pytest.mark.parametrize("rule", ["paper", "relative"])
def test_in_graph_rule_on_degenerate_and_random_maps(rule: str) -> None:
    """The mask module alone, exported to ONNX, against scikit-image on hand-made maps."""
    import torch

    from gpedge.graph.mask import MaskRule

    rng = np.random.default_rng(0)
    maps = [
        np.full((32, 32), 2.0), -np.abs(rng.normal(size=(32, 32))), np.zeros((32, 32)),
        np.where(rng.random((32, 32)) > 0.5, 1.0, 0.0), rng.choice([0.0, 1.0, 3.0], (32, 32)),
        rng.choice([0.0, 1.0, 2.0, 5.0], (32, 32)), rng.normal(size=(32, 32)), rng.gamma(2.0, size=(32, 32)) * 4,
        np.round(rng.normal(size=(32, 32)) * 3), rng.exponential(size=(32, 32)) ** 4,
    ]
    maps = np.stack(maps).astype(np.float32)

    class Wrapper(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rule = MaskRule(None, 1)

        def forward(self, maps: torch.Tensor, offset: torch.Tensor, code: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            n = maps.shape[0]
            label = torch.zeros(n, dtype=torch.int64)
            _, threshold, mask = self.rule(maps[:, None], label, torch.ones_like(maps)[:, None], offset, code,
                                           torch.ones(n, dtype=torch.bool))
            return threshold, mask.to(torch.uint8)

    feeds = rule_inputs(0.25, rule)
    program = torch.onnx.export(Wrapper().eval(), (torch.from_numpy(maps), *(torch.from_numpy(v) for v in feeds.values())),
                                dynamo=True, input_names=["maps", "offset", "mask_rule"], output_names=["threshold", "mask"],
                                verbose=False)
    session = ort.InferenceSession(program.model_proto.SerializeToString(), providers=["CPUExecutionProvider"])
    threshold, mask = session.run(None, {"maps": maps, **feeds})
    expected = np.array([rule_threshold(m, 0.25, MASK_RULES[rule].threshold) for m in maps], np.float32)
    np.testing.assert_allclose(threshold, expected, atol=1e-6)
    for i, m in enumerate(maps):
        np.testing.assert_array_equal(mask[i], (np.maximum(m, 0) > expected[i]).astype(np.uint8))
    assert mask[:3].sum() == 0  # constant, all negative, all zero


def test_no_tumour_class_gives_empty_mask(tiny_run_dir: Path) -> None:
    import torch

    from gpedge.runs import load_run

    network, _ = load_run(tiny_run_dir)
    images = make_slices(6, seed=8).images
    full = _fused(network, None, images, 0.0)
    predicted = int(full.label[int(full.mask.sum(dim=(1, 2)).argmax())])
    empty = _fused(network, predicted, images, 0.0)
    chosen = full.label == predicted
    assert full.mask[chosen].sum() > 0
    assert empty.mask[chosen].sum() == 0
    assert torch.equal(empty.mask[~chosen], full.mask[~chosen])


def test_fp16_graph_value_types(tiny_package: Path) -> None:
    model = onnx.load(str(tiny_package / "model.fp16.onnx"))
    summary = precision_summary(model)
    assert set(summary["network_compute"]) == {"float16"}
    assert set(summary["head_compute"]) == {"float32"}
    assert summary["inputs"] == {name: spec["dtype"] for name, spec in input_specs(1, 64, 64).items()}
    assert summary["outputs"] == {n: np.dtype(t).name for n, t in OUTPUTS.items()}
    weights = {t.name: t for t in model.graph.initializer}
    conv_weights = [weights[n.input[1]] for n in model.graph.node if n.op_type == "Conv" and n.input[1] in weights]
    assert conv_weights and all(w.data_type == onnx.TensorProto.FLOAT16 for w in conv_weights)
    constants = {name: numpy_helper.to_array(t) for name, t in weights.items() if name.startswith("mask_rule.")}
    assert constants and all(v.dtype != np.float16 for v in constants.values())


def test_fp16_parity(tiny_package: Path) -> None:
    images = make_slices(8, seed=9).images
    fp32 = _run(tiny_package, images)
    fp16 = _run(tiny_package, images, precision="fp16")
    assert np.abs(fp32["probs"] - fp16["probs"]).max() < 1e-2
    assert (fp32["label"] == fp16["label"]).mean() >= 0.875
    same = fp32["label"] == fp16["label"]
    assert (fp32["mask"][same] == fp16["mask"][same]).mean() >= 0.99
    recorded = json.loads((tiny_package / "manifest.json").read_text())["parity"]["fp16_vs_fp32"]
    assert recorded["runner"] == "onnxruntime-cpu" and recorded["label_agreement"] >= 0.8


@pytest.mark.slow
@pytest.mark.parametrize(
    ("arch", "options"),
    [
        ("gp-unet", {"width": 4, "depth": 2, "upsample": "transpose", "dropout": 0.5}),
        ("gp-unet", {"width": 4, "depth": 2, "upsample": "sinc", "dropout": 0.5, "norm": "batch"}),
        ("gp-shuffle-unet", {"width": 4, "levels": 1, "dropout": 0.5}),
        ("gp-reconresnet", {"width": 4, "num_res_blocks": 1, "upsample": "sinc", "dropout": 0.5}),
    ],
)
def test_every_architecture_exports(tmp_path: Path, arch: str, options: dict) -> None:
    run = train_tiny_run(tmp_path / "run", arch=arch, options=options, steps=2)
    package = export_package(run, tmp_path / "pkg", ExportOptions(max_batch=2, engine=False, parity_samples=2))
    manifest = ModelPackage.load(package).manifest
    assert manifest["model"]["arch"] == arch
    assert manifest["parity"]["onnxruntime_fp32_vs_torch"]["label_agreement"] == 1.0
    assert set(manifest["parity"]["fp16_graph"]["network_compute"]) == {"float16"}
    graph = onnx.load(str(package / "model.onnx"))
    assert not [node for node in graph.graph.node if node.op_type == "BatchNormalization"], "BatchNorm left unfolded"
    out = _run(package, make_slices(2, seed=1).images, precision="fp16")
    assert np.isfinite(out["probs"]).all()


def _copy(package: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(package, tmp_path / "pkg"))


def test_edited_file_is_refused(tiny_package: Path, tmp_path: Path) -> None:
    package = _copy(tiny_package, tmp_path)
    data = bytearray((package / "model.onnx").read_bytes())
    data[-10] ^= 0xFF
    (package / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(PackageError, match="sha256"):
        ModelPackage.load(package).file("model.onnx")


def test_missing_file_is_refused(tiny_package: Path, tmp_path: Path) -> None:
    package = _copy(tiny_package, tmp_path)
    (package / "model.fp16.onnx").unlink()
    with pytest.raises(PackageError, match="missing"):
        ModelPackage.load(package).file("model.fp16.onnx")


def test_unknown_schema_version_is_refused(tiny_package: Path, tmp_path: Path) -> None:
    package = _copy(tiny_package, tmp_path)
    manifest = json.loads((package / "manifest.json").read_text())
    manifest["schema_version"] = 99
    (package / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PackageError, match="schema_version 99"):
        ModelPackage.load(package)


def test_failed_export_leaves_nothing_behind(tiny_run_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """A failure after the graphs and weights were written (here: in the FP16 conversion) removes them all."""
    from gpedge.export import fp16

    written: list[str] = []

    def fail(model):
        staged = next(tmp_path.glob(".pkg.*.partial"))
        written.extend(sorted(p.name for p in staged.iterdir()))
        raise GpedgeError("FP16 conversion failed (test)")

    monkeypatch.setattr(fp16, "to_fp16", fail)
    with pytest.raises(GpedgeError, match="FP16 conversion failed"):
        export_package(tiny_run_dir, tmp_path / "pkg", ExportOptions(engine=False, parity_samples=2))
    assert written == ["model.onnx", "model.safetensors"]
    assert list(tmp_path.iterdir()) == []


def test_bad_image_size_is_refused(tiny_run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(GpedgeError, match="multiple of 2"):
        export_package(tiny_run_dir, tmp_path / "pkg", ExportOptions(image_size=63, engine=False))
    assert list(tmp_path.iterdir()) == []


def test_existing_package_needs_overwrite(tiny_run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "pkg"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(GpedgeError, match="--overwrite"):
        export_package(tiny_run_dir, out, ExportOptions(engine=False))
    assert (out / "keep.txt").is_file()


def test_denormal_weights_are_flushed_to_zero(tiny_run_dir: Path, tmp_path: Path) -> None:
    """Weights below the smallest normal float32 (slow on Intel cores) become zero in every exported file
    (the flushed network is what the parity gate then checks the graph against)."""
    from safetensors.numpy import load_file, save_file

    run = tmp_path / "run"
    shutil.copytree(tiny_run_dir, run)
    weights = load_file(str(run / "model.safetensors"))
    planted = 0
    for name, value in weights.items():
        if value.dtype == np.float32 and value.ndim == 4 and value.size >= 64:
            flat = value.reshape(-1).copy()
            flat[::2] = np.float32(1e-40) * np.sign(flat[::2] + 1e-9)
            planted += int((flat != 0).sum() - (np.abs(flat) >= np.finfo(np.float32).tiny).sum())
            weights[name] = flat.reshape(value.shape)
    save_file(weights, str(run / "model.safetensors"))
    package = export_package(run, tmp_path / "pkg", ExportOptions(max_batch=2, fp16=False, engine=False, parity_samples=2))
    manifest = ModelPackage.load(package).manifest
    assert planted > 0 and manifest["model"]["denormal_weights_flushed"] == planted
    tiny = np.finfo(np.float32).tiny
    for init in onnx.load(str(package / "model.onnx")).graph.initializer:
        value = numpy_helper.to_array(init)
        if value.dtype == np.float32:
            assert not ((value != 0) & (np.abs(value) < tiny)).any(), init.name
    exported = load_file(str(package / "model.safetensors"))
    assert all(not ((v != 0) & (np.abs(v) < tiny)).any() for v in exported.values() if v.dtype == np.float32)
    assert manifest["parity"]["onnxruntime_fp32_vs_torch"]["label_agreement"] == 1.0


def test_export_chooses_the_mask_rule_on_the_validation_patients(int8_run_dir: Path, tmp_path: Path) -> None:
    """With the run's validation patients reachable and no --mask-rule, the package's rule and offset are the
    sweep's best on those patients, and the runtime applies them."""
    from gpedge.export.tuning import EXPORT_CANDIDATES, validation_slices
    from gpedge.runs import RunConfig

    package_dir = export_package(int8_run_dir, tmp_path / "pkg", ExportOptions(max_batch=4, fp16=False, engine=False, parity_samples=2))
    rule = json.loads((package_dir / "manifest.json").read_text())["mask_rule"]
    tuned = rule["tuned"]
    assert (rule["rule"], rule["offset"]) == (tuned["best_rule"], tuned["best_offset"])
    assert (tuned["best_rule"], tuned["best_offset"]) in EXPORT_CANDIDATES
    best = tuned["per_rule"][tuned["best_rule"]]["dice_median_called"]
    assert all(best >= row["dice_median_called"] for row in tuned["per_rule"].values())
    samples = validation_slices(RunConfig.load(int8_run_dir), 128)
    assert tuned["slices"] == len(samples) > 0
    with Predictor(package_dir, backend="onnxruntime") as predictor:
        assert (predictor.mask_rule, predictor.offset) == (tuned["best_rule"], tuned["best_offset"])
        results = predictor.predict([samples[i]["image"] for i in range(len(samples))])
    called = [dice_score(r.mask, samples[i]["mask"]) for i, r in enumerate(results) if r.is_tumour and samples[i]["mask"].any()]
    assert float(np.median(called)) == best


def test_export_says_when_it_cannot_choose_the_mask_rule(tiny_run_dir: Path, tmp_path: Path, caplog) -> None:
    """Without the run's validation patients the default export keeps the starting rule, and says so."""
    with caplog.at_level(logging.WARNING, logger="gpedge.export"):
        package_dir = export_package(tiny_run_dir, tmp_path / "pkg", ExportOptions(max_batch=4, fp16=False, engine=False, parity_samples=2))
    assert "tuned" not in json.loads((package_dir / "manifest.json").read_text())["mask_rule"]
    assert any("not reachable" in r.getMessage() and "gpedge evaluate --mask-rules" in r.getMessage() for r in caplog.records)


def test_export_keeps_an_explicit_rule_and_refuses_tuning_without_data(int8_run_dir: Path, tiny_run_dir: Path, tmp_path: Path) -> None:
    quick = dict(max_batch=4, fp16=False, engine=False, parity_samples=2)
    package_dir = export_package(int8_run_dir, tmp_path / "pkg", ExportOptions(mask_rule="relative", offset=0.25, **quick))
    rule = json.loads((package_dir / "manifest.json").read_text())["mask_rule"]
    assert (rule["rule"], rule["offset"], "tuned" in rule) == ("relative", 0.25, False)
    with pytest.raises(GpedgeError, match="validation patients .* not reachable"):
        export_package(tiny_run_dir, tmp_path / "none", ExportOptions(tune_mask=True, **quick))
    assert not (tmp_path / "none").exists()
    with pytest.raises(GpedgeError, match="drop --mask-rule"):
        export_package(int8_run_dir, tmp_path / "both", ExportOptions(tune_mask=True, mask_rule="head", **quick))
