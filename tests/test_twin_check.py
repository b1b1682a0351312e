"""scripts/twin_check.py: each tumour slice against its lesion-free twin, through the runtime."""
from __future__ import annotations

from pathlib import Path

import pytest
from script_module import load_script

from gpedge.data import open_dataset, write_synthetic_brats
from gpedge.errors import DataError
from gpedge.package import ModelPackage

twin_check = load_script("twin_check")


def row(label: str, p_slice: float, p_twin: float, called_slice: str, called_twin: str) -> dict:
    return {"label": label, "p_slice": p_slice, "p_twin": p_twin, "called_slice": called_slice, "called_twin": called_twin}


def test_by_class_separates_calls_that_fall_with_the_lesion_from_those_that_do_not() -> None:
    rows = [
        row("HGG", 0.9, 0.1, "HGG", "Healthy"),
        row("HGG", 0.6, 0.55, "HGG", "HGG"),
        row("LGG", 0.4, 0.4, "LGG", "LGG"),
        row("LGG", 0.3, 0.35, "Healthy", "LGG"),
    ]
    found = twin_check.by_class(rows)
    assert found["HGG"]["slices"] == 2
    assert found["HGG"]["called_on_slice"] == 1.0 and found["HGG"]["called_on_twin"] == 0.5
    assert found["HGG"][f"share_falling_over_{twin_check.DROP}"] == 0.5
    assert found["HGG"]["median_fall"] == pytest.approx((0.8 + 0.05) / 2)
    assert found["LGG"][f"share_falling_over_{twin_check.DROP}"] == 0.0
    assert found["LGG"]["called_on_slice"] == 0.5 and found["LGG"]["called_on_twin"] == 1.0


@pytest.mark.slow
def test_every_tumour_slice_is_paired_with_its_twin(tiny_package: Path, small_brats: Path, tmp_path: Path) -> None:
    """small_brats is six patients of seed 11 at 64 x 64 x 16; their twins are written with the same arguments."""
    twins = tmp_path / "twins"
    write_synthetic_brats(twins, 6, seed=11, size=64, slices=16, lesion_free=True)
    package = ModelPackage.load(tiny_package)
    found = twin_check.twin_check(package, small_brats, twins, "all")
    tumour = sum(r.label != 0 for r in open_dataset(small_brats, channels=["t1ce"]).records)
    assert found["tumour_slices"] == tumour > 0
    assert sum(entry["slices"] for entry in found["by_class"].values()) == tumour
    for entry in found["by_class"].values():
        for share in ("called_on_slice", "called_on_twin", f"share_falling_over_{twin_check.DROP}"):
            assert 0.0 <= entry[share] <= 1.0

    with pytest.raises(DataError, match="holds a tumour"):
        twin_check.twin_check(package, small_brats, small_brats, "all")
    fewer = tmp_path / "fewer"  # patient 6 missing
    write_synthetic_brats(fewer, 5, seed=11, size=64, slices=16, lesion_free=True)
    with pytest.raises(DataError, match="has no slice"):
        twin_check.twin_check(package, small_brats, fewer, "all")
