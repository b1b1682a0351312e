"""Inherent heatmaps vs post-hoc explanations of the same network on the same tumour slices (torch).

For every tumour slice, the torch network rebuilt from the package gives its own heatmap of
the predicted class and the post-hoc maps of :mod:`gpedge.evaluate.posthoc` for that class.
Each map is resized (bilinear) to the slice resolution, thresholded by the package's mask rule
(:func:`gpedge.postprocess.mask_from_heatmap`, same offset; empty when the predicted class is
the no-tumour class) and scored with Dice/IoU, and its maximum with the pointing game.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from gpedge.evaluate.metrics import dice_score, iou_score, median_or_none, pointing_hit, pointing_tolerance
from gpedge.package import ModelPackage
from gpedge.postprocess import mask_from_heatmap
from gpedge.preprocess import normalise_slice_max, resize_image
from gpedge.runtime.predictor import resize_heatmaps

POINTING_FRACTION = 0.015


def compare_explanations(
    package: ModelPackage,
    subset: Any,
    indices: Sequence[int],
    batch_size: int,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Dice, IoU and pointing game of the inherent heatmap and each post-hoc method on ``subset[indices]``."""
    import torch

    from gpedge.evaluate.posthoc import POSTHOC_METHODS, explain
    from gpedge.runtime.backends.torch import load_package_network

    model = load_package_network(package)
    offset, no_tumour = package.offset, package.no_tumour_class
    names = ("inherent", *POSTHOC_METHODS)
    scores: dict[str, dict[str, list[float]]] = {n: {"dice": [], "iou": [], "hit": []} for n in names}
    for start in range(0, len(indices), batch_size):
        samples = [subset[i] for i in indices[start : start + batch_size]]
        batch = np.stack([normalise_slice_max(resize_image(s["image"], package.image_size)) for s in samples])
        out = explain(model, torch.from_numpy(batch))
        for row, sample in enumerate(samples):
            truth = sample["mask"]
            empty = no_tumour is not None and int(out.predicted[row]) == no_tumour
            tolerance = pointing_tolerance(truth.shape, POINTING_FRACTION)
            maps = {"inherent": out.inherent[row], **{m: out.posthoc[m][row] for m in POSTHOC_METHODS}}
            for name, heatmap in maps.items():
                resized = resize_heatmaps(heatmap[None], truth.shape)[0]
                mask = mask_from_heatmap(resized, offset, empty=empty)
                scores[name]["dice"].append(dice_score(mask, truth))
                scores[name]["iou"].append(iou_score(mask, truth))
                scores[name]["hit"].append(float(pointing_hit(resized, truth, tolerance)))
        if progress is not None:
            progress(min(start + batch_size, len(indices)), len(indices))
    return {
        "slices": len(indices),
        "network": "torch model rebuilt from model.safetensors and the manifest",
        "target": "predicted class of the torch network; post-hoc maps on the last decoder feature map (GP-head input)",
        "mask_rule": f"multi-Otsu (3 classes, 256 bins) minus offset {offset}, on maps resized to slice resolution; "
        "empty when the predicted class is the no-tumour class",
        "pointing_tolerance": f"{POINTING_FRACTION:.1%} of the slice's longer side (at least 1 px)",
        "methods": {
            name: {
                "dice_median": median_or_none(s["dice"]),
                "iou_median": median_or_none(s["iou"]),
                "pointing_game": float(np.mean(s["hit"])) if s["hit"] else None,
            }
            for name, s in scores.items()
        },
    }
