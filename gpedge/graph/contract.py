"""The fused graph's I/O contract: tensor names, dtypes and shapes, and the mask rule's manifest entry.

Torch-free, so that everything that names a graph tensor imports it from here: the fused torch
module, the ONNX exporter and its FP16 pass, the TensorRT builder, the runtime backends and the
benchmarks. Shapes use :data:`BATCH` for the dynamic batch axis.
"""
from __future__ import annotations

from typing import Any

#: Raw image batch, float32 (N, C, H, W) in scanner units (the graph normalises).
INPUT = "image"
#: Mask-rule offset, float32 (1,): a true graph input that every caller feeds.
OFFSET = "offset"
INPUTS = (INPUT, OFFSET)
OUTPUTS = ("logits", "probs", "label", "heatmaps", "threshold", "mask")
#: Symbol of the dynamic batch axis in shapes.
BATCH = "N"

#: The paper's mask rule (see :func:`mask_rule`): three-class multi-Otsu over 256 bins.
MASK_METHOD = "multiotsu"
MASK_CLASSES = 3
MASK_BINS = 256


def input_specs(channels: int, height: int, width: int) -> dict[str, dict[str, Any]]:
    """``{name: {"dtype", "shape"}}`` of every graph input."""
    return {
        INPUT: {"dtype": "float32", "shape": [BATCH, channels, height, width]},
        OFFSET: {"dtype": "float32", "shape": [1]},
    }


def batched_input_specs(channels: int, height: int, width: int) -> dict[str, dict[str, Any]]:
    """Inputs of the graph variant for servers that merge requests (Triton's dynamic batcher).

    Such a server concatenates every input along the batch axis, so the offset is one value per
    sample, (N, 1), instead of one per call; the mask rule is unchanged (the offset is subtracted
    from each sample's (N, 1) upper threshold).
    """
    specs = input_specs(channels, height, width)
    specs[OFFSET] = {"dtype": "float32", "shape": [BATCH, 1]}
    return specs


def output_specs(num_classes: int, height: int, width: int) -> dict[str, dict[str, Any]]:
    """``{name: {"dtype", "shape"}}`` of every graph output, in :data:`OUTPUTS` order."""
    return {
        "logits": {"dtype": "float32", "shape": [BATCH, num_classes]},
        "probs": {"dtype": "float32", "shape": [BATCH, num_classes]},
        "label": {"dtype": "int32", "shape": [BATCH]},
        "heatmaps": {"dtype": "float32", "shape": [BATCH, num_classes, height, width]},
        "threshold": {"dtype": "float32", "shape": [BATCH]},
        "mask": {"dtype": "uint8", "shape": [BATCH, height, width]},
    }


def io_dtypes() -> dict[str, str]:
    """numpy dtype name of every graph input and output (shapes aside)."""
    specs = {**input_specs(1, 1, 1), **output_specs(1, 1, 1)}
    return {name: spec["dtype"] for name, spec in specs.items()}


def mask_rule(offset: float, empty_for_class: int | None) -> dict[str, Any]:
    """The manifest's ``mask_rule``: the method, its parameters, and which of them are graph inputs.

    The rule (computed inside the graph at the model's resolution): take the predicted class's
    heatmap, zero negative values, three-class multi-Otsu over 256 bins of the map's own range,
    threshold = max(upper threshold - ``offset``, 0), mask = map > threshold; empty for the
    no-tumour class ``empty_for_class`` and for maps with fewer than three occupied bins.
    ``inputs`` names the parameters the runtime feeds to the graph on every call.
    """
    return {
        "method": MASK_METHOD,
        "classes": MASK_CLASSES,
        "bins": MASK_BINS,
        "zero_negative": True,
        "offset": float(offset),
        "empty_for_class": empty_for_class,
        "inputs": {OFFSET: input_specs(1, 1, 1)[OFFSET]},
    }
