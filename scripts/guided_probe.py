"""How the ``+guided`` step's settings move the masks (issue 9): window radius, eps and guide, side by side.

For every tumour slice of a split, through the package's runtime backend (the graph's rule map, threshold
and mask for the package's rule without its host-side step, as ``gpedge infer`` computes them): the rule's
map resized to the data's resolution, refined by :func:`gpedge.postprocess.guided_filter` with each setting,
above the graph's threshold (empty where the graph's mask is, e.g. a slice called healthy). Reports the
median Dice over all tumour slices per setting and for the unrefined rule; the shipped setting is
:data:`gpedge.graph.contract.GUIDED`. ``mean`` guides with the mean of the channels even where FLAIR is read.

    python scripts/guided_probe.py PKG --split val [--data DIR] [--json out.json]
"""
from __future__ import annotations

import itertools
import sys

import numpy as np

from gpedge.errors import reporting
from gpedge.evaluate.metrics import dice_score
from gpedge.graph.contract import GUIDED, parse_mask_rule
from gpedge.postprocess import guided_filter
from gpedge.runtime.maps import guide_image, resize_heatmaps

from _report import run_probe, tumour_slice_outputs

RADIUS_FRACTIONS = (1 / 32, 1 / 16, 3 / 32, 1 / 8)  # 4, 8, 12 and 16 px at 128 px
EPS = (1e-4, 1e-3, 3e-3)
GUIDES = ("package", "mean")


def probe(package, data, split: str) -> dict:
    settings = list(itertools.product(GUIDES, RADIUS_FRACTIONS, EPS))
    dice: dict[str, list[float]] = {"unrefined": [], **{f"{g} r={r:.4f} eps={e:g}": [] for g, r, e in settings}}
    for image, truth, out in tumour_slice_outputs(package, data, split):
        threshold = np.float32(out["threshold"][0])
        empty = not out["mask"][0].any()
        score = resize_heatmaps(out["score"][0][None], truth.shape)[0]
        dice["unrefined"].append(dice_score(np.zeros_like(truth) if empty else score > threshold, truth))
        guides = {"package": guide_image(image, package.channels), "mean": guide_image(image, ["mean"] * len(image))}
        for g, r, e in settings:
            radius = max(1, round(r * min(truth.shape)))
            mask = np.zeros_like(truth) if empty else guided_filter(guides[g], score, radius, e) > threshold
            dice[f"{g} r={r:.4f} eps={e:g}"].append(dice_score(mask, truth))
    medians = {name: float(np.median(values)) for name, values in dice.items()}
    return {"rule": parse_mask_rule(package.mask_rule).base, "offset": package.offset,
            "tumour_slices": len(dice["unrefined"]), "shipped": dict(GUIDED),
            "median_dice": dict(sorted(medians.items(), key=lambda kv: -kv[1]))}


def main(argv: list[str] | None = None) -> int:
    return run_probe(__doc__, probe, argv)


if __name__ == "__main__":
    sys.exit(reporting(main))
