"""The fused graph's I/O contract: tensor names, dtypes and shapes, the mask rules, and the rule's manifest entry.

Torch-free, so that everything that names a graph tensor imports it from here: the fused torch
module, the ONNX exporter and its FP16 pass, the TensorRT builder, the runtime backends and the
benchmarks. Shapes use :data:`BATCH` for the dynamic batch axis.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from gpedge.errors import GpedgeError

#: Raw image batch, float32 (N, C, H, W) in scanner units (the graph normalises).
INPUT = "image"
#: Mask-rule parameter, float32 (1,): the paper's absolute offset or a scale-free fraction, fed on every call.
OFFSET = "offset"
#: Mask-rule code, int32 (3,): (map, threshold, region) codes of :data:`MASK_RULES`, fed on every call.
MASK_RULE = "mask_rule"
INPUTS = (INPUT, OFFSET, MASK_RULE)
OUTPUTS = ("logits", "probs", "label", "heatmaps", "score", "threshold", "mask")
#: Symbol of the dynamic batch axis in shapes.
BATCH = "N"

#: Three-class multi-Otsu over 256 bins of the thresholded map's own range.
MASK_METHOD = "multiotsu"
MASK_CLASSES = 3
MASK_BINS = 256
#: Head region: the normalised image (max over channels) above this fraction of the slice's maximum ...
HEAD_FRACTION = 0.05
#: ... eroded by a square of side 2r+1, r = this fraction of the model's smaller side (at least 1 px).
HEAD_EROSION = 0.03
#: Suffixes of a rule name that add a host-side step at the input's resolution, applied by
#: :func:`gpedge.runtime.maps.to_input_resolution`: ``+clean`` the paper's clean-up
#: (:func:`gpedge.postprocess.clean_mask` with :data:`CLEAN_UP`), ``+peak`` the connected region of
#: the map's maximum (:func:`gpedge.postprocess.peak_component`), ``+guided`` the map refined with
#: the image as guide (:func:`gpedge.postprocess.guided_filter` with :data:`GUIDED`) before the graph's threshold,
#: ``+grow`` the ``+guided`` mask grown by hysteresis (:func:`gpedge.postprocess.hysteresis` with :data:`GROW`).
POST_STEPS = {"+clean": "clean", "+peak": "peak", "+guided": "guided", "+grow": "grow"}
#: Clean-up parameters at the input's resolution (pixels): objects and holes below these sizes, closing radius.
CLEAN_UP = {"min_object": 64, "max_hole": 128, "closing_radius": 2, "largest_component": True}
#: ``+peak``: the mask's 8-connected component that holds the maximum of the rule's map.
PEAK_COMPONENT = {"connectivity": 8}
#: ``+guided``: the guide is the FLAIR channel when the model reads one (the contrast on which a glioma's
#: whole extent, oedema included, is drawn), else the mean of the channels, each divided by its
#: ``percentile`` of the slice's positive values and clipped to [0, 1]; window radius = ``radius_fraction``
#: of the smaller side of the input's frame (the input with its :func:`gpedge.preprocess.letterbox` padding:
#: the frame the model saw; at least 1 px); ``eps`` the filter's ridge on that 0-1 scale.
GUIDED = {"guide": "flair", "percentile": 99.5, "radius_fraction": 0.0625, "eps": 1e-3}
#: ``+grow``: the ``+guided`` map's ``connectivity``-connected regions above ``fraction`` x the graph's threshold that
#: hold a pixel above the threshold itself (the ``+guided`` mask): a lesion's whole extent where the map's peak
#: covers only its core, and no new region.
GROW = {"fraction": 0.75, "connectivity": 8}

#: Codes of the three parts of a rule, in the order of the ``mask_rule`` input.
MAP_CODES = {"class": 0, "contrast": 1}
THRESHOLD_CODES = {"absolute": 0, "relative": 1}
REGION_CODES = {"image": 0, "head": 1}


@dataclass(frozen=True)
class MaskRule:
    """A named mask rule: which map is thresholded, how the threshold is set, where, and the host-side step.

    ``map``: ``class`` (the predicted class's heatmap) or ``contrast`` (that map minus the
    no-tumour class's map; minus the mean of the other classes' maps when there is no
    no-tumour class). ``threshold``: ``absolute`` (upper multi-Otsu threshold - offset, the
    paper's) or ``relative`` (scale-free: offset r in [-1, 1] moves the threshold from the upper
    multi-Otsu threshold towards the lower one by r x (upper - lower) for r >= 0, towards the
    map's maximum by |r| x (max - upper) for r < 0). ``region``: ``image`` or ``head`` (the map
    zeroed outside the eroded head foreground before the threshold is computed). ``post``: the
    host-side step after mapping to the input's resolution (a value of :data:`POST_STEPS`, or
    ``""`` for none).
    """

    name: str
    map: str
    threshold: str
    region: str
    post: str = ""

    @property
    def base(self) -> str:
        """The name without its host-side step's suffix (the rule the graph computes)."""
        suffix = next((s for s, step in POST_STEPS.items() if step == self.post), "") if self.post else ""
        return self.name.removesuffix(suffix)

    @property
    def code(self) -> tuple[int, int, int]:
        """The graph's ``mask_rule`` input."""
        return MAP_CODES[self.map], THRESHOLD_CODES[self.threshold], REGION_CODES[self.region]

    @property
    def scale_free(self) -> bool:
        return self.threshold == "relative"

    @property
    def default_offset(self) -> float:
        """The parameter used when none is given (:data:`DEFAULT_OFFSETS`)."""
        return DEFAULT_OFFSETS[self.threshold]

    def check_offset(self, offset: float) -> float:
        """``offset`` as a float when this rule accepts it (finite; in [-1, 1] for relative rules), else a clear error."""
        value = float(offset)
        if not math.isfinite(value):
            raise GpedgeError(f"the offset of mask rule {self.name!r} must be a finite number, got {offset}")
        if self.scale_free and not -1.0 <= value <= 1.0:
            raise GpedgeError(
                f"the offset of mask rule {self.name!r} is a fraction in [-1, 1] (0: the upper multi-Otsu threshold, "
                f"1: the lower one, -1: the map's maximum), got {offset}"
            )
        return value


#: The named rules (each may take one suffix of :data:`POST_STEPS`). ``paper`` is the published rule.
MASK_RULES = {
    "paper": MaskRule("paper", "class", "absolute", "image"),
    "relative": MaskRule("relative", "class", "relative", "image"),
    "contrast": MaskRule("contrast", "contrast", "relative", "image"),
    "head": MaskRule("head", "class", "relative", "head"),
    "contrast-head": MaskRule("contrast-head", "contrast", "relative", "head"),
}
DEFAULT_MASK_RULE = "paper"
#: The parameter a rule starts with when none is given: the paper's offset 0.5, the upper Otsu threshold itself.
DEFAULT_OFFSETS = {"absolute": 0.5, "relative": 0.0}


def post_step_names() -> str:
    """The host-side steps' suffixes for messages and help texts: ``+clean, +peak, +guided or +grow``."""
    *head, last = POST_STEPS
    return f"{', '.join(head)} or {last}"


def parse_mask_rule(name: str) -> MaskRule:
    """The :class:`MaskRule` called ``name`` (``paper``, ``relative+clean``, ``head+peak``, ...); a clear error otherwise."""
    text = str(name).strip()
    suffix = next((s for s in POST_STEPS if text.endswith(s)), "")
    base = text[: len(text) - len(suffix)]
    if base not in MASK_RULES:
        raise GpedgeError(
            f"unknown mask rule {name!r}; use one of {', '.join(MASK_RULES)}, optionally with "
            f"{post_step_names()} (e.g. relative+clean, head+peak, contrast-head+guided)"
        )
    rule = MASK_RULES[base]
    return MaskRule(text, rule.map, rule.threshold, rule.region, POST_STEPS.get(suffix, ""))


def head_erosion_px(height: int, width: int) -> int:
    """Erosion radius of the head region at the model's resolution (pixels)."""
    return max(1, round(HEAD_EROSION * min(height, width)))


def input_specs(channels: int, height: int, width: int) -> dict[str, dict[str, Any]]:
    """``{name: {"dtype", "shape"}}`` of every graph input."""
    return {
        INPUT: {"dtype": "float32", "shape": [BATCH, channels, height, width]},
        OFFSET: {"dtype": "float32", "shape": [1]},
        MASK_RULE: {"dtype": "int32", "shape": [3]},
    }


def batched_input_specs(channels: int, height: int, width: int) -> dict[str, dict[str, Any]]:
    """Inputs of the graph variant for servers that merge requests (Triton's dynamic batcher).

    Such a server concatenates every input along the batch axis, so the offset is one value per
    sample, (N, 1), instead of one per call (the offset is subtracted from each sample's (N, 1)
    upper threshold), and the mask rule is fixed in the served graph (a merged batch cannot mix
    rules): ``mask_rule`` is not an input there.
    """
    specs = input_specs(channels, height, width)
    specs[OFFSET] = {"dtype": "float32", "shape": [BATCH, 1]}
    del specs[MASK_RULE]
    return specs


def output_specs(num_classes: int, height: int, width: int) -> dict[str, dict[str, Any]]:
    """``{name: {"dtype", "shape"}}`` of every graph output, in :data:`OUTPUTS` order.

    ``score`` is the map the rule thresholds (negatives zeroed, zero outside the rule's region);
    ``threshold`` its threshold; ``mask`` = ``score > threshold`` (empty for the no-tumour class).
    """
    return {
        "logits": {"dtype": "float32", "shape": [BATCH, num_classes]},
        "probs": {"dtype": "float32", "shape": [BATCH, num_classes]},
        "label": {"dtype": "int32", "shape": [BATCH]},
        "heatmaps": {"dtype": "float32", "shape": [BATCH, num_classes, height, width]},
        "score": {"dtype": "float32", "shape": [BATCH, height, width]},
        "threshold": {"dtype": "float32", "shape": [BATCH]},
        "mask": {"dtype": "uint8", "shape": [BATCH, height, width]},
    }


def io_dtypes() -> dict[str, str]:
    """numpy dtype name of every graph input and output (shapes aside)."""
    specs = {**input_specs(1, 1, 1), **output_specs(1, 1, 1)}
    return {name: spec["dtype"] for name, spec in specs.items()}


def mask_rule(rule: str, offset: float, empty_for_class: int | None, height: int, width: int) -> dict[str, Any]:
    """The manifest's ``mask_rule``: the chosen rule and parameter, the fixed settings, and the graph inputs.

    Computed inside the graph at the model's resolution: the rule's map (:class:`MaskRule`),
    negative values zeroed, zeroed outside the head region for ``head`` rules; three-class
    multi-Otsu over 256 bins of its own range gives the lower and upper thresholds; the
    threshold (absolute or relative, clamped at 0); mask = map > threshold; empty for the
    no-tumour class ``empty_for_class`` and for maps with fewer than three occupied bins.
    ``inputs`` names the parameters the runtime feeds to the graph on every call.
    """
    parse_mask_rule(rule)
    specs = input_specs(1, height, width)
    return {
        "method": MASK_METHOD,
        "rule": rule,
        "offset": float(offset),
        "classes": MASK_CLASSES,
        "bins": MASK_BINS,
        "zero_negative": True,
        "empty_for_class": empty_for_class,
        "head": {"fraction": HEAD_FRACTION, "erosion_px": head_erosion_px(height, width)},
        "clean_up": dict(CLEAN_UP),
        "peak_component": dict(PEAK_COMPONENT),
        "guided": dict(GUIDED),
        "grow": dict(GROW),
        "rules": {name: {"map": r.map, "threshold": r.threshold, "region": r.region, "code": list(r.code)}
                  for name, r in MASK_RULES.items()},
        "inputs": {OFFSET: specs[OFFSET], MASK_RULE: specs[MASK_RULE]},
    }
