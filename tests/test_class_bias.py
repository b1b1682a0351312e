"""The class bias: the graph's prior shift on the grades and on the tumour-versus-healthy odds, and its choice at
export on the validation patients."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from sklearn.metrics import f1_score  # noqa: E402

from gpedge import Predictor  # noqa: E402
from gpedge.export import ExportOptions, export_package  # noqa: E402
from gpedge.export.class_bias import GRID, HEALTHY_GRID, MIN_GAIN, choose  # noqa: E402
from gpedge.graph.bias import ClassBias  # noqa: E402
from gpedge.package import ModelPackage, class_bias_text, manifest_problems  # noqa: E402


def test_the_grades_bias_keeps_the_healthy_probability_and_moves_the_grades_odds() -> None:
    logits = torch.from_numpy(np.random.default_rng(3).normal(0, 3, (64, 3)).astype(np.float32))
    before = torch.softmax(logits, dim=1)
    after = torch.softmax(ClassBias([0.0, 0.5, -1.5], empty_for_class=0)(logits), dim=1)
    np.testing.assert_allclose(after[:, 0], before[:, 0], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(after[:, 2] / after[:, 1], before[:, 2] / before[:, 1] * np.exp(-2.0), rtol=1e-4)
    plain = ClassBias([0.3, 0.0, -1.0], empty_for_class=None)(logits)
    np.testing.assert_allclose(plain, logits + torch.tensor([0.3, 0.0, -1.0]), atol=1e-6)


def test_the_no_tumour_value_moves_the_healthy_odds_only() -> None:
    """The no-tumour class's value multiplies the healthy-versus-tumour odds by exp(value); the grades' bias still
    sets the grades' odds among themselves."""
    logits = torch.from_numpy(np.random.default_rng(4).normal(0, 3, (64, 3)).astype(np.float32))
    before = torch.softmax(ClassBias([0.0, 0.5, -1.5], empty_for_class=0)(logits), dim=1)
    after = torch.softmax(ClassBias([0.75, 0.5, -1.5], empty_for_class=0)(logits), dim=1)
    odds = (after[:, 0] / (1 - after[:, 0])) / (before[:, 0] / (1 - before[:, 0]))
    np.testing.assert_allclose(odds, np.full(64, np.exp(0.75)), rtol=1e-4)
    np.testing.assert_allclose(after[:, 2] / after[:, 1], before[:, 2] / before[:, 1], rtol=1e-4)


def _swapped_grades(seed: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """Logits of a classifier that tells the classes apart, with the HGG logit raised by ``shift`` on tumour slices."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(3, size=600, p=[0.6, 0.25, 0.15])
    logits = 2.0 * np.eye(3)[labels] + rng.normal(0, 1.0, (600, 3))
    logits[labels > 0, 2] += shift
    return logits.astype(np.float32), labels


def test_the_choice_undoes_a_grade_shift() -> None:
    logits, labels = _swapped_grades(5, shift=1.5)
    record = choose(logits, labels, empty_for_class=0, max_healthy_fp=1.0)
    healthy, lgg, hgg = record["values"]
    assert healthy == 0.0 and lgg == 0.0 and -2.0 <= hgg <= -0.75 and hgg in GRID
    assert record["val_macro_f1"] > record["val_macro_f1_unbiased"] + 0.05
    called = ClassBias(record["values"], 0)(torch.from_numpy(logits)).argmax(dim=1).numpy()
    assert record["val_macro_f1"] == round(f1_score(labels, called, average="macro"), 4)
    before, after = (int(np.sum((labels == 1) & (calls == 2))) for calls in (logits.argmax(axis=1), called))
    assert after < before / 2, "LGG slices called HGG"


def test_no_bias_where_none_helps() -> None:
    rng = np.random.default_rng(2)
    labels = rng.choice(3, size=300)
    logits = (6.0 * np.eye(3)[labels] + rng.normal(0, 0.5, (300, 3))).astype(np.float32)
    assert choose(logits, labels, empty_for_class=0)["values"] == [0.0, 0.0, 0.0]


def test_a_bias_that_gains_less_than_the_minimum_is_not_adopted() -> None:
    """A small grade shift: the best bias raises the validation macro F1 by less than MIN_GAIN, so the record keeps
    no bias (its F1 the unbiased one) and states the best it did not adopt; a large shift's bias is adopted."""
    logits, labels = _swapped_grades(5, shift=0.5)
    record = choose(logits, labels, empty_for_class=0, max_healthy_fp=1.0)
    best = record["best"]
    assert record["values"] == [0.0, 0.0, 0.0] and record["val_macro_f1"] == record["val_macro_f1_unbiased"]
    assert best["values"][2] < 0 and 0 < best["val_macro_f1"] - record["val_macro_f1_unbiased"] < MIN_GAIN
    called = ClassBias(best["values"], 0)(torch.from_numpy(logits)).argmax(dim=1).numpy()
    assert best["val_macro_f1"] == round(f1_score(labels, called, average="macro"), 4)
    adopted = choose(*_swapped_grades(5, shift=1.5), empty_for_class=0, max_healthy_fp=1.0)
    assert adopted["values"][2] < 0 and "best" not in adopted


def _leaning_to_tumour(seed: int, lean: float) -> tuple[np.ndarray, np.ndarray]:
    """Logits of a classifier that tells the classes apart, with the tumour classes' logits raised by ``lean``."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(3, size=800, p=[0.6, 0.2, 0.2])
    logits = 3.0 * np.eye(3)[labels] + rng.normal(0, 0.8, (800, 3))
    logits[:, 1:] += lean
    return logits.astype(np.float32), labels


def _called_tumour(logits: np.ndarray, labels: np.ndarray, bias: list[float], healthy: bool = True) -> float:
    """The share of the healthy (or else the tumour) slices that ``bias`` makes the graph call tumour."""
    called = ClassBias(bias, 0)(torch.from_numpy(logits)).argmax(dim=1).numpy()
    return float(np.mean(called[(labels == 0) == healthy] != 0))


def test_the_operating_point_is_the_smallest_healthy_value_that_reaches_the_target() -> None:
    logits, labels = _leaning_to_tumour(6, lean=1.0)
    record = choose(logits, labels, empty_for_class=0, max_healthy_fp=0.03)
    point, value = record["no_tumour"], record["values"][0]
    assert point["reached"] and value == point["value"] and value in HEALTHY_GRID and value > 0
    assert point["healthy_called_tumour_before"] > 0.03 >= point["healthy_called_tumour"]
    assert point["healthy_called_tumour"] == round(_called_tumour(logits, labels, record["values"]), 4)
    smaller = record["values"][:]
    smaller[0] = HEALTHY_GRID[HEALTHY_GRID.index(value) - 1]
    assert _called_tumour(logits, labels, smaller) > 0.03
    assert point["tumour_called_tumour"] < point["tumour_called_tumour_before"]
    called = ClassBias(record["values"], 0)(torch.from_numpy(logits)).argmax(dim=1).numpy()
    assert record["val_macro_f1"] == round(f1_score(labels, called, average="macro"), 4)


def test_the_operating_point_stays_where_the_target_is_met_or_out_of_reach() -> None:
    logits, labels = _leaning_to_tumour(6, lean=1.0)
    assert choose(logits, labels, empty_for_class=0, max_healthy_fp=1.0)["values"][0] == 0.0
    far = choose(*_leaning_to_tumour(7, lean=4.0), empty_for_class=0, max_healthy_fp=0.0)
    point = far["no_tumour"]
    assert far["values"][0] == 0.0 and not point["reached"]
    assert point["healthy_called_tumour"] == point["healthy_called_tumour_before"]
    assert point["healthy_called_tumour_at_grid_end"] > 0.0
    assert "no_tumour" not in choose(logits, labels, empty_for_class=None)


def test_a_sensitivity_floor_stops_the_operating_point_at_its_largest_value_within() -> None:
    logits, labels = _leaning_to_tumour(6, lean=1.0)
    free = choose(logits, labels, empty_for_class=0, max_healthy_fp=0.03)
    loss = free["no_tumour"]["tumour_called_tumour_before"] - free["no_tumour"]["tumour_called_tumour"]
    assert free["no_tumour"]["max_sensitivity_loss"] == 1.0 and not free["no_tumour"]["limited_by_sensitivity"]
    floored = choose(logits, labels, empty_for_class=0, max_healthy_fp=0.03, max_sensitivity_loss=loss / 2)
    point, value = floored["no_tumour"], floored["values"][0]
    assert not point["reached"] and point["limited_by_sensitivity"] and value < free["values"][0]
    before = _called_tumour(logits, labels, [0.0, 0.0, 0.0], healthy=False)
    assert before - _called_tumour(logits, labels, floored["values"], healthy=False) <= loss / 2
    if value < HEALTHY_GRID[-1]:  # one step further would lose more than the floor allows
        further = [HEALTHY_GRID[HEALTHY_GRID.index(value) + 1], 0.0, 0.0]
        assert before - _called_tumour(logits, labels, further, healthy=False) > loss / 2
    assert point["tumour_called_tumour"] == round(_called_tumour(logits, labels, floored["values"], healthy=False), 4)
    unbinding = loss + 1e-3  # the record rounds the shares to 4 digits
    assert choose(logits, labels, empty_for_class=0, max_healthy_fp=0.03, max_sensitivity_loss=unbinding)["values"] == free["values"]


def test_the_export_line_says_when_the_floor_stopped_the_operating_point() -> None:
    from gpedge.commands.export import _operating_point_text

    logits, labels = _leaning_to_tumour(6, lean=1.0)
    point = choose(logits, labels, empty_for_class=0, max_healthy_fp=0.03, max_sensitivity_loss=0.001)["no_tumour"]
    line = _operating_point_text("Healthy", point)
    assert point["limited_by_sensitivity"]
    assert line.startswith(f"operating point Healthy {point['value']:+g}, stopped by --max-sensitivity-loss 0.001")
    assert f"{point['tumour_called_tumour_before']:.3f} -> {point['tumour_called_tumour']:.3f}" in line


def test_a_given_bias_is_in_every_graph_and_backend(tiny_run_dir: Path, tmp_path: Path) -> None:
    """``ExportOptions(class_bias=values)``: the ONNX graph and the torch backend apply the fused module's bias."""
    from gpedge.export.parity import reference_images
    from gpedge.graph.fused import FusedModel
    from gpedge.runs import load_run
    from gpedge.runtime.backends.base import rule_inputs

    bias = (0.5, 1.0, -1.0)
    package_dir = export_package(tiny_run_dir, tmp_path / "pkg", ExportOptions(max_batch=4, fp16=False, engine=False,
                                                                                parity_samples=2, class_bias=bias))
    package = ModelPackage.load(package_dir)
    assert package.class_bias == list(bias) and package.manifest["class_bias"]["source"] == "given"
    network, config = load_run(tiny_run_dir)
    images, _ = reference_images(config, 8)
    inputs = [torch.from_numpy(v) for v in rule_inputs(package.offset, package.mask_rule).values()]
    with torch.no_grad():
        biased = FusedModel(network, 0, images.shape[-2:], True, bias).eval()(torch.from_numpy(images), *inputs)
        plain = FusedModel(network, 0, images.shape[-2:], True).eval()(torch.from_numpy(images), *inputs)
    assert not torch.equal(biased.probs, plain.probs)
    odds = (biased.probs[:, 0] / (1 - biased.probs[:, 0])) / (plain.probs[:, 0] / (1 - plain.probs[:, 0]))
    np.testing.assert_allclose(odds, np.full(len(images), np.exp(0.5)), rtol=1e-3)
    for backend in ("onnxruntime", "torch"):
        with Predictor(package_dir, backend=backend) as predictor:
            results = predictor.predict(images)
        probs = np.array([[r.probabilities[c] for c in package.classes] for r in results])
        np.testing.assert_allclose(probs, biased.probs.numpy(), atol=1e-4)
        assert [r.class_index for r in results] == biased.label.tolist()
    unbiased = export_package(tiny_run_dir, tmp_path / "plain", ExportOptions(max_batch=4, fp16=False, engine=False,
                                                                              parity_samples=2, class_bias=False))
    assert "class_bias" not in json.loads((unbiased / "manifest.json").read_text())


def test_a_wrong_given_bias_or_operating_point_is_refused(tiny_run_dir: Path, tmp_path: Path) -> None:
    from gpedge.errors import GpedgeError

    for bias in ((0.0, 1.0), (0.0, float("nan"), 0.0)):
        with pytest.raises(GpedgeError, match="one per class"):
            export_package(tiny_run_dir, tmp_path / "pkg", ExportOptions(engine=False, class_bias=bias))
        assert not (tmp_path / "pkg").exists()
    for share in (-0.1, 1.5):
        with pytest.raises(GpedgeError, match="--max-healthy-fp is a share"):
            export_package(tiny_run_dir, tmp_path / "pkg", ExportOptions(engine=False, max_healthy_fp=share))
        assert not (tmp_path / "pkg").exists()
        with pytest.raises(GpedgeError, match="--max-sensitivity-loss is a share"):
            export_package(tiny_run_dir, tmp_path / "pkg", ExportOptions(engine=False, max_sensitivity_loss=share))
        assert not (tmp_path / "pkg").exists()


def test_export_chooses_the_bias_on_the_validation_patients(int8_run_dir: Path, tmp_path: Path) -> None:
    """The default export (``gpedge export``) records a bias chosen on every validation slice and reports it, and the
    runtime's calls on those slices score exactly the macro F1 the record states."""
    from typer.testing import CliRunner

    from gpedge.cli import app
    from gpedge.export.parity import open_run_data
    from gpedge.runs import RunConfig

    package_dir = tmp_path / "pkg"
    result = CliRunner().invoke(app, ["export", str(int8_run_dir), "--out", str(package_dir), "--max-batch", "4",
                                      "--no-fp16", "--no-engine", "--parity-samples", "2"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((package_dir / "manifest.json").read_text())
    record = manifest["class_bias"]
    reported = " ".join(result.output.split())
    assert f"class bias {class_bias_text(manifest['classes'], record['values'])}: chosen on {record['slices']} slices" in reported
    assert ("not adopted" in reported) == ("best" in record)
    point = record["no_tumour"]
    assert f"operating point Healthy {point['value']:+g}" in reported if point["reached"] else "operating point not reached" in reported
    config = RunConfig.load(int8_run_dir)
    val = open_run_data(config, ("val",))
    assert record["slices"] == len(val) and record["patients"] == len(config.split["val"])
    assert record["values"][0] == point["value"] and point["max_healthy_fp"] == 0.03
    with Predictor(package_dir, backend="onnxruntime") as predictor:
        called = np.array([r.class_index for r in predictor.predict(np.stack([val[i]["image"] for i in range(len(val))]))])
    scored = f1_score(val.labels, called, labels=[0, 1, 2], average="macro", zero_division=0)
    assert record["val_macro_f1"] == round(scored, 4)
    healthy = np.asarray(val.labels) == 0
    assert point["healthy_called_tumour"] == round(float(np.mean(called[healthy] != 0)), 4)


def test_the_manifest_checks_the_bias(tiny_package: Path) -> None:
    manifest = json.loads((tiny_package / "manifest.json").read_text())
    assert not manifest_problems({**manifest, "class_bias": {"values": [0.0, 0.5, -1.0]}})
    problems = manifest_problems({**manifest, "class_bias": {"values": [0.0, 0.5]}})
    assert problems and "class_bias.values" in problems[0]
    assert manifest_problems({**manifest, "class_bias": [0.0, 0.5, -1.0]})
