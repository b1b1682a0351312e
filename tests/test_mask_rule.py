"""One mask rule at every resolution: the (rule, offset) ``gpedge evaluate --mask-rules/--offsets`` tunes is, bit
for bit, the rule ``gpedge infer`` then applies, on every backend, with data at another resolution than the model's."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import TINY_SIZE, make_slices
from gpedge.evaluate.metrics import dice_score
from gpedge.evaluate.sweep import RuleSweep, candidates, set_package_rule, sweep_rules
from gpedge.errors import GpedgeError
from gpedge.graph.contract import CLEAN_UP, GROW, GUIDED, parse_mask_rule
from gpedge.package import ModelPackage
from gpedge.postprocess import clean_mask, guided_filter, hysteresis, peak_component
from gpedge.runtime.backends import create_backend
from gpedge.runtime.backends.onnxruntime import OnnxRuntimeBackend
from gpedge.runtime.maps import guide_image, to_input_resolution
from gpedge.runtime.predictor import Predictor
from gpedge.tensorrt.cuda import unavailable_reason
from mask_reference import mask_from_heatmap

DATA_SIZE = 120  # the tiny model runs at 64 px: a 1.875x resolution change, not a whole multiple
OFFSETS = [0.0, 0.01, 0.02, 0.04, 0.08]  # the tiny model's heatmaps peak near 0.1
FRACTIONS = [-0.5, 0.0, 0.5, 1.0]
PAIRS = candidates(["paper"], OFFSETS) + candidates(
    ["relative", "contrast-head", "contrast+clean", "head+peak", "contrast-head+guided", "head+grow"], FRACTIONS
)
BACKENDS = [
    "onnxruntime",
    "onnxruntime-fp16",
    "torch",
    pytest.param("tensorrt", marks=[pytest.mark.tensorrt, pytest.mark.skipif(
        unavailable_reason() is not None, reason=f"needs TensorRT and a CUDA GPU: {unavailable_reason()}")]),
]


def _infer(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gpedge.cli", "infer", *map(str, args)], capture_output=True, text=True,
                          timeout=180)


def _backend(name: str, package: ModelPackage):
    if name == "onnxruntime-fp16":
        return OnnxRuntimeBackend(package, "cpu", precision="fp16")
    return create_backend(name, package, None if name == "tensorrt" else "cpu")


@pytest.fixture(scope="module")
def samples() -> list[dict]:
    data = make_slices(12, seed=21, size=DATA_SIZE)
    assert DATA_SIZE != TINY_SIZE
    return [{"image": im, "mask": m, "label": int(lab)} for im, m, lab in zip(data.images, data.masks, data.labels)]


def _median_dice(results, samples) -> float:
    return float(np.median([dice_score(r.mask, s["mask"]) for r, s in zip(results, samples) if s["mask"].any()]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_tuned_rule_is_the_rule_infer_applies(every_class_package: Path, tmp_path: Path, samples, backend: str) -> None:
    package_dir = Path(shutil.copytree(every_class_package, tmp_path / "pkg"))
    loaded = ModelPackage.load(package_dir)
    with Predictor(backend=_backend(backend, loaded), batch_size=4) as predictor:
        sweep = sweep_rules(predictor, samples, np.arange(3), PAIRS)
    best = sweep.best()
    set_package_rule(loaded, *best)  # what `gpedge evaluate --mask-rules ... --offsets ...` stores
    table = {(row["rule"], row["offset"]): row["dice_median"] for row in sweep.table()}
    assert len(set(table.values())) > 2, "the rules and offsets should make a difference on these slices"
    for rule in sweep.rules:
        assert len({table[(rule, o)] for o in (OFFSETS if rule == "paper" else FRACTIONS)}) > 1, rule

    with Predictor(backend=_backend(backend, ModelPackage.load(package_dir))) as deployed:  # as `gpedge infer` opens it
        assert (deployed.mask_rule, deployed.offset) == best
        results = deployed.predict([s["image"] for s in samples])
        assert all(r.mask.shape == (DATA_SIZE, DATA_SIZE) for r in results)
        assert _median_dice(results, samples) == table[best]
        differs = False
        for rule, offset in PAIRS:  # every row of the sweep is what infer returns with that rule and offset
            results = deployed.predict([s["image"] for s in samples], offset=offset, mask_rule=rule)
            assert _median_dice(results, samples) == table[(rule, offset)], (rule, offset)
            if rule == "paper":  # ... and not scikit-image's multi-Otsu recomputed at the data's resolution
                recomputed = [mask_from_heatmap(r.heatmap, offset, empty=not r.is_tumour).astype(bool) for r in results]
                differs |= any(not np.array_equal(a, r.mask) for a, r in zip(recomputed, results))
    assert differs, "at another resolution than the model's, the two rules should disagree somewhere"


def test_sweep_reruns_only_the_slices_called_tumour(tiny_package: Path, samples) -> None:
    """The sweep runs later candidates only on the slices the first called a tumour class: every row of its table
    equals the row of running every candidate on every slice."""
    with Predictor(tiny_package, backend="onnxruntime", batch_size=4) as predictor:
        first = predictor.predict([s["image"] for s in samples])
        assert 0 < sum(r.is_tumour for r in first) < len(samples), "some slices should be called healthy"
        swept = sweep_rules(predictor, samples, np.arange(3), PAIRS)
        full = RuleSweep(PAIRS)
        for rule, offset in PAIRS:
            for sample, result in zip(samples, predictor.predict([s["image"] for s in samples], offset=offset, mask_rule=rule)):
                full.add(rule, offset, result.mask, sample["mask"], sample["label"] == 0, result.is_tumour)
    assert swept.table() == full.table()


def test_infer_cli_applies_the_stored_rule(every_class_package: Path, tmp_path: Path, samples) -> None:
    """``gpedge infer`` (a subprocess, at the data's resolution) writes the mask the Predictor gives with the stored rule;
    ``--mask-rule`` overrides it; an unknown rule is one clear error line."""
    package_dir = Path(shutil.copytree(every_class_package, tmp_path / "pkg"))
    set_package_rule(ModelPackage.load(package_dir), "contrast+clean", 0.5)
    image = samples[1]["image"][0]
    assert samples[1]["mask"].any()
    png = tmp_path / "scan.png"
    cv2.imwrite(str(png), np.round(image / image.max() * 65535).astype(np.uint16))
    masks = {}
    for rule in (None, "paper"):
        out = tmp_path / f"out-{rule}"
        done = _infer(png, "--model", package_dir, "--backend", "onnxruntime", "--out", out,
                      *(() if rule is None else ("--mask-rule", rule)))
        assert done.returncode == 0, done.stderr
        masks[rule] = cv2.imread(str(out / "scan_mask.png"), cv2.IMREAD_UNCHANGED) > 0
    with Predictor(package_dir, backend="onnxruntime") as predictor:
        stored = predictor.predict(png)[0].mask
        paper = predictor.predict(png, mask_rule="paper")[0].mask
    assert masks[None].shape == (DATA_SIZE, DATA_SIZE) and masks[None].any()
    np.testing.assert_array_equal(masks[None], stored)
    np.testing.assert_array_equal(masks["paper"], paper)
    assert not np.array_equal(stored, paper)
    done = _infer(png, "--model", package_dir, "--mask-rule", "otsu")
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "unknown mask rule 'otsu'" in done.stderr and "contrast-head" in done.stderr


def test_rule_offsets_are_checked(tiny_package: Path) -> None:
    with pytest.raises(GpedgeError, match="unknown mask rule"):
        Predictor(tiny_package, backend="onnxruntime", mask_rule="relative+tidy")
    with pytest.raises(GpedgeError, match=r"fraction in \[-1, 1\]"):
        Predictor(tiny_package, backend="onnxruntime", mask_rule="relative", offset=1.5)
    with Predictor(tiny_package, backend="onnxruntime") as predictor:
        assert (predictor.mask_rule, predictor.offset) == ("paper", 0.5)
        image = make_slices(1, seed=4).images[0]
        with pytest.raises(GpedgeError, match="finite"):
            predictor.predict(image, offset=float("nan"))
        with pytest.raises(GpedgeError, match=r"fraction in \[-1, 1\]"):
            predictor.predict(image, mask_rule="head", offset=-2.0)
    # the package's offset (absolute) is not carried over to a relative rule: that rule's default is used
    with Predictor(tiny_package, backend="onnxruntime", mask_rule="relative") as predictor:
        assert predictor.offset == 0.0


def test_rule_at_the_model_resolution_is_the_graph_mask(tiny_package: Path) -> None:
    package = ModelPackage.load(tiny_package)
    for rule in ("paper", "contrast-head"):
        outputs = create_backend("onnxruntime", package, "cpu").run(make_slices(6, seed=2).images, 0.25, rule)
        for row in range(6):
            maps, mask = to_input_resolution(outputs["heatmaps"][row], outputs["score"][row], float(outputs["threshold"][row]),
                                             outputs["mask"][row], (TINY_SIZE, TINY_SIZE))
            np.testing.assert_array_equal(maps, outputs["heatmaps"][row])
            np.testing.assert_array_equal(mask, outputs["mask"][row].astype(bool))


def test_empty_graph_mask_stays_empty_at_any_resolution() -> None:
    """A map without a multi-Otsu split (threshold = its maximum) or the no-tumour class gives no mask."""
    maps = np.zeros((3, 8, 8), np.float32)
    maps[1, 2:6, 2:6] = 1.0
    _, mask = to_input_resolution(maps, maps[1], 1.0, np.zeros((8, 8), np.uint8), (21, 13))
    assert mask.shape == (21, 13) and not mask.any()
    _, mask = to_input_resolution(maps, maps[1], 0.5, (maps[1] > 0.5).astype(np.uint8), (21, 13))
    assert mask.any()


def test_clean_up_runs_at_the_input_resolution() -> None:
    """``+clean`` rules: the thresholded, resized map cleaned by gpedge.postprocess.clean_mask at the input's resolution."""
    score = np.zeros((16, 16), np.float32)
    score[2:10, 2:10] = 1.0
    score[13, 13] = 1.0  # a speck: its own component, dropped by the clean-up
    graph_mask = (score > 0.5).astype(np.uint8)
    maps = score[None]
    _, raw = to_input_resolution(maps, score, 0.5, graph_mask, (48, 48))
    _, cleaned = to_input_resolution(maps, score, 0.5, graph_mask, (48, 48), post="clean")
    np.testing.assert_array_equal(cleaned, clean_mask(raw, **CLEAN_UP).astype(bool))
    assert raw[40, 40] and not cleaned[40, 40] and cleaned[15, 15]


def test_peak_region_is_taken_at_the_input_resolution() -> None:
    """``+peak`` rules: of the thresholded, resized map, the component holding its maximum."""
    score = np.zeros((16, 16), np.float32)
    score[2:10, 2:10] = 1.0
    score[12:15, 12:15] = 2.0  # smaller, but the map's peak
    graph_mask = (score > 0.5).astype(np.uint8)
    _, raw = to_input_resolution(score[None], score, 0.5, graph_mask, (48, 48))
    _, peak = to_input_resolution(score[None], score, 0.5, graph_mask, (48, 48), post="peak")
    resized = cv2.resize(score, (48, 48), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(peak, peak_component(raw, resized))
    assert raw[15, 15] and not peak[15, 15] and peak[40, 40]


def test_guided_map_is_thresholded_at_the_input_resolution() -> None:
    """``+guided`` rules: the resized map, refined by the guided filter with the input's guide image (window radius
    a fixed share of the input's size), above the graph's threshold; the graph's empty mask stays empty."""
    score = np.zeros((16, 16), np.float32)
    score[3:9, 3:9] = 1.0
    graph_mask = (score > 0.5).astype(np.uint8)
    guide = np.zeros((48, 48), np.float32)
    guide[8:30, 8:24] = 1.0
    _, mask = to_input_resolution(score[None], score, 0.5, graph_mask, (48, 48), post="guided", image=guide[None],
                                  channels=["t1ce"])
    resized = cv2.resize(score, (48, 48), interpolation=cv2.INTER_LINEAR)
    radius = max(1, round(GUIDED["radius_fraction"] * 48))
    np.testing.assert_array_equal(mask, guided_filter(guide, resized, radius, GUIDED["eps"]) > 0.5)
    _, empty = to_input_resolution(score[None], score, 0.5, np.zeros_like(graph_mask), (48, 48), post="guided",
                                   image=guide[None], channels=["t1ce"])
    assert not empty.any()
    with pytest.raises(ValueError, match="guide"):
        to_input_resolution(score[None], score, 0.5, graph_mask, (48, 48), post="guided")


def test_grown_mask_is_the_guided_mask_grown_by_hysteresis() -> None:
    """``+grow`` rules: the ``+guided`` map's regions above GROW's fraction of the graph's threshold that hold a pixel of
    the ``+guided`` mask; a region that stays below the threshold is not added, and the graph's empty mask stays empty."""
    score = np.zeros((16, 16), np.float32)
    score[3:9, 3:9] = 1.0
    score[4:7, 4:7] = 2.0  # the core: above the threshold 1.5; its surround is above 0.75 x 1.5
    score[11:16, 11:16] = 1.3  # a separate region below the threshold, above its fraction
    graph_mask = (score > 1.5).astype(np.uint8)
    guide = np.full((48, 48), 0.5, np.float32)
    kwargs = {"image": guide[None], "channels": ["t1ce"]}
    _, guided = to_input_resolution(score[None], score, 1.5, graph_mask, (48, 48), post="guided", **kwargs)
    _, grown = to_input_resolution(score[None], score, 1.5, graph_mask, (48, 48), post="grow", **kwargs)
    resized = cv2.resize(score, (48, 48), interpolation=cv2.INTER_LINEAR)
    refined = guided_filter(guide, resized, max(1, round(GUIDED["radius_fraction"] * 48)), GUIDED["eps"])
    np.testing.assert_array_equal(grown, hysteresis(refined, 1.5, 1.5 * GROW["fraction"], GROW["connectivity"]))
    assert guided.any() and (grown >= guided).all() and grown.sum() > 1.5 * guided.sum()
    assert not grown[33:48, 33:48].any() and (refined[33:48, 33:48] > 1.5 * GROW["fraction"]).any()
    _, empty = to_input_resolution(score[None], score, 1.5, np.zeros_like(graph_mask), (48, 48), post="grow", **kwargs)
    assert not empty.any()
    with pytest.raises(ValueError, match="guide"):
        to_input_resolution(score[None], score, 1.5, graph_mask, (48, 48), post="grow")


def test_a_slice_of_another_aspect_ratio_gets_what_its_letterboxed_square_gets() -> None:
    """The bundled model (``+guided`` rule) on the example cut to 240 x 150 gives the maps and mask it gives on that cut
    zero-padded back to 240 x 240, cropped: the same model input (150 -> 60 columns, 18 zero columns each side), the
    same guided window (a share of the model's frame); a plain resize would give the model a head 1.6 times wider."""
    from conftest import EXAMPLE_SCAN

    scan = cv2.imread(str(EXAMPLE_SCAN), cv2.IMREAD_UNCHANGED).astype(np.float32)
    assert scan.shape == (240, 240) and not scan[:, :45].any() and not scan[:, 195:].any(), "the cut must keep the head"
    cut = scan[:, 45:195]
    with Predictor(backend="onnxruntime") as predictor:
        assert parse_mask_rule(predictor.mask_rule).post == "guided"
        narrow = predictor.predict(cut)[0]
        square = predictor.predict(np.pad(cut, ((0, 0), (45, 45))))[0]
    assert narrow.mask.shape == (240, 150) and square.mask[:, 45:195].any()
    # the same samples of the model's maps, but at the cut's first and last column bilinear interpolation clamps to
    # the cut's border where the square reads the padding beside it; the guided filter's windows differ only within
    # its radius of those edges
    np.testing.assert_allclose(narrow.heatmaps[:, :, 1:-1], square.heatmaps[:, :, 46:194], rtol=1e-4, atol=1e-5)
    radius = round(GUIDED["radius_fraction"] * 240)
    inner = np.s_[:, radius : 150 - radius]
    np.testing.assert_array_equal(narrow.mask[inner], square.mask[:, 45:195][inner])
    assert (narrow.mask != square.mask[:, 45:195]).sum() <= 0.01 * square.mask.sum()
    assert narrow.probabilities == square.probabilities


def test_non_square_pixels_keep_the_heads_physical_proportions(tmp_path: Path) -> None:
    """The example as a NIfTI slice at 1 mm, and with every two columns averaged into one 2 mm wide (240 x 120):
    NIfTI and DICOM both give the spacing, and the narrow slice's maps are the 1 mm slice's, averaged the same way;
    taken for square pixels (the same 240 x 120 at 1 mm) its head is half as wide and its maps differ."""
    import nibabel as nib

    from conftest import EXAMPLE_SCAN
    from dicom_series import write_series

    scan = cv2.imread(str(EXAMPLE_SCAN), cv2.IMREAD_UNCHANGED).astype(np.float32)
    narrow = np.round(cv2.resize(scan, (120, 240), interpolation=cv2.INTER_AREA))  # integers, as DICOM stores them

    def nifti(display: np.ndarray, column_mm: float, name: str) -> Path:
        # display rows run anterior to posterior, columns the patient's right to left; voxels are RAS
        nib.save(nib.Nifti1Image(display[::-1, ::-1].T[..., None], np.diag([column_mm, 1.0, 1.0, 1.0])), tmp_path / name)
        return tmp_path / name

    write_series(tmp_path / "dicom", narrow[::-1, ::-1].T[..., None], np.diag([2.0, 1.0, 1.0, 1.0]), description="AX FLAIR")
    with Predictor(backend="onnxruntime") as predictor:
        fine = predictor.predict(nifti(scan, 1.0, "fine.nii.gz"))[0]
        wide = predictor.predict(nifti(narrow, 2.0, "wide.nii.gz"))[0]
        as_square = predictor.predict(nifti(narrow, 1.0, "square.nii.gz"))[0]
        assert predictor.read_scan(tmp_path / "wide.nii.gz").pixel_spacing == (1.0, 2.0)
        assert predictor.read_scan(tmp_path / "dicom").pixel_spacing == pytest.approx((1.0, 2.0))
        from_dicom = predictor.predict(tmp_path / "dicom")[0]
    expected = np.stack([cv2.resize(m, (120, 240), interpolation=cv2.INTER_AREA) for m in fine.heatmaps])
    scale = np.abs(expected).max()
    assert np.abs(wide.heatmaps - expected).max() < 0.1 * scale
    assert np.abs(as_square.heatmaps - expected).max() > 0.3 * scale
    assert wide.probabilities == pytest.approx(fine.probabilities, abs=0.02)
    np.testing.assert_allclose(from_dicom.heatmaps, wide.heatmaps, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(from_dicom.mask, wide.mask)


def test_a_rules_base_is_its_name_without_the_host_side_step() -> None:
    assert [parse_mask_rule(n).base for n in ("paper", "head+peak", "contrast-head+guided", "relative+clean")] == [
        "paper", "head", "contrast-head", "relative"]


def test_guide_is_flair_when_the_model_reads_it_else_the_mean_of_the_channels() -> None:
    rng = np.random.default_rng(4)
    image = rng.uniform(0, 500, (4, 20, 20)).astype(np.float32)
    image[3, 0, 0] = 1e6  # one hot pixel does not set FLAIR's scale (a percentile does)
    flair = guide_image(image, ["t1", "t2", "t1ce", "flair"])
    assert flair.dtype == np.float32 and flair.shape == (20, 20)
    scale = np.percentile(image[3], GUIDED["percentile"])
    np.testing.assert_allclose(flair, np.clip(image[3] / scale, 0, 1), rtol=1e-6)
    mean = guide_image(image[:3], ["t1", "t2", "t1ce"])
    expected = np.mean([np.clip(c / np.percentile(c, GUIDED["percentile"]), 0, 1) for c in image[:3]], axis=0)
    np.testing.assert_allclose(mean, expected, rtol=1e-5)
    assert not guide_image(np.zeros((1, 5, 5), np.float32), ["t1ce"]).any()
