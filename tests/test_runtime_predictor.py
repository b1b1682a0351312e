"""gpedge.Predictor and Result on the shared tiny package (ONNX Runtime on the CPU)."""
from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import pytest

import gpedge
from conftest import make_slices
from gpedge import package as package_module
from gpedge.errors import GpedgeError, PackageError
from gpedge.preprocess import fit_image
from gpedge.runtime.results import STAGES
from mask_reference import multiotsu_threshold


@pytest.fixture(scope="module")
def predictor(every_class_package: Path):
    with gpedge.Predictor(every_class_package, backend="onnxruntime", batch_size=4) as p:
        yield p


@pytest.fixture(scope="module")
def slices() -> np.ndarray:
    return make_slices(9, seed=11).images


def _upscaled(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A (1, H, W) slice at another native resolution."""
    return cv2.resize(image[0], (size[1], size[0]), interpolation=cv2.INTER_CUBIC)[None]


def test_result_fields(predictor, slices) -> None:
    result = predictor.predict(slices[1])[0]
    classes = predictor.classes
    assert result.label == classes[result.class_index]
    assert list(result.probabilities) == classes
    assert abs(sum(result.probabilities.values()) - 1.0) < 1e-5
    assert result.probabilities[result.label] == max(result.probabilities.values())
    assert result.heatmaps.shape == (len(classes), 64, 64) and result.heatmaps.dtype == np.float32
    np.testing.assert_array_equal(result.heatmap, result.heatmaps[result.class_index])
    assert result.mask.dtype == bool and result.mask.shape == (64, 64)
    assert set(result.speed) == set(STAGES) and all(v >= 0 for v in result.speed.values())
    assert result.source == (None, None, "array")
    record = result.to_dict()
    assert json.loads(json.dumps(record)) == record
    assert record["mask_area_px"] == int(result.mask.sum())


def test_native_resolution_matches_the_graph(predictor, slices) -> None:
    """At the model's size the result is the graph's output unchanged."""
    outputs = predictor.backend.run(slices)
    for row, result in enumerate(predictor.predict(slices)):
        assert result.class_index == int(outputs["label"][row])
        np.testing.assert_array_equal(result.heatmaps, outputs["heatmaps"][row])
        np.testing.assert_array_equal(result.mask, outputs["mask"][row].astype(bool))
        assert result.threshold == pytest.approx(float(outputs["threshold"][row]))


def test_geometry_maps_back_to_input_size(predictor, slices) -> None:
    """A 150 x 110 slice is resized by one factor into the model's square frame (150 -> its height), centred, zero
    around; its maps are that region of the model's maps, resized to 150 x 110."""
    size = (150, 110)
    images = [_upscaled(s, size) for s in slices]
    height, width = predictor.image_size
    assert height == width, "this test's arithmetic is for a square model"
    inner = round(110 * height / 150)
    left = (width - inner) // 2
    model_in = np.zeros((len(images), 1, height, width), np.float32)
    for k, im in enumerate(images):
        model_in[k, 0, :, left : left + inner] = cv2.resize(im[0], (inner, height), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(model_in, np.stack([fit_image(im, predictor.image_size) for im in images]))
    outputs = predictor.backend.run(model_in)
    results = predictor.predict(images)
    tumour_masks = 0

    def back(m: np.ndarray) -> np.ndarray:
        return cv2.resize(m[:, left : left + inner], (110, 150), interpolation=cv2.INTER_LINEAR)

    for row, result in enumerate(results):
        assert result.heatmaps.shape == (3, *size) and result.mask.shape == size
        expected = np.stack([back(m) for m in outputs["heatmaps"][row]])
        np.testing.assert_allclose(result.heatmaps, expected, rtol=1e-5, atol=1e-6)
        if result.class_index == predictor.no_tumour_class:
            assert not result.mask.any()
        else:
            # the rule's map (the graph's score: the class map with negatives zeroed) mapped back, above the graph's threshold
            np.testing.assert_array_equal(result.mask, back(outputs["score"][row]) > result.threshold)
            tumour_masks += int(result.mask.any())
    assert tumour_masks > 0, "the tiny model should localise something on the tumour slices"


def test_a_slice_of_another_aspect_ratio_keeps_its_proportions() -> None:
    """A disc in a 60 x 120 slice stays a disc at the model's square size (a plain resize makes it an ellipse
    twice as tall as wide), and its label mask is fitted onto the same pixels."""
    from gpedge.preprocess import fit_mask

    yy, xx = np.mgrid[:60, :120]
    disc = ((yy - 30) ** 2 + (xx - 70) ** 2 < 15**2).astype(np.float32)
    fitted = fit_image(disc, (32, 32)) > 0.5
    rows, cols = np.nonzero(fitted)
    assert abs((rows.max() - rows.min()) - (cols.max() - cols.min())) <= 1
    assert abs(rows.mean() - (8 + 30 * 32 / 120)) < 1 and abs(cols.mean() - 70 * 32 / 120) < 1
    mask = fit_mask(disc.astype(np.uint8), (32, 32)) > 0
    assert (mask & fitted).sum() >= 0.9 * max(mask.sum(), fitted.sum())


def test_offset_override(every_class_package: Path, predictor, slices) -> None:
    base = predictor.predict(slices)
    offset = predictor.offset - 0.3
    with gpedge.Predictor(every_class_package, backend="onnxruntime", offset=offset) as other:
        assert other.offset == offset
        changed = other.predict(slices)
    maps = predictor.backend.run(slices)["heatmaps"]
    checked = 0
    for i, (a, b) in enumerate(zip(base, changed)):
        assert a.class_index == b.class_index
        if b.class_index == predictor.no_tumour_class:
            continue
        assert b.threshold == pytest.approx(multiotsu_threshold(maps[i, b.class_index], offset), abs=1e-5)
        assert b.mask_area_px <= a.mask_area_px  # smaller offset: higher threshold
        checked += 1
    assert checked


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_manifest_offset_rules_after_it_changes(every_class_package: Path, tmp_path: Path, slices, backend: str) -> None:
    """``gpedge evaluate --offsets`` rewrites the manifest's offset after export: every backend feeds it to the graph."""
    package = tmp_path / "package"
    shutil.copytree(every_class_package, package)
    manifest = json.loads((package / "manifest.json").read_text())
    exported = manifest["mask_rule"]["offset"]
    manifest["mask_rule"]["offset"] = exported + 0.3
    (package / "manifest.json").write_text(json.dumps(manifest))
    with gpedge.Predictor(package, backend=backend) as predictor:
        assert predictor.offset == pytest.approx(exported + 0.3)
        results = predictor.predict(slices)
        maps = predictor.backend.run(slices)["heatmaps"]
    checked = 0
    for i, result in enumerate(results):
        if result.class_index == predictor.no_tumour_class:
            continue
        expected = multiotsu_threshold(maps[i, result.class_index], exported + 0.3)
        assert result.threshold == pytest.approx(expected, abs=1e-5)
        checked += 1
    assert checked


def test_batches_and_lists_equal_single_calls(predictor, slices) -> None:
    batched = predictor.predict(list(slices))
    assert [r.source.name for r in batched] == [f"array{i}" for i in range(len(slices))]
    for image, result in zip(slices, batched):
        single = predictor.predict(image)[0]
        assert single.class_index == result.class_index
        np.testing.assert_allclose(single.heatmaps, result.heatmaps, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(single.mask, result.mask)
    stack = predictor.predict(slices)  # (N, C, H, W) array: one result per slice
    assert [r.source.slice for r in stack] == list(range(len(slices)))


def test_rules_sharing_a_graph_rule_share_one_run(predictor, slices, monkeypatch) -> None:
    """``predict_rules`` returns, for every rule, what ``predict`` returns with it; rules that differ only in their
    host-side step share one model run per batch."""
    images = [_upscaled(s, (96, 88)) for s in slices]
    rules = ["contrast-head", "relative+peak", "contrast-head+guided", "relative", "contrast-head+clean"]
    backend = predictor.backend
    calls: list[str] = []
    run = backend.run
    monkeypatch.setattr(backend, "run", lambda batch, offset=None, rule=None: calls.append(rule) or run(batch, offset, rule))
    shared = predictor.predict_rules(images, 0.5, rules)
    batches = -(-len(images) // predictor.batch_size)
    assert list(shared) == rules
    assert sorted(calls) == sorted(["contrast-head"] * batches + ["relative+peak"] * batches)
    monkeypatch.undo()
    for rule in rules:
        alone = predictor.predict(images, offset=0.5, mask_rule=rule)
        assert any(r.mask.any() for r in alone), rule
        for a, b in zip(alone, shared[rule]):
            assert (a.label, a.ood_reasons, a.source) == (b.label, b.ood_reasons, b.source)
            np.testing.assert_array_equal(a.heatmaps, b.heatmaps)
            np.testing.assert_array_equal(a.mask, b.mask)
    assert not np.array_equal(np.stack([r.mask for r in shared["contrast-head"]]),
                              np.stack([r.mask for r in shared["contrast-head+guided"]]))
    with pytest.raises(GpedgeError, match="offset"):
        predictor.predict_rules(images, 2.0, ["relative"])


def test_threads_return_what_serial_calls_return(predictor, slices) -> None:
    inputs = [_upscaled(s, (80 + 8 * i, 72)) for i, s in enumerate(slices)]
    serial = [predictor.predict(x)[0] for x in inputs]
    threaded: dict[int, object] = {}
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for repeat in range(3):
                for i in range(worker, len(inputs), 3):
                    threaded[(i, repeat)] = predictor.predict(inputs[i])[0]
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for (i, _), result in threaded.items():
        assert result.class_index == serial[i].class_index
        np.testing.assert_array_equal(result.heatmaps, serial[i].heatmaps)
        np.testing.assert_array_equal(result.mask, serial[i].mask)


def test_files_and_volumes(predictor, slices, tmp_path: Path) -> None:
    png = (slices[2, 0] / slices[2, 0].max() * 65535).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "scan.png"), png)
    result = predictor.predict(tmp_path / "scan.png")[0]
    assert result.source == (str(tmp_path / "scan.png"), None, "scan")
    vol = np.stack([np.rot90(s[0], -1)[::-1] for s in slices[:4]], axis=-1)  # display slice i == slices[i]
    nib.save(nib.Nifti1Image(vol, np.eye(4)), tmp_path / "vol.nii.gz")
    from_volume = predictor.predict(str(tmp_path / "vol.nii.gz"))
    assert [r.source.slice for r in from_volume] == [0, 1, 2, 3]
    for r, direct in zip(from_volume, predictor.predict(slices[:4])):
        np.testing.assert_allclose(r.heatmaps, direct.heatmaps, rtol=1e-5, atol=1e-6)


def test_save_and_plot(predictor, slices, tmp_path: Path) -> None:
    result = predictor.predict(_upscaled(slices[2], (100, 90)))[0]
    overlay = result.plot()
    assert overlay.dtype == np.uint8 and overlay.ndim == 3 and overlay.shape[2] == 3
    assert min(overlay.shape[:2]) >= 512
    written = result.save(tmp_path / "out")
    assert set(written) == {"mask", "heatmap", "overlay", "json"}
    mask = cv2.imread(written["mask"], cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(mask > 0, result.mask)
    assert cv2.imread(written["heatmap"]).shape == (100, 90, 3)
    saved = json.loads(Path(written["json"]).read_text())
    assert saved["label"] == result.label and saved["outputs"] == written
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(Path(p).name for p in written.values())


def test_damaged_package(every_class_package: Path, tmp_path: Path) -> None:
    broken = tmp_path / "pkg"
    shutil.copytree(every_class_package, broken)
    data = bytearray((broken / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (broken / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(PackageError, match="sha256"):
        gpedge.Predictor(broken, backend="onnxruntime")
    (broken / "manifest.json").unlink()
    with pytest.raises(PackageError, match="manifest.json"):
        gpedge.Predictor(broken)


def test_missing_default_model_is_a_clear_error(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setitem(package_module.BUNDLED, "default", tmp_path / "absent")
    with pytest.raises(PackageError, match="bundled default model .* is missing"):
        gpedge.Predictor()


def test_bundled_models_by_name(tmp_path: Path) -> None:
    """``model=NAME`` opens the bundled package of that name; a name that is none is refused by name."""
    for name, folder in package_module.BUNDLED.items():
        assert gpedge.Predictor(name, backend="onnxruntime").package.root == folder
    assert gpedge.Predictor("gp-unet-synth", backend="onnxruntime").channels == ["t1", "t2", "t1ce", "flair"]
    with pytest.raises(PackageError, match="not a folder"):
        gpedge.Predictor(tmp_path / "gp-unet-synth")
    with pytest.raises(PackageError, match="no bundled model is called 'nope'"):
        package_module.bundled_package("nope")


def test_closed_predictor_and_bad_arguments(every_class_package: Path, slices) -> None:
    p = gpedge.Predictor(every_class_package, backend="onnxruntime")
    p.close()
    with pytest.raises(GpedgeError, match="closed"):
        p.predict(slices[0])
    with pytest.raises(GpedgeError, match="batch_size"):
        gpedge.Predictor(every_class_package, batch_size=0)


def test_threads_spinning_and_warmup(every_class_package: Path, slices) -> None:
    """``Predictor(threads=...)`` reaches the session, pool threads do not busy-wait by default, and
    ``warmup()`` runs the graph at batch 1 and at the batch size without changing any result."""
    with gpedge.Predictor(every_class_package, backend="onnxruntime", threads=1, batch_size=3) as predictor:
        assert predictor.backend.threads == 1 and "1 threads" in predictor.backend_description
        assert not predictor.backend.spinning and "spinning" not in predictor.backend_description
        before = predictor.predict(slices[0])[0]
        predictor.warmup()
        after = predictor.predict(slices[0])[0]
    assert before.probabilities == after.probabilities and np.array_equal(before.mask, after.mask)
    with pytest.raises(GpedgeError, match="threads must be at least 1"):
        gpedge.Predictor(every_class_package, threads=0)
