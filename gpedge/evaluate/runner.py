"""``gpedge evaluate``: run a model package through the runtime SDK on a data split and score it.

The network runs once per slice through :class:`gpedge.Predictor` (the deployed code path);
everything else (masks per offset, clean-up, metrics, post-hoc maps) is computed on the host
at the data set's slice resolution.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from gpedge._version import __version__
from gpedge.errors import DataError
from gpedge.evaluate import plots
from gpedge.evaluate.bootstrap import median_ci
from gpedge.evaluate.metrics import classification_metrics, dice_score, iou_score, median_or_none, spearman
from gpedge.evaluate.plots import OverlayExample
from gpedge.evaluate.report import evaluation_blocks, write_report
from gpedge.evaluate.selection import class_index_map, select_split
from gpedge.evaluate.sweep import OffsetSweep
from gpedge.atomic import atomic_write_json
from gpedge.package import MANIFEST, ModelPackage
from gpedge.postprocess import clean_mask

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
    batch_size: int = 8
    bootstrap: int = 1000
    seed: int = 0
    posthoc: bool = True


@dataclass
class SliceOutcome:
    """Scores of one evaluated slice (no images kept)."""

    index: int
    patient: str
    slice: int
    label: int
    predicted: int
    probabilities: np.ndarray
    tumour: bool
    healthy: bool
    mask_empty: bool
    clean_empty: bool
    dice: float | None = None
    iou: float | None = None
    dice_clean: float | None = None
    iou_clean: float | None = None

    @property
    def confidence(self) -> float:
        return float(self.probabilities[self.predicted])


@dataclass
class Evaluation:
    """Everything the report needs: the metrics and the per-slice outcomes."""

    metrics: dict[str, Any]
    outcomes: list[SliceOutcome]
    subset: Any
    labels: np.ndarray


def package_sha256(package: ModelPackage) -> str:
    """Identity of a package's contents: sha256 over its files' names and sha256s (the manifest,
    whose mask offset evaluation may tune, is not part of it)."""
    listing = {name: entry["sha256"] for name, entry in sorted(package.manifest["files"].items())}
    return hashlib.sha256(json.dumps(listing, sort_keys=True).encode()).hexdigest()


def iter_predictions(predictor: Any, subset: Any, batch_size: int) -> Iterator[tuple[int, dict[str, Any], Any]]:
    """``(index, sample, Result)`` for every slice of ``subset``, ``batch_size`` slices per runtime call."""
    for start in range(0, len(subset), batch_size):
        indices = range(start, min(start + batch_size, len(subset)))
        samples = [subset[i] for i in indices]
        results = predictor.predict([s["image"] for s in samples])
        yield from zip(indices, samples, results)


def set_package_offset(package: ModelPackage, offset: float) -> None:
    """Write ``mask_rule.offset`` into the package manifest atomically, keeping every other field."""
    path = package.root / MANIFEST
    manifest = json.loads(path.read_text())
    manifest["mask_rule"]["offset"] = float(offset)
    atomic_write_json(path, manifest)
    package.manifest = manifest


def _report(progress: Progress | None, stage: str, done: int, total: int) -> None:
    if progress is not None:
        progress(stage, done, total)


def sweep_offsets(
    package: ModelPackage, dataset: Any, labels_map: np.ndarray, options: EvaluateOptions, progress: Progress | None
) -> dict[str, Any]:
    """Sweep ``options.offsets`` on the package's validation split and store the best in the manifest."""
    from gpedge.runtime.predictor import Predictor

    val, selection = select_split(dataset, package, "val")
    sweep = OffsetSweep(options.offsets or [])
    no_tumour = package.no_tumour_class
    with Predictor(model=package.root, backend=options.backend, batch_size=options.batch_size) as predictor:
        for i, sample, result in iter_predictions(predictor, val, options.batch_size):
            label = int(labels_map[sample["label"]])
            sweep.add(result.heatmap, sample["mask"], result.class_index == no_tumour, label == no_tumour)
            _report(progress, "offset sweep (val)", i + 1, len(val))
    best = sweep.best_offset()
    previous = package.offset
    set_package_offset(package, best)
    return {
        "split": "val",
        "patients": selection["patients"],
        "slices": len(val),
        "criterion": "highest median Dice on val tumour slices (ties: lower healthy FP rate, then smaller offset)",
        "mask_source": "host mask rule (gpedge.postprocess.mask_from_heatmap) on the predicted class's map at slice resolution",
        "previous_offset": previous,
        "best_offset": best,
        "table": sweep.table(),
    }


def score_split(
    package: ModelPackage, subset: Any, labels_map: np.ndarray, options: EvaluateOptions, progress: Progress | None
) -> tuple[list[SliceOutcome], str]:
    """Run the runtime on every slice of ``subset`` and score its prediction and mask.

    Returns the outcomes and a description of the backend that ran."""
    from gpedge.runtime.predictor import Predictor

    no_tumour = package.no_tumour_class
    outcomes = []
    with Predictor(model=package.root, backend=options.backend, batch_size=options.batch_size) as predictor:
        for i, sample, result in iter_predictions(predictor, subset, options.batch_size):
            truth = sample["mask"]
            mask = np.asarray(result.mask, dtype=bool)
            cleaned = clean_mask(mask).astype(bool) if mask.any() else mask
            label = int(labels_map[sample["label"]])
            tumour = bool(truth.any())
            outcome = SliceOutcome(
                index=i,
                patient=str(sample["patient"]),
                slice=int(sample["slice"]),
                label=label,
                predicted=int(result.class_index),
                probabilities=np.array([result.probabilities[c] for c in package.classes]),
                tumour=tumour,
                healthy=no_tumour is not None and label == no_tumour,
                mask_empty=not mask.any(),
                clean_empty=not cleaned.any(),
            )
            if tumour:
                outcome.dice, outcome.iou = dice_score(mask, truth), iou_score(mask, truth)
                outcome.dice_clean, outcome.iou_clean = dice_score(cleaned, truth), iou_score(cleaned, truth)
            outcomes.append(outcome)
            _report(progress, f"evaluating ({options.split})", i + 1, len(subset))
        backend = predictor.backend_description
    return outcomes, backend


def _fp_rate(outcomes: Sequence[SliceOutcome], clean: bool) -> float | None:
    flags = [not (o.clean_empty if clean else o.mask_empty) for o in outcomes if o.healthy]
    return float(np.mean(flags)) if flags else None


def segmentation_metrics(outcomes: Sequence[SliceOutcome], class_names: Sequence[str], options: EvaluateOptions) -> dict[str, Any]:
    """Dice/IoU medians (CI by patient), per-class Dice, healthy FP rate, with and without clean-up."""
    tumour = [o for o in outcomes if o.tumour]
    dice = [o.dice for o in tumour]
    out: dict[str, Any] = {
        "tumour_slices": len(tumour),
        "healthy_slices": sum(o.healthy for o in outcomes),
        "dice_median": median_or_none(dice),
        "dice_ci95": None,
        "dice_ci_method": None,
        "iou_median": median_or_none([o.iou for o in tumour]),
        "dice_per_class_median": {
            name: median_or_none([o.dice for o in tumour if o.label == k]) for k, name in enumerate(class_names)
        },
        "healthy_fp_rate": _fp_rate(outcomes, clean=False),
        "cleanup": {
            "method": "gpedge.postprocess.clean_mask (drop objects < 64 px, fill holes < 128 px, closing disk r=2, largest component)",
            "dice_median": median_or_none([o.dice_clean for o in tumour]),
            "iou_median": median_or_none([o.iou_clean for o in tumour]),
            "healthy_fp_rate": _fp_rate(outcomes, clean=True),
        },
        "dice_vs_confidence_spearman": spearman([o.confidence for o in tumour], dice),
    }
    if tumour:
        ci = median_ci(dice, [o.patient for o in tumour], n_resamples=options.bootstrap, seed=options.seed)
        out["dice_ci95"], out["dice_ci_method"] = ci.as_list(), ci.method
    return out


def evaluate(options: EvaluateOptions, progress: Progress | None = None) -> Evaluation:
    """Evaluate ``options.model`` on ``options.data`` and return the metrics (nothing written yet)."""
    from gpedge.data import open_dataset

    package = ModelPackage.load(options.model)
    dataset = open_dataset(options.data, format=options.format, channels=package.channels)
    labels_map = class_index_map(dataset, package)
    subset, selection = select_split(dataset, package, options.split)
    sweep = sweep_offsets(package, dataset, labels_map, options, progress) if options.offsets else None
    outcomes, backend = score_split(package, subset, labels_map, options, progress)
    if not outcomes:
        raise DataError(f"the '{options.split}' split of {options.data} has no slices to evaluate")
    y_true = np.array([o.label for o in outcomes])
    probabilities = np.stack([o.probabilities for o in outcomes])
    metrics: dict[str, Any] = {
        "gpedge_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": {
            "package": str(package.root.resolve()),
            "package_sha256": package_sha256(package),
            "arch": package.manifest["model"].get("arch"),
            "classes": package.classes,
        },
        "data": {
            "path": str(Path(options.data).resolve()),
            "format": dataset.format,
            "split": options.split,
            "patients": selection["patients"],
            "missing_patients": selection["missing_patients"],
            "slices": len(outcomes),
        },
        "backend": backend,
        "num_slices": len(outcomes),
        "num_patients": len({o.patient for o in outcomes}),
        **classification_metrics(y_true, probabilities, package.classes),
        "offset": package.offset,
        "offset_sweep": sweep,
        "mask_source": "runtime Result.mask (the deployed mask rule) at the data set's slice resolution",
        "dice_definition": "Dice and IoU per tumour slice (ground truth non-empty): Dice=(2I+1)/(|P|+|G|+1), IoU=(I+1)/(|P∪G|+1)",
        **segmentation_metrics(outcomes, package.classes, options),
    }
    return Evaluation(metrics=metrics, outcomes=outcomes, subset=subset, labels=y_true)


def posthoc_comparison(evaluation: Evaluation, options: EvaluateOptions, progress: Progress | None) -> dict[str, Any]:
    """The inherent vs post-hoc table, or the reason it was skipped."""
    if not options.posthoc:
        return {"skipped": "disabled with --no-posthoc"}
    if importlib.util.find_spec("torch") is None:
        return {"skipped": "torch is not installed (pip install 'gpedge[train]' to compare with Grad-CAM)"}
    indices = [o.index for o in evaluation.outcomes if o.tumour]
    if not indices:
        return {"skipped": "no slice of the split has a ground-truth tumour mask"}
    from gpedge.evaluate.comparison import compare_explanations

    package = ModelPackage.load(options.model)
    return compare_explanations(
        package, evaluation.subset, indices, options.batch_size,
        progress=None if progress is None else (lambda done, total: progress("post-hoc maps", done, total)),
    )


def overlay_examples(evaluation: Evaluation, options: EvaluateOptions, per_kind: int = 2) -> list[OverlayExample]:
    """Best, median and worst Dice tumour slices, re-predicted through the runtime for their masks."""
    from gpedge.runtime.predictor import Predictor

    ranked = sorted((o for o in evaluation.outcomes if o.tumour), key=lambda o: (o.dice, o.index))
    if not ranked:
        return []
    middle = max(0, len(ranked) // 2 - per_kind // 2)
    picks = {"best": ranked[::-1][:per_kind], "median": ranked[middle : middle + per_kind], "worst": ranked[:per_kind]}
    chosen: list[tuple[str, SliceOutcome]] = []
    for kind, group in picks.items():
        chosen += [(kind, o) for o in group if all(o is not seen for _, seen in chosen)]
    package = ModelPackage.load(options.model)
    with Predictor(model=package.root, backend=options.backend) as predictor:
        samples = [evaluation.subset[o.index] for _, o in chosen]
        results = predictor.predict([s["image"] for s in samples])
    return [
        OverlayExample(
            title=f"{kind}: {o.patient} slice {o.slice}\nDice {o.dice:.3f}, {package.classes[o.label]} → "
            f"{package.classes[o.predicted]} ({o.confidence:.2f})",
            image=result.image,
            truth=sample["mask"],
            predicted=result.mask,
        )
        for (kind, o), sample, result in zip(chosen, samples, results)
    ]


def write_figures(evaluation: Evaluation, examples: list[OverlayExample], out_dir: Path) -> dict[str, str]:
    """All report figures as PNGs in ``out_dir``; returns figure key -> file name."""
    metrics, outcomes = evaluation.metrics, evaluation.outcomes
    classes = metrics["model"]["classes"]
    tumour = [o for o in outcomes if o.tumour]
    files = {
        "confusion": "confusion_matrix.png",
        "roc": "roc_curves.png",
        "pr": "pr_curves.png",
        "dice_by_class": "dice_by_class.png",
        "dice_vs_confidence": "dice_vs_confidence.png",
    }
    plots.confusion_matrix(metrics["confusion_matrix"], classes, out_dir / files["confusion"])
    probabilities = np.stack([o.probabilities for o in outcomes])
    plots.roc_and_pr(evaluation.labels, probabilities, classes, out_dir / files["roc"], out_dir / files["pr"])
    plots.dice_by_class([o.dice for o in tumour], [o.label for o in tumour], classes, out_dir / files["dice_by_class"])
    plots.dice_vs_confidence(
        [o.dice for o in tumour], [o.confidence for o in tumour],
        metrics["dice_vs_confidence_spearman"]["rho"], out_dir / files["dice_vs_confidence"],
    )
    if examples:
        files["overlays"] = "overlays.png"
        plots.overlays(examples, out_dir / files["overlays"])
    return files


def run(options: EvaluateOptions, progress: Progress | None = None) -> dict[str, Any]:
    """Evaluate, compare with post-hoc maps, and write metrics.json, report.md/.html and figures."""
    out_dir = Path(options.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"--out {out_dir} exists and is not a folder; choose a folder for the report")
    evaluation = evaluate(options, progress)
    evaluation.metrics["posthoc_comparison"] = posthoc_comparison(evaluation, options, progress)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = write_figures(evaluation, overlay_examples(evaluation, options), out_dir)
    write_report(out_dir, "gpedge evaluation report", evaluation_blocks(evaluation.metrics, figures))
    atomic_write_json(out_dir / "metrics.json", evaluation.metrics)
    return evaluation.metrics
