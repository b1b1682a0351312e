"""scripts/grade_breakdown.py: the bound and the volume grade it reports, on slices built by hand."""
from __future__ import annotations

import pytest
from script_module import load_script

pytest.importorskip("sklearn")

grade_breakdown = load_script("grade_breakdown")

CLASSES = ["Healthy", "LGG", "HGG"]


def row(patient: str, truth: int, predicted: int, probabilities: list[float], area: int = 100, enhancing: int = 0) -> dict:
    return {"patient": patient, "truth": truth, "predicted": predicted, "probabilities": probabilities,
            "area": area, "enhancing": enhancing}


def test_volume_grade_gives_each_patient_its_most_probable_tumour_class() -> None:
    rows = [
        row("a", 2, 2, [0.1, 0.2, 0.7], enhancing=30),
        row("a", 2, 1, [0.1, 0.5, 0.4]),
        row("a", 0, 0, [0.8, 0.1, 0.1], area=0),
        row("b", 1, 2, [0.2, 0.35, 0.45]),
        row("b", 1, 1, [0.0, 0.9, 0.1]),
    ]
    assert grade_breakdown.volume_grades(rows, [1, 2]).tolist() == [2, 2, 0, 1, 1]


def test_bound_calls_hgg_slices_without_enhancing_tumour_lgg() -> None:
    rows = [row("h", 0, 0, [1, 0, 0], area=0)] * 4 + [row("l", 1, 1, [0, 1, 0])] * 4 \
        + [row("g", 2, 2, [0, 0, 1], enhancing=10)] * 3 + [row("g", 2, 1, [0, 1, 0])]
    found = grade_breakdown.breakdown(rows, CLASSES)
    assert found["hgg_slices_without_enhancing"] == 1
    assert found["hgg_without_enhancing_called"] == {"Healthy": 0, "LGG": 1, "HGG": 0}
    assert found["macro_f1"] == pytest.approx(found["bound_no_et_as_lgg"])
    assert found["macro_f1_without_hgg_without_enhancing"] == pytest.approx(1.0)
    assert found["bound_no_et_as_lgg"] < 1.0
