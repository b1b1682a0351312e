"""Print the README's results tables (Markdown) from ``WORK/<arch>/{eval,external,heldout}/metrics.json``.

Usage: python scripts/results_table.py WORK_DIR ARCH [ARCH ...]
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

#: Evaluations of each package besides its own test patients, as ``train_eval_all.sh`` names them.
UNSEEN = {"external": "32 more training-family patients", "heldout": "24 held-out-family patients"}


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def row(work: Path, arch: str) -> str:
    metrics = _load(work / arch / "eval" / "metrics.json")
    manifest = _load(work / arch / "package" / "manifest.json")
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


def unseen_row(work: Path, arch: str) -> str | None:
    cells = []
    for name in UNSEEN:
        path = work / arch / name / "metrics.json"
        if not path.exists():
            return None
        m = _load(path)
        cells.append(f"{_fmt(m['f1_macro'])} | {_fmt(m['dice_median'])} | {_fmt(m['healthy_fp_rate'])}")
    return f"| {arch} | " + " | ".join(cells) + " |"


def main(work: Path, archs: list[str]) -> None:
    print(
        "| network | parameters | macro F1 | accuracy | median Dice [95% CI] | median IoU | healthy FP rate "
        "| Grad-CAM Dice | mask rule | test slices / patients |"
    )
    print("| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | --- |")
    for arch in archs:
        print(row(work, arch))
    rows = [r for r in (unseen_row(work, arch) for arch in archs) if r]
    if rows:
        print()
        print("| network | " + " | ".join(f"{label}: macro F1 | median Dice | healthy FP" for label in UNSEEN.values()) + " |")
        print("| --- |" + " ---: | ---: | ---: |" * len(UNSEEN))
        print("\n".join(rows))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
