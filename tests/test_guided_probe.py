"""scripts/guided_probe.py: its row for the shipped +guided setting is what the runtime's +guided rule gives."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from script_module import load_script

from gpedge.data import open_dataset
from gpedge.evaluate.metrics import dice_score
from gpedge.evaluate.selection import select_split
from gpedge.graph.contract import GUIDED
from gpedge.package import ModelPackage
from gpedge.runtime.predictor import Predictor

guided_probe = load_script("guided_probe")


def test_shipped_setting_matches_the_runtimes_guided_rule(tiny_package: Path, small_brats: Path) -> None:
    package = ModelPackage.load(tiny_package)
    found = guided_probe.probe(package, small_brats, "all")
    dataset, _ = select_split(open_dataset(small_brats, format="brats", channels=package.channels), package, "all")
    samples = [dataset[i] for i in range(len(dataset)) if np.asarray(dataset[i]["mask"]).any()]
    with Predictor(package, backend="onnxruntime") as predictor:
        results = predictor.predict([s["image"] for s in samples], mask_rule=f"{found['rule']}+guided")
    expected = float(np.median([dice_score(r.mask, np.asarray(s["mask"]) > 0) for r, s in zip(results, samples)]))
    shipped = f"package r={GUIDED['radius_fraction']:.4f} eps={GUIDED['eps']:g}"
    assert found["tumour_slices"] == len(samples) > 0
    assert found["median_dice"][shipped] == pytest.approx(expected, abs=1e-12)
    assert sum(r.mask.any() for r in results) >= len(samples) // 2, "most tumour slices should get a mask"
    assert found["median_dice"][shipped] != found["median_dice"]["unrefined"], "the step should change the masks"
    assert len(found["median_dice"]) == 1 + len(guided_probe.GUIDES) * len(guided_probe.RADIUS_FRACTIONS) * len(guided_probe.EPS)
