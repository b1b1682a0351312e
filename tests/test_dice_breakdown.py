"""scripts/dice_breakdown.py: whether each tumour class's own map finds its lesion, on rows built by hand."""
from __future__ import annotations

import pytest
from script_module import load_script

dice_breakdown = load_script("dice_breakdown")


def row(label: str, called: str, area: int, own_map_in_lesion: bool) -> dict:
    return {"label": label, "called": called, "area": area, "true_map_peak_in_tumour": own_map_in_lesion}


def test_by_class_counts_calls_and_pointing_per_true_class_and_on_large_lesions() -> None:
    large = dice_breakdown.LARGE_PX
    rows = [
        row("LGG", "LGG", large, False),
        row("LGG", "Healthy", large + 50, False),
        row("LGG", "HGG", 10, True),
        row("LGG", "LGG", 20, False),
        row("HGG", "HGG", large, True),
        row("HGG", "LGG", 5, False),
    ]
    found = dice_breakdown.by_class(rows)
    assert found["LGG"]["slices"] == 4
    assert found["LGG"]["called_this_class"] == pytest.approx(0.5)
    assert found["LGG"]["own_map_pointing"] == pytest.approx(0.25)
    assert found["LGG"][f"slices_{large}px_or_more"] == 2
    assert found["LGG"][f"own_map_pointing_{large}px_or_more"] == 0.0
    assert found["HGG"]["called_this_class"] == pytest.approx(0.5)
    assert found["HGG"][f"own_map_pointing_{large}px_or_more"] == 1.0


def test_by_class_has_no_large_lesion_share_without_large_lesions() -> None:
    found = dice_breakdown.by_class([row("LGG", "LGG", 3, True)])
    assert found["LGG"][f"own_map_pointing_{dice_breakdown.LARGE_PX}px_or_more"] is None


def test_a_bad_package_or_data_folder_is_an_error_line_not_a_traceback(tmp_path, capsys) -> None:
    assert dice_breakdown.reporting(lambda: dice_breakdown.main([str(tmp_path / "missing")])) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: model package") and "missing" in err and "Traceback" not in err
