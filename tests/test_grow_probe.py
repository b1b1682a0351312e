"""scripts/grow_probe.py: its rows for the shipped fraction and for 1 are what the runtime's +grow and +guided rules give."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from script_module import load_script

from gpedge.data import open_dataset
from gpedge.evaluate.metrics import dice_score
from gpedge.evaluate.selection import select_split
from gpedge.graph.contract import GROW
from gpedge.package import ModelPackage
from gpedge.runtime.predictor import Predictor

grow_probe = load_script("grow_probe")


def test_shipped_fraction_matches_the_runtimes_grow_rule(tiny_package: Path, small_brats: Path) -> None:
    package = ModelPackage.load(tiny_package)
    found = grow_probe.probe(package, small_brats, "all")
    dataset, _ = select_split(open_dataset(small_brats, format="brats", channels=package.channels), package, "all")
    samples = [dataset[i] for i in range(len(dataset)) if np.asarray(dataset[i]["mask"]).any()]
    medians = {}
    with Predictor(package, backend="onnxruntime") as predictor:
        for post in ("guided", "grow"):
            results = predictor.predict([s["image"] for s in samples], mask_rule=f"{found['rule']}+{post}")
            medians[post] = float(np.median([dice_score(r.mask, np.asarray(s["mask"]) > 0) for r, s in zip(results, samples)]))
    assert found["tumour_slices"] == len(samples) > 0
    assert found["called_tumour"] == sum(r.is_tumour for r in results) > 0
    assert found["median_dice"][f"{GROW['fraction']:g}"] == pytest.approx(medians["grow"], abs=1e-12)
    assert found["median_dice"]["1"] == pytest.approx(medians["guided"], abs=1e-12)
    assert len(set(found["median_dice"].values())) > 1, "the fractions should change the masks"
    assert sum(row["slices"] for row in found["by_area"].values()) == len(samples)
