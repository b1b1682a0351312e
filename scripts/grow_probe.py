"""How far the ``+grow`` step should grow (issue 9): the ``+guided`` mask grown by hysteresis to several fractions of
the threshold, side by side, by lesion area.

For every tumour slice of a split, through the package's runtime backend (the graph's rule map, threshold and mask
for the package's rule without its host-side step, as ``gpedge infer`` computes them): the rule's map at the data's
resolution refined as the ``+guided`` step does (:func:`gpedge.runtime.maps.guided_map`), then
:func:`gpedge.postprocess.hysteresis` down to each fraction of the threshold (1: the ``+guided`` mask; empty where
the graph's mask is, e.g. a slice called healthy). Reports the median Dice per fraction over all tumour slices, over
those called tumour and by tumour area; the shipped fraction is :data:`gpedge.graph.contract.GROW`'s.

    python scripts/grow_probe.py PKG --split val [--data DIR] [--json out.json]
"""
from __future__ import annotations

import sys

import numpy as np

from gpedge.errors import reporting
from gpedge.evaluate.metrics import dice_score
from gpedge.graph.contract import GROW, parse_mask_rule
from gpedge.postprocess import hysteresis
from gpedge.runtime.maps import guided_map, resize_heatmaps

from _report import run_probe, tumour_slice_outputs

FRACTIONS = (1.0, 0.9, 0.75, 0.6, 0.5, 0.25)
#: Tumour areas (pixels at the data's resolution) of the rows by area: [low, high).
AREA_BINS = ((1, 50), (50, 200), (200, 600), (600, None))


def probe(package, data, split: str) -> dict:
    rows: list[tuple[int, bool, list[float]]] = []
    for image, truth, out in tumour_slice_outputs(package, data, split):
        is_tumour = int(out["label"][0]) != package.no_tumour_class
        if not out["mask"][0].any():
            rows.append((int(truth.sum()), is_tumour, [dice_score(np.zeros_like(truth), truth)] * len(FRACTIONS)))
            continue
        threshold = np.float32(out["threshold"][0])
        score = resize_heatmaps(out["score"][0][None], truth.shape)[0]
        guided = guided_map(score, out["score"][0].shape, image, package.channels)
        masks = [hysteresis(guided, threshold, threshold * np.float32(f), GROW["connectivity"]) for f in FRACTIONS]
        rows.append((int(truth.sum()), is_tumour, [dice_score(m, truth) for m in masks]))
    area = np.array([r[0] for r in rows])
    called = np.array([r[1] for r in rows], dtype=bool)
    dice = np.array([r[2] for r in rows], dtype=np.float64).reshape(len(rows), len(FRACTIONS))

    def medians(keep: np.ndarray) -> dict[str, float | None]:
        return {f"{f:g}": (float(np.median(dice[keep, k])) if keep.any() else None) for k, f in enumerate(FRACTIONS)}

    by_area = {f"{low}-{high or 'max'} px": {"slices": int(keep.sum()), "median_dice": medians(keep)}
               for low, high in AREA_BINS for keep in [(area >= low) & (area < (high or np.inf))]}
    return {"rule": parse_mask_rule(package.mask_rule).base, "offset": package.offset,
            "shipped_fraction": GROW["fraction"], "tumour_slices": len(rows), "called_tumour": int(called.sum()),
            "median_dice": medians(np.ones(len(rows), bool)), "median_dice_called": medians(called), "by_area": by_area}


def main(argv: list[str] | None = None) -> int:
    return run_probe(__doc__, probe, argv)


if __name__ == "__main__":
    sys.exit(reporting(main))
