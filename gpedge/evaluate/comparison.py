"""Inherent heatmaps vs post-hoc explanations of the same network on the same tumour slices (torch).

For every tumour slice, the torch network rebuilt from the package gives its own heatmap of
the predicted class and the post-hoc maps of :mod:`gpedge.evaluate.posthoc` for that class.
Every map goes through the deployed mask rule: thresholded at the model's resolution by the
graph's own mask module (:class:`gpedge.graph.mask.MaskRule`, the package's rule and parameter;
empty when the predicted class is the no-tumour class), then mapped to the slice resolution by
:func:`gpedge.runtime.maps.to_input_resolution`; it is scored with Dice/IoU, and its resized
map's maximum with the pointing game. Post-hoc methods explain one class, so the contrast
rules' subtraction of the no-tumour class's map is left out for every method alike.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from gpedge.evaluate.metrics import dice_score, iou_score, median_or_none, pointing_hit, pointing_tolerance
from gpedge.package import ModelPackage
from gpedge.preprocess import fit_image, normalise_slice_max
from gpedge.runtime.maps import to_input_resolution

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
    from gpedge.graph.contract import head_erosion_px, parse_mask_rule
    from gpedge.graph.mask import MaskRule
    from gpedge.runtime.backends.base import rule_inputs
    from gpedge.runtime.backends.torch import load_package_network

    model = load_package_network(package)
    rule = MaskRule(None, head_erosion_px(*package.image_size))
    name, no_tumour = package.mask_rule, package.no_tumour_class
    offset, code = (torch.from_numpy(v) for v in rule_inputs(package.offset, name).values())
    post = parse_mask_rule(name).post
    names = ("inherent", *POSTHOC_METHODS)
    scores: dict[str, dict[str, list[float]]] = {n: {"dice": [], "iou": [], "hit": []} for n in names}
    for start in range(0, len(indices), batch_size):
        samples = [subset[i] for i in indices[start : start + batch_size]]
        batch = np.stack([normalise_slice_max(fit_image(s["image"], package.image_size)) for s in samples])
        out = explain(model, torch.from_numpy(batch))
        keep = torch.from_numpy(out.predicted != (-1 if no_tumour is None else no_tumour))
        image, zeros = torch.from_numpy(batch), torch.zeros(len(samples), dtype=torch.int64)
        graph_rule = {}
        with torch.no_grad():
            for method, maps in {"inherent": out.inherent, **out.posthoc}.items():
                score, threshold, mask = rule(torch.from_numpy(maps)[:, None], zeros, image, offset, code, keep)
                graph_rule[method] = (maps, score.numpy(), threshold.numpy(), mask.numpy())
        for row, sample in enumerate(samples):
            truth = sample["mask"]
            tolerance = pointing_tolerance(truth.shape, POINTING_FRACTION)
            for method, (maps, score, thresholds, masks) in graph_rule.items():
                resized, mask = to_input_resolution(maps[row][None], score[row], thresholds[row], masks[row], truth.shape, post,
                                                    sample["image"], package.channels)
                scores[method]["dice"].append(dice_score(mask, truth))
                scores[method]["iou"].append(iou_score(mask, truth))
                scores[method]["hit"].append(float(pointing_hit(resized[0], truth, tolerance)))
        if progress is not None:
            progress(min(start + batch_size, len(indices)), len(indices))
    return {
        "slices": len(indices),
        "network": "torch model rebuilt from model.safetensors and the manifest",
        "target": "predicted class of the torch network; post-hoc maps on the last decoder feature map (GP-head input)",
        "mask_rule": f"the deployed rule {name!r} with parameter {package.offset:g} at the model's resolution (without the "
        "contrast subtraction), mapped to the slice resolution; empty when the predicted class is the no-tumour class",
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
