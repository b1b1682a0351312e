"""Where a model's median Dice is lost (issue 9, item 1): misclassification, the threshold rule, the map.

For every tumour slice (non-empty ground truth) of a split of the package's own run data set (or of
``--data``), through the runtime (``gpedge.Predictor``, the mask rule ``gpedge infer`` applies):

- ``deployed``: Dice of the runtime's mask (0 when the slice is called healthy);
- ``classified``: the same, counting only slices called a tumour class (what is left once
  misclassification is removed);
- ``best threshold``: Dice of the most probable tumour class's map at the best of 64 thresholds for
  that slice (an oracle for the threshold rule and the offset's scale: what the map itself allows);
- ``pointing``: share of slices whose map peaks inside the tumour.

``by_class`` gives, per true tumour class, how many of its slices are called that class and how often
that class's own map peaks inside the tumour (on all its slices and on those of at least
``LARGE_PX`` pixels, where the lesion is plain): whether the map of the class finds its lesion.

The medians over all tumour slices: ``deployed`` vs ``classified`` is the loss to misclassification,
``classified`` vs ``best threshold`` the loss to the threshold rule, and a low ``best threshold`` the
loss to the map (it does not light up the tumour). ``by_area`` repeats the first two by the ground
truth's area in pixels (the loss to small-lesion slices).

    python scripts/dice_breakdown.py PKG --split val [--data DIR] [--mask-rule head] [--json out.json]
    python scripts/dice_breakdown.py PKG --split all --data EXTERNAL   # every slice of external data
    python scripts/dice_breakdown.py PKG --split external --data OTHER   # other patients sharing the package's IDs
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from gpedge.data import open_dataset
from gpedge.errors import reporting
from gpedge.package import ModelPackage
from gpedge.evaluate.metrics import dice_score, pointing_hit
from gpedge.evaluate.selection import class_index_map, select_split
from gpedge.runtime.predictor import Predictor

from _report import emit, package_and_data, package_parser

THRESHOLDS = 64
AREAS = ((1, 50), (50, 200), (200, 600), (600, None))  # ground-truth pixels at the data's resolution
LARGE_PX = 200  # a plain lesion, in ground-truth pixels at the data's resolution


def best_threshold_dice(heatmap: np.ndarray, truth: np.ndarray) -> float:
    """The best Dice of ``heatmap > t`` over ``THRESHOLDS`` quantiles of the map's positive values."""
    positive = heatmap[heatmap > 0]
    if positive.size == 0:
        return 0.0
    levels = np.unique(np.quantile(positive, np.linspace(0.0, 0.995, THRESHOLDS)))
    return max(dice_score(heatmap > t, truth) for t in levels)


def by_class(rows: list[dict]) -> dict[str, dict]:
    """Per true tumour class: slices, the share called that class, and the share whose own class map peaks
    inside the tumour, on all the class's slices and on those of at least ``LARGE_PX`` pixels."""
    out = {}
    for name in dict.fromkeys(r["label"] for r in rows):
        group = [r for r in rows if r["label"] == name]
        large = [r for r in group if r["area"] >= LARGE_PX]
        out[name] = {
            "slices": len(group),
            "called_this_class": float(np.mean([r["called"] == name for r in group])),
            "own_map_pointing": float(np.mean([r["true_map_peak_in_tumour"] for r in group])),
            f"slices_{LARGE_PX}px_or_more": len(large),
            f"own_map_pointing_{LARGE_PX}px_or_more": float(np.mean([r["true_map_peak_in_tumour"] for r in large])) if large else None,
        }
    return out


def breakdown(package: ModelPackage, data: Path, split: str, mask_rule: str | None) -> dict:
    manifest = package.manifest
    dataset = open_dataset(data, format=manifest["dataset"].get("format", "auto"), channels=package.channels)
    dataset, _ = select_split(dataset, package, split)
    to_package = class_index_map(dataset, package)
    rows = []
    with Predictor(package, backend="onnxruntime", mask_rule=mask_rule) as predictor:
        tumour_classes = [k for k in range(len(predictor.classes)) if k != package.no_tumour_class]
        for i in range(len(dataset)):
            sample = dataset[i]
            truth = np.asarray(sample["mask"]) > 0
            if not truth.any():
                continue
            result = predictor.predict(np.asarray(sample["image"], np.float32))[0]
            tumour_class = max(tumour_classes, key=lambda k: result.probabilities[predictor.classes[k]])
            tumour_map = result.heatmaps[tumour_class]
            true_class = int(to_package[int(sample["label"])])
            true_map = result.heatmaps[true_class]
            rows.append({
                "label": predictor.classes[true_class],
                "called": result.label,
                "area": int(truth.sum()),
                "called_tumour": bool(result.is_tumour),
                "deployed": dice_score(result.mask, truth),
                "best_threshold": best_threshold_dice(tumour_map, truth),
                "peak_in_tumour": pointing_hit(tumour_map, truth, 0.0),
                "true_map_peak_in_tumour": pointing_hit(true_map, truth, 0.0),
            })
        rule, offset = predictor.mask_rule, predictor.offset
    called = [r for r in rows if r["called_tumour"]]

    def median(values: list[float]) -> float | None:
        return float(np.median(values)) if values else None

    return {
        "package": str(package.root), "data": str(data), "split": split, "mask_rule": rule, "offset": offset,
        "tumour_slices": len(rows), "called_tumour": len(called),
        "median_dice_deployed": median([r["deployed"] for r in rows]),
        "median_dice_classified": median([r["deployed"] for r in called]),
        "median_dice_best_threshold": median([r["best_threshold"] for r in rows]),
        "pointing": float(np.mean([r["peak_in_tumour"] for r in rows])) if rows else None,
        "by_class": by_class(rows),
        "by_area": {
            f"{low}-{high or 'max'} px": {
                "slices": len(group),
                "called_tumour": float(np.mean([r["called_tumour"] for r in group])) if group else None,
                "median_dice_deployed": median([r["deployed"] for r in group]),
                "median_dice_classified": median([r["deployed"] for r in group if r["called_tumour"]]),
            }
            for low, high in AREAS
            for group in [[r for r in rows if r["area"] >= low and (high is None or r["area"] < high)]]
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = package_parser(__doc__.splitlines()[0], split="val")
    parser.add_argument("--mask-rule", help="mask rule (default: the package's)")
    args = parser.parse_args(argv)
    package, data = package_and_data(args.package, args.data)
    return emit(breakdown(package, data, args.split, args.mask_rule), args.json)


if __name__ == "__main__":
    sys.exit(reporting(main))
