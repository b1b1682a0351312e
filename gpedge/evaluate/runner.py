"""``gpedge evaluate``: run a model package through the runtime SDK on a data split and score it.

One :class:`gpedge.Predictor` (the deployed code path, opened and verified once) serves the
mask-rule sweep (:mod:`.sweep`), the scoring (:mod:`.scoring`) and the overlay examples
(:mod:`.overlays`); the Grad-CAM comparison (:mod:`.comparison`) needs the torch network.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from gpedge._version import __version__
from gpedge.atomic import atomic_write_json
from gpedge.errors import DataError
from gpedge.evaluate.metrics import classification_metrics
from gpedge.evaluate.overlays import overlay_examples
from gpedge.evaluate.plots import evaluation_figures
from gpedge.evaluate.report import evaluation_blocks, write_report
from gpedge.evaluate.scoring import SliceOutcome, score_split, segmentation_metrics
from gpedge.evaluate.selection import class_index_map, select_split
from gpedge.evaluate.sweep import candidates, tune
from gpedge.package import ModelPackage

Progress = Callable[[str, int, int], None]


@dataclass
class EvaluateOptions:
    """What ``gpedge evaluate`` was asked to do (see the command's help for each field)."""

    model: Path
    data: Path
    out: Path
    format: str = "auto"
    split: str = "test"
    backend: str = "auto"
    offsets: list[float] | None = None
    mask_rules: list[str] | None = None
    batch_size: int = 8
    bootstrap: int = 1000
    seed: int = 0
    posthoc: bool = True


@dataclass
class Evaluation:
    """Everything the report needs: the metrics and the per-slice outcomes of the evaluated subset."""

    metrics: dict[str, Any]
    outcomes: list[SliceOutcome]
    subset: Any


def package_sha256(package: ModelPackage) -> str:
    """Identity of a package's contents: sha256 over its files' names and sha256s (the manifest,
    whose mask offset evaluation may tune, is not part of it)."""
    listing = {name: entry["sha256"] for name, entry in sorted(package.manifest["files"].items())}
    return hashlib.sha256(json.dumps(listing, sort_keys=True).encode()).hexdigest()


def _stage(progress: Progress | None, stage: str) -> Callable[[int, int], None] | None:
    return None if progress is None else (lambda done, total: progress(stage, done, total))


def tune_rule(predictor: Any, dataset: Any, labels_map: np.ndarray, options: EvaluateOptions,
              progress: Progress | None) -> dict[str, Any]:
    """Sweep ``options.mask_rules`` (default: the package's rule) x ``options.offsets`` (default: each rule's
    :data:`~gpedge.evaluate.sweep.DEFAULT_SWEEP`) on the package's validation split; store the best in its manifest."""
    pairs = candidates(options.mask_rules or [predictor.mask_rule], options.offsets)
    val, selection = select_split(dataset, predictor.package, "val")
    return {"patients": selection["patients"], **tune(predictor, val, labels_map, pairs, _stage(progress, "mask-rule sweep (val)"))}


def evaluate(predictor: Any, options: EvaluateOptions, progress: Progress | None = None) -> Evaluation:
    """Evaluate ``predictor``'s package on ``options.data`` (mask-rule sweep first when asked); nothing written yet."""
    from gpedge.data import open_dataset

    package = predictor.package
    dataset = open_dataset(options.data, format=options.format, channels=package.channels)
    labels_map = class_index_map(dataset, package)
    subset, selection = select_split(dataset, package, options.split)
    tuned = options.offsets is not None or options.mask_rules is not None
    sweep = tune_rule(predictor, dataset, labels_map, options, progress) if tuned else None
    outcomes = score_split(predictor, subset, labels_map, _stage(progress, f"evaluating ({options.split})"))
    if not outcomes:
        raise DataError(f"the '{options.split}' split of {options.data} has no slices to evaluate")
    metrics: dict[str, Any] = {
        "gpedge_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": {
            "package": str(package.root.resolve()),
            "package_sha256": package_sha256(package),
            "arch": package.manifest["model"].get("arch"),
            "classes": package.classes,
            "class_bias": package.class_bias,
        },
        "data": {
            "path": str(Path(options.data).resolve()),
            "format": dataset.format,
            **selection,
            "slices": len(outcomes),
        },
        "backend": predictor.backend_description,
        "num_slices": len(outcomes),
        "num_patients": len({o.patient for o in outcomes}),
        **classification_metrics([o.label for o in outcomes], np.stack([o.probabilities for o in outcomes]), package.classes),
        "mask_rule": predictor.mask_rule,
        "offset": predictor.offset,
        "offset_sweep": sweep,
        "mask_source": "runtime Result.mask (the deployed mask rule) at the data set's slice resolution",
        "dice_definition": "Dice and IoU per tumour slice (ground truth non-empty): Dice=(2I+1)/(|P|+|G|+1), IoU=(I+1)/(|P∪G|+1)",
        **segmentation_metrics(outcomes, package.classes, options.bootstrap, options.seed),
    }
    return Evaluation(metrics=metrics, outcomes=outcomes, subset=subset)


def posthoc_comparison(package: ModelPackage, evaluation: Evaluation, options: EvaluateOptions,
                       progress: Progress | None) -> dict[str, Any]:
    """The inherent vs post-hoc table, or the reason it was skipped."""
    if not options.posthoc:
        return {"skipped": "disabled with --no-posthoc"}
    if importlib.util.find_spec("torch") is None:
        return {"skipped": "torch is not installed (pip install 'gpedge[train]' to compare with Grad-CAM)"}
    indices = [o.index for o in evaluation.outcomes if o.tumour]
    if not indices:
        return {"skipped": "no slice of the split has a ground-truth tumour mask"}
    from gpedge.evaluate.comparison import compare_explanations

    return compare_explanations(package, evaluation.subset, indices, options.batch_size, progress=_stage(progress, "post-hoc maps"))


def run(options: EvaluateOptions, progress: Progress | None = None) -> dict[str, Any]:
    """Evaluate, compare with post-hoc maps, and write metrics.json, report.md/.html and figures."""
    from gpedge.runtime.predictor import Predictor

    out_dir = Path(options.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"--out {out_dir} exists and is not a folder; choose a folder for the report")
    package = ModelPackage.load(options.model)
    with Predictor(package, backend=options.backend, batch_size=options.batch_size) as predictor:
        evaluation = evaluate(predictor, options, progress)
        evaluation.metrics["posthoc_comparison"] = posthoc_comparison(package, evaluation, options, progress)
        examples = overlay_examples(predictor, evaluation.outcomes, evaluation.subset)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = evaluation_figures(evaluation.metrics, evaluation.outcomes, examples, out_dir)
    write_report(out_dir, "gpedge evaluation report", evaluation_blocks(evaluation.metrics, figures))
    atomic_write_json(out_dir / "metrics.json", evaluation.metrics)
    return evaluation.metrics
