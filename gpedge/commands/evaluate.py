"""``gpedge evaluate``: classification, weak-segmentation and explanation quality of a model package."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from gpedge.graph.contract import MASK_RULES, post_step_names


def main(
    model: Path = typer.Option(..., "--model", help="Model package folder (made by 'gpedge export'), or a bundled model: default, gp-unet-t1ce, gp-unet-synth."),
    data: Path = typer.Option(..., "--data", help="Data set root: BraTS 2020 folder, Figshare .mat files or an image folder."),
    out: Path = typer.Option(..., "--out", help="Report folder: metrics.json, report.md, report.html and PNG figures."),
    format: str = typer.Option("auto", "--format", help="auto, brats, figshare or folder."),
    split: str = typer.Option("test", "--split", help="test or val (the package's patients); all (external data, refused when a patient ID is one the model trained on); external (every slice, IDs not checked: other patients that share the package's IDs)."),
    backend: str = typer.Option("auto", "--backend", help="Runtime backend: auto, onnxruntime, tensorrt or torch."),
    mask_rules: Optional[str] = typer.Option(
        None, "--mask-rules",
        help=f"Comma-separated mask rules to sweep on the val split ({', '.join(MASK_RULES)}, "
        f"each optionally {post_step_names()}); with --offsets (or each rule's default offsets) the (rule, offset) of the best "
        "median Dice is written into the package manifest and used for the evaluation.",
    ),
    offsets: Optional[str] = typer.Option(
        None, "--offsets",
        help="Comma-separated offsets to sweep on the val split for every rule of --mask-rules (default: the package's "
        "rule), e.g. 0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0; relative rules take fractions in [-1, 1].",
    ),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Slices per runtime call."),
    bootstrap: int = typer.Option(1000, "--bootstrap", min=0, help="Bootstrap resamples (over patients) for the Dice 95% CI."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap."),
    posthoc: bool = typer.Option(True, "--posthoc/--no-posthoc", help="Compare inherent heatmaps with Grad-CAM and Grad-CAM++ (needs torch)."),
) -> None:
    """Evaluate a model package on a data split: metrics, mask-rule sweep, inherent vs post-hoc maps, report."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from gpedge.evaluate.runner import EvaluateOptions, run
    from gpedge.evaluate.sweep import parse_offsets, parse_rules

    options = EvaluateOptions(
        model=model, data=data, out=out, format=format, split=split, backend=backend,
        offsets=parse_offsets(offsets) if offsets is not None else None,
        mask_rules=parse_rules(mask_rules) if mask_rules is not None else None,
        batch_size=batch_size, bootstrap=bootstrap, seed=seed, posthoc=posthoc,
    )
    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        tasks: dict[str, int] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done)

        metrics = run(options, progress)
    _summary(console, metrics, out)


def _summary(console, metrics: dict, out: Path) -> None:
    from rich.table import Table

    from gpedge.evaluate.report import fmt

    table = Table(title=f"{metrics['num_slices']} slices, {metrics['num_patients']} patients ({metrics['data']['split']})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    ci = metrics["dice_ci95"]
    for name, value in (
        ("accuracy", fmt(metrics["accuracy"])),
        ("F1 macro", fmt(metrics["f1_macro"])),
        ("Dice median", fmt(metrics["dice_median"]) + ("" if ci is None else f" [{ci[0]:.3f}, {ci[1]:.3f}]")),
        ("IoU median", fmt(metrics["iou_median"])),
        ("healthy FP rate", fmt(metrics["healthy_fp_rate"])),
        ("mask rule", f"{metrics['mask_rule']} (offset {metrics['offset']:g})"),
    ):
        table.add_row(name, value)
    console.print(table)
    console.print(f"report: {out / 'report.html'}  metrics: {out / 'metrics.json'}")
