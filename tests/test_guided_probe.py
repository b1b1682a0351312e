"""scripts/guided_probe.py and scripts/grow_probe.py: their rows for the shipped settings are what the runtime's
+guided and +grow rules give."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from script_module import load_script

from gpedge.data import open_dataset
from gpedge.evaluate.metrics import dice_score
from gpedge.evaluate.selection import select_split
from gpedge.graph.contract import GROW, GUIDED
from gpedge.package import ModelPackage
from gpedge.runtime.predictor import Predictor

guided_probe = load_script("guided_probe")
grow_probe = load_script("grow_probe")


def _runtime(package: ModelPackage, data: Path, rules: list[str]) -> tuple[int, dict[str, list], dict[str, float]]:
    """The number of the split's tumour slices and, for each rule, the runtime's results on them and their median Dice."""
    dataset, _ = select_split(open_dataset(data, format="brats", channels=package.channels), package, "all")
    samples = [dataset[i] for i in range(len(dataset)) if np.asarray(dataset[i]["mask"]).any()]
    with Predictor(package, backend="onnxruntime") as predictor:
        results = {rule: predictor.predict([s["image"] for s in samples], mask_rule=rule) for rule in rules}
    medians = {rule: float(np.median([dice_score(r.mask, np.asarray(s["mask"]) > 0) for r, s in zip(found, samples)]))
               for rule, found in results.items()}
    return len(samples), results, medians


def test_shipped_setting_matches_the_runtimes_guided_rule(tiny_package: Path, small_brats: Path) -> None:
    package = ModelPackage.load(tiny_package)
    found = guided_probe.probe(package, small_brats, "all")
    rule = f"{found['rule']}+guided"
    count, results, medians = _runtime(package, small_brats, [rule])
    shipped = f"package r={GUIDED['radius_fraction']:.4f} eps={GUIDED['eps']:g}"
    assert found["tumour_slices"] == count > 0
    assert found["median_dice"][shipped] == pytest.approx(medians[rule], abs=1e-12)
    assert sum(r.mask.any() for r in results[rule]) >= count // 2, "most tumour slices should get a mask"
    assert found["median_dice"][shipped] != found["median_dice"]["unrefined"], "the step should change the masks"
    assert len(found["median_dice"]) == 1 + len(guided_probe.GUIDES) * len(guided_probe.RADIUS_FRACTIONS) * len(guided_probe.EPS)


def test_shipped_fraction_matches_the_runtimes_grow_rule(tiny_package: Path, small_brats: Path) -> None:
    package = ModelPackage.load(tiny_package)
    found = grow_probe.probe(package, small_brats, "all")
    rules = [f"{found['rule']}+guided", f"{found['rule']}+grow"]
    count, results, medians = _runtime(package, small_brats, rules)
    assert found["tumour_slices"] == count > 0
    assert found["called_tumour"] == sum(r.is_tumour for r in results[rules[0]]) > 0
    assert found["median_dice"][f"{GROW['fraction']:g}"] == pytest.approx(medians[rules[1]], abs=1e-12)
    assert found["median_dice"]["1"] == pytest.approx(medians[rules[0]], abs=1e-12)
    assert len(set(found["median_dice"].values())) > 1, "the fractions should change the masks"
    assert sum(row["slices"] for row in found["by_area"].values()) == count
