"""Patient-level stratified split."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from gpedge.data import open_dataset, split_patients
from gpedge.errors import DataError

COUNTS = {"healthy": 9, "lgg": 13, "hgg": 21}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root: Path = tmp_path_factory.mktemp("split") / "images"
    for cls, n in COUNTS.items():
        (root / cls).mkdir(parents=True)
        for i in range(n):
            cv2.imwrite(str(root / cls / f"{cls}{i:02d}.png"), np.full((4, 4), i + 1, np.uint8))
    return open_dataset(root)


def test_split_is_disjoint_complete_and_stratified(dataset):
    split = split_patients(dataset, seed=1701)
    sets = {k: set(v) for k, v in split.items()}
    assert set(split) == {"train", "val", "test"}
    assert not (sets["train"] & sets["val"] or sets["train"] & sets["test"] or sets["val"] & sets["test"])
    assert set().union(*sets.values()) == set(dataset.patients)
    classes = dataset.patient_classes
    for cls, n in enumerate(sorted(COUNTS)):
        per = {k: sum(classes[p] == cls for p in v) for k, v in split.items()}
        total = COUNTS[n]
        assert abs(per["train"] - 0.7 * total) <= 1 and abs(per["val"] - 0.15 * total) <= 1
    assert abs(len(split["test"]) - 0.15 * len(dataset.patients)) <= 1


def test_split_seeded(dataset):
    assert split_patients(dataset, seed=3) == split_patients(dataset, seed=3)
    assert split_patients(dataset, seed=3) != split_patients(dataset, seed=4)


def test_small_classes_keep_a_training_patient(dataset):
    tiny = dataset.subset(["healthy00", "lgg00", "lgg01", "hgg00", "hgg01", "hgg02"])
    split = split_patients(tiny, seed=0, fractions=(0.5, 0.25, 0.25))
    classes = tiny.patient_classes
    assert {classes[p] for p in split["train"]} == {0, 1, 2}
    assert sorted(sum(split.values(), [])) == tiny.patients


def test_subset_by_split(dataset):
    split = split_patients(dataset, seed=0)
    train = dataset.subset(split["train"])
    assert set(train.patient_of) == set(split["train"])


@pytest.mark.parametrize("fractions", [(0.5, 0.5), (0.8, 0.3, -0.1), (0.6, 0.2, 0.1)])
def test_bad_fractions(dataset, fractions):
    with pytest.raises(DataError, match="fractions"):
        split_patients(dataset, seed=0, fractions=fractions)
