"""One mask rule at every resolution: the offset ``gpedge evaluate --offsets`` tunes is, bit for bit,
the rule ``gpedge infer`` then applies, on every backend, with data at another resolution than the model's."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY_SIZE, make_slices
from gpedge.evaluate.metrics import dice_score
from gpedge.evaluate.sweep import set_package_offset, sweep_offsets
from gpedge.package import ModelPackage
from mask_reference import mask_from_heatmap
from gpedge.runtime.backends import create_backend
from gpedge.runtime.backends.onnxruntime import OnnxRuntimeBackend
from gpedge.runtime.maps import to_input_resolution
from gpedge.runtime.predictor import Predictor
from gpedge.tensorrt.cuda import unavailable_reason

DATA_SIZE = 120  # the tiny model runs at 64 px: a 1.875x resolution change, not a whole multiple
OFFSETS = [0.0, 0.01, 0.02, 0.04, 0.08]  # the tiny model's heatmaps peak near 0.1
BACKENDS = [
    "onnxruntime",
    "onnxruntime-fp16",
    "torch",
    pytest.param("tensorrt", marks=[pytest.mark.tensorrt, pytest.mark.skipif(
        unavailable_reason() is not None, reason=f"needs TensorRT and a CUDA GPU: {unavailable_reason()}")]),
]


def _backend(name: str, package: ModelPackage):
    if name == "onnxruntime-fp16":
        return OnnxRuntimeBackend(package, "cpu", graph="model.fp16.onnx")
    return create_backend(name, package, None if name == "tensorrt" else "cpu")


@pytest.fixture(scope="module")
def samples() -> list[dict]:
    data = make_slices(12, seed=21, size=DATA_SIZE)
    assert DATA_SIZE != TINY_SIZE
    return [{"image": im, "mask": m, "label": int(lab)} for im, m, lab in zip(data.images, data.masks, data.labels)]


def _median_dice(results, samples) -> float:
    return float(np.median([dice_score(r.mask, s["mask"]) for r, s in zip(results, samples) if s["mask"].any()]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_tuned_offset_is_the_rule_infer_applies(tiny_package: Path, tmp_path: Path, samples, backend: str) -> None:
    package_dir = Path(shutil.copytree(tiny_package, tmp_path / "pkg"))
    package = ModelPackage.load(package_dir)
    with Predictor(backend=_backend(backend, package), batch_size=4) as predictor:
        sweep = sweep_offsets(predictor, samples, np.arange(3), OFFSETS)
    best = sweep.best_offset()
    set_package_offset(package, best)  # what `gpedge evaluate --offsets` stores
    table = {row["offset"]: row["dice_median"] for row in sweep.table()}
    assert len(set(table.values())) > 1, "the offsets should make a difference on these slices"

    with Predictor(backend=_backend(backend, ModelPackage.load(package_dir))) as deployed:  # as `gpedge infer` opens it
        assert deployed.offset == best
        results = deployed.predict([s["image"] for s in samples])
        assert all(r.mask.shape == (DATA_SIZE, DATA_SIZE) for r in results)
        assert _median_dice(results, samples) == table[best]
        differs = False
        for offset in OFFSETS:  # every row of the sweep is what infer returns with that offset
            results = deployed.predict([s["image"] for s in samples], offset=offset)
            assert _median_dice(results, samples) == table[offset]
            # ... and not scikit-image's multi-Otsu recomputed at the data's resolution (what the sweep used to score)
            recomputed = [mask_from_heatmap(r.heatmap, offset, empty=not r.is_tumour).astype(bool) for r in results]
            differs |= any(not np.array_equal(a, r.mask) for a, r in zip(recomputed, results))
    assert differs, "at another resolution than the model's, the two rules should disagree somewhere"


def test_rule_at_the_model_resolution_is_the_graph_mask(tiny_package: Path) -> None:
    package = ModelPackage.load(tiny_package)
    outputs = create_backend("onnxruntime", package, "cpu").run(make_slices(6, seed=2).images, 0.25)
    for row in range(6):
        maps, mask = to_input_resolution(outputs["heatmaps"][row], int(outputs["label"][row]),
                                         float(outputs["threshold"][row]), outputs["mask"][row], (TINY_SIZE, TINY_SIZE))
        np.testing.assert_array_equal(maps, outputs["heatmaps"][row])
        np.testing.assert_array_equal(mask, outputs["mask"][row].astype(bool))


def test_empty_graph_mask_stays_empty_at_any_resolution() -> None:
    """A map without a multi-Otsu split (threshold = its maximum) or the no-tumour class gives no mask."""
    maps = np.zeros((3, 8, 8), np.float32)
    maps[1, 2:6, 2:6] = 1.0
    _, mask = to_input_resolution(maps, 1, 1.0, np.zeros((8, 8), np.uint8), (21, 13))
    assert mask.shape == (21, 13) and not mask.any()
    _, mask = to_input_resolution(maps, 1, 0.5, (maps[1] > 0.5).astype(np.uint8), (21, 13))
    assert mask.any()
