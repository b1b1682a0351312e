"""Mask-rule sweep: every candidate (rule, offset) fed to the graph through the ``Predictor``, as ``gpedge infer`` does.

The masks scored for a candidate are exactly the masks ``gpedge infer --mask-rule RULE --offset
OFFSET`` returns (the graph's rule at the model's resolution,
:func:`gpedge.runtime.maps.to_input_resolution` to the data's, the rule's host-side step,
``+clean``, ``+guided``, ...), on whatever backend the sweep runs, so the rule and offset it stores in the package are
what the runtime then applies.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from gpedge.atomic import atomic_write_json
from gpedge.errors import GpedgeError
from gpedge.evaluate.metrics import dice_score, healthy_fp_rate, iou_score, median_or_none
from gpedge.graph.contract import parse_mask_rule
from gpedge.package import MANIFEST, ModelPackage

#: Offsets swept when ``--offsets`` is not given, by how the rule sets its threshold.
DEFAULT_SWEEP = {
    "absolute": (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
    "relative": (-0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0),
}


def parse_offsets(text: str) -> list[float]:
    """Parse ``"0,0.1,0.5"`` into sorted unique finite offsets, with a clear error otherwise."""
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise GpedgeError(f"--offsets {text!r} is not a comma-separated list of numbers (e.g. 0,0.25,0.5,0.75,1)") from exc
    if not values or any(not np.isfinite(v) for v in values):
        raise GpedgeError(f"--offsets {text!r} must list one or more finite offsets (e.g. 0,0.25,0.5,0.75,1)")
    return sorted(set(values))


def parse_rules(text: str) -> list[str]:
    """Parse ``"paper,relative+clean"`` into known rule names in the given order; a clear error otherwise."""
    names = list(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if not names:
        raise GpedgeError(f"--mask-rules {text!r} names no rule (e.g. paper,relative,contrast,head,contrast-head)")
    return [parse_mask_rule(name).name for name in names]


def candidates(rules: Sequence[str], offsets: Sequence[float] | None) -> list[tuple[str, float]]:
    """Every (rule, offset) pair to sweep: ``offsets`` for every rule (checked against each rule's range),
    else :data:`DEFAULT_SWEEP` of the rule's threshold kind."""
    pairs = []
    for name in rules:
        rule = parse_mask_rule(name)
        values = DEFAULT_SWEEP[rule.threshold] if offsets is None else offsets
        pairs += [(rule.name, rule.check_offset(v)) for v in values]
    return pairs


class RuleSweep:
    """Per (rule, offset) candidate: Dice and IoU on tumour slices and the false-positive rate on healthy slices.

    A rule only shapes the mask of a slice the model calls a tumour (the mask of a slice called
    healthy is empty whatever the rule), so candidates are ranked by the median Dice over the tumour
    slices called tumour. Over all tumour slices, a model that misses more than half of them has a
    median Dice of 0 under every rule and the choice would be noise.
    """

    def __init__(self, pairs: Sequence[tuple[str, float]]) -> None:
        if not pairs:
            raise ValueError("a mask-rule sweep needs at least one (rule, offset) candidate")
        self.pairs = [(str(rule), float(offset)) for rule, offset in pairs]
        self._dice: list[list[float]] = [[] for _ in self.pairs]
        self._iou: list[list[float]] = [[] for _ in self.pairs]
        self._dice_called: list[list[float]] = [[] for _ in self.pairs]
        self._healthy_masks: list[list[bool]] = [[] for _ in self.pairs]

    @property
    def rules(self) -> list[str]:
        return list(dict.fromkeys(rule for rule, _ in self.pairs))

    def add(self, rule: str, offset: float, mask: np.ndarray, truth: np.ndarray, healthy: bool, called_tumour: bool = True) -> None:
        """Score the mask predicted with ``rule`` and ``offset`` on one slice (ground truth ``truth``, same
        resolution); ``called_tumour``: the model called the slice a tumour class."""
        i = self.pairs.index((rule, float(offset)))
        if np.any(truth):
            dice = dice_score(mask, truth)
            self._dice[i].append(dice)
            self._iou[i].append(iou_score(mask, truth))
            if called_tumour:
                self._dice_called[i].append(dice)
        if healthy:
            self._healthy_masks[i].append(bool(np.any(mask)))

    @property
    def tumour_slices(self) -> int:
        return len(self._dice[0])

    def table(self) -> list[dict[str, Any]]:
        """One row per candidate: ``rule``, ``offset``, ``dice_median`` (all tumour slices), ``dice_median_called``
        (tumour slices called tumour), ``iou_median``, ``healthy_fp_rate``, slice counts."""
        return [
            {
                "rule": rule,
                "offset": offset,
                "dice_median": median_or_none(self._dice[i]),
                "dice_median_called": median_or_none(self._dice_called[i]),
                "iou_median": median_or_none(self._iou[i]),
                "healthy_fp_rate": healthy_fp_rate(self._healthy_masks[i], [True] * len(self._healthy_masks[i])),
                "tumour_slices": len(self._dice[i]),
                "called_tumour_slices": len(self._dice_called[i]),
                "healthy_slices": len(self._healthy_masks[i]),
            }
            for i, (rule, offset) in enumerate(self.pairs)
        ]

    def best(self, rule: str | None = None) -> tuple[str, float]:
        """The (rule, offset) with the highest median Dice on the tumour slices called tumour (on all tumour
        slices when none is), among ``rule``'s offsets when given; ties go to the lower healthy FP rate,
        then the earlier rule, then the smaller offset."""
        if self.tumour_slices == 0:
            raise GpedgeError(
                "cannot choose a mask rule and offset: the sweep split has no slice with a ground-truth tumour mask; "
                "sweep on data with segmentations or leave out --offsets and --mask-rules"
            )
        order = {name: k for k, name in enumerate(self.rules)}
        rows = [r for r in self.table() if rule is None or r["rule"] == rule]
        key = "dice_median_called" if self._dice_called[0] else "dice_median"
        best = min(rows, key=lambda r: (-r[key], r["healthy_fp_rate"] or 0.0, order[r["rule"]], r["offset"]))
        return best["rule"], float(best["offset"])

    def best_offset(self) -> float:
        """The best candidate's offset (see :meth:`best`)."""
        return self.best()[1]

    def per_rule(self) -> dict[str, dict[str, Any]]:
        """Each rule at its own best offset: ``offset``, ``dice_median``, ``dice_median_called``, ``iou_median``, ``healthy_fp_rate``."""
        rows = {(r["rule"], r["offset"]): r for r in self.table()}
        summary = {}
        for name in self.rules:
            row = rows[self.best(name)]
            summary[name] = {key: row[key] for key in ("offset", "dice_median", "dice_median_called", "iou_median", "healthy_fp_rate")}
        return summary


def sweep_rules(
    predictor: Any,
    samples: Sequence[dict[str, Any]],
    labels_map: np.ndarray,
    pairs: Sequence[tuple[str, float]],
    progress: Callable[[int, int], None] | None = None,
) -> RuleSweep:
    """Run ``predictor`` (a :class:`gpedge.Predictor`) with every (rule, offset) on ``samples`` and score the masks.

    ``samples`` are data-set samples (``image``, ``mask``, ``label``); ``labels_map`` maps their
    labels to the package's classes. Candidates that differ only in their host-side step share one
    model run (:meth:`gpedge.Predictor.predict_rules`). The first candidate's group runs on every
    slice; the others only on the slices it called a tumour class: the class does not depend on the
    rule, and a slice called healthy has an empty mask under every rule.
    """
    sweep = RuleSweep(pairs)
    groups: dict[tuple[str, float], list[str]] = {}
    for rule, offset in sweep.pairs:
        groups.setdefault((parse_mask_rule(rule).base, offset), []).append(rule)
    (first_key, first_rules), *others = groups.items()
    no_tumour = predictor.no_tumour_class
    step = predictor.batch_size
    for start in range(0, len(samples), step):
        batch = [samples[i] for i in range(start, min(start + step, len(samples)))]
        images = [sample["image"] for sample in batch]
        healthy = [no_tumour is not None and int(labels_map[s["label"]]) == no_tumour for s in batch]
        offset = first_key[1]
        first = predictor.predict_rules(images, offset, first_rules)
        for rule, results in first.items():
            for sample, is_healthy, result in zip(batch, healthy, results):
                sweep.add(rule, offset, result.mask, sample["mask"], is_healthy, result.is_tumour)
        shapes = [result.mask.shape for result in first[first_rules[0]]]
        called = [k for k, result in enumerate(first[first_rules[0]]) if result.is_tumour]
        for (_, offset), rules in others:
            by_rule = predictor.predict_rules([images[k] for k in called], offset, rules) if called else {}
            for rule in rules:
                found = dict(zip(called, by_rule.get(rule, [])))
                for k, (sample, is_healthy) in enumerate(zip(batch, healthy)):
                    mask = found[k].mask if k in found else np.zeros(shapes[k], dtype=bool)
                    sweep.add(rule, offset, mask, sample["mask"], is_healthy, k in found)
        if progress is not None:
            progress(start + len(batch), len(samples))
    return sweep


CRITERION = ("highest median Dice on the val tumour slices the model calls tumour (ties: lower healthy FP rate, "
             "then the earlier rule, then the smaller offset)")


def tune(
    predictor: Any,
    samples: Sequence[dict[str, Any]],
    labels_map: np.ndarray,
    pairs: Sequence[tuple[str, float]],
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Sweep ``pairs`` on ``samples`` (validation slices) through ``predictor``, store the best (rule, offset)
    in its package's manifest and return the record of the choice (candidates, per-rule bests, table)."""
    package = predictor.package
    sweep = sweep_rules(predictor, samples, labels_map, pairs, progress)
    rule, offset = sweep.best()
    previous = (package.mask_rule, package.offset)
    set_package_rule(package, rule, offset)
    return {
        "split": "val",
        "slices": len(samples),
        "tumour_slices": sweep.tumour_slices,
        "criterion": CRITERION,
        "mask_source": "runtime Result.mask with each rule and offset fed to the graph: what gpedge infer applies",
        "previous_rule": previous[0],
        "previous_offset": previous[1],
        "best_rule": rule,
        "best_offset": offset,
        "per_rule": sweep.per_rule(),
        "table": sweep.table(),
    }


def set_package_rule(package: ModelPackage, rule: str, offset: float) -> None:
    """Write ``mask_rule.rule`` and ``mask_rule.offset`` into the package manifest atomically, keeping every other field."""
    offset = parse_mask_rule(rule).check_offset(offset)
    path = package.root / MANIFEST
    manifest = json.loads(path.read_text())
    manifest["mask_rule"]["rule"] = parse_mask_rule(rule).name
    manifest["mask_rule"]["offset"] = offset
    atomic_write_json(path, manifest)
    package.manifest = manifest
