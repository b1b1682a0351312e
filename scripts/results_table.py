"""Print the README's results table (Markdown) from ``WORK/<arch>/eval/metrics.json``.

Usage: python scripts/results_table.py WORK_DIR ARCH [ARCH ...]
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def row(work: Path, arch: str) -> str:
    metrics = json.loads((work / arch / "eval" / "metrics.json").read_text())
    manifest = json.loads((work / arch / "package" / "manifest.json").read_text())
    low, high = metrics["dice_ci95"] or (None, None)
    methods = metrics["posthoc_comparison"].get("methods", {})
    gradcam = methods.get("grad_cam", {}).get("dice_median")
    return (
        f"| {arch} (width {manifest['model']['options'].get('width')}) | {manifest['model']['num_params']:,} "
        f"| {_fmt(metrics['f1_macro'])} | {_fmt(metrics['accuracy'])} "
        f"| {_fmt(metrics['dice_median'])} [{_fmt(low)}, {_fmt(high)}] | {_fmt(metrics['iou_median'])} "
        f"| {_fmt(metrics['healthy_fp_rate'])} | {_fmt(gradcam)} | {metrics['mask_rule']} {metrics['offset']:g} "
        f"| {metrics['num_slices']} / {metrics['num_patients']} |"
    )


def main(work: Path, archs: list[str]) -> None:
    print(
        "| network | parameters | macro F1 | accuracy | median Dice [95% CI] | median IoU | healthy FP rate "
        "| Grad-CAM Dice | mask rule | test slices / patients |"
    )
    print("| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | --- |")
    for arch in archs:
        print(row(work, arch))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
