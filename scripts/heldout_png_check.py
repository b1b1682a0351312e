"""Issue 9's check of a model on unseen single-slice PNGs: tumour vs healthy, mask Dice, heatmap peak.

Reads an image folder as ``gpedge synth --format png`` writes it (``DATA/{Healthy,LGG,HGG}/<name>.png``
with ``<name>_mask.png``), runs every image through the runtime (``gpedge.Predictor``, the mask rule
``gpedge infer`` applies) and reports per image and in total: tumour vs healthy right, the mask's Dice
with the ground truth on tumour images, and whether the predicted class's heatmap peaks inside the
tumour (the pointing game). Optionally writes a contact sheet of the overlays (heatmap, mask in red,
ground truth in green) for looking at them. A model with several channels reads each image's other
contrasts from folders of the same layout (``--contrast NAME=DIR``, as ``gpedge synth --format png
--channel NAME`` writes them with the same seed); DATA supplies the channel not named.

    python scripts/heldout_png_check.py data/heldout-png --json check.json --overlays check-overlays.png
    python scripts/heldout_png_check.py data/heldout-png --cut-columns 45     # a 240 x 150 field of view
    python scripts/heldout_png_check.py held-t1ce --model gp-unet-synth --contrast t1=held-t1 --contrast t2=held-t2 \
        --contrast flair=held-flair
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from gpedge.data.folder import MASK_SUFFIX, NO_TUMOUR_NAMES
from gpedge.evaluate.metrics import dice_score, pointing_hit
from gpedge.preprocess import fit_image
from gpedge.runtime.predictor import Predictor


def check(data: Path, predictor: Predictor, contrasts: dict[str, Path] | None = None,
          cut_columns: int = 0) -> tuple[list[dict], list[np.ndarray]]:
    """One record per image of ``data`` and the overlays (RGB, ground truth outlined in green); ``contrasts``:
    the folders holding each image's other channels, by channel name (a multi-channel model); ``cut_columns``:
    columns cut off each side of every image and its ground truth (a narrower field of view; one channel)."""
    import cv2

    records, overlays = [], []
    keep = np.s_[:, cut_columns : -cut_columns or None]
    for image in sorted(p for p in data.glob("*/*.png") if not p.stem.endswith(MASK_SUFFIX)):
        truth = (cv2.imread(str(image.with_name(f"{image.stem}{MASK_SUFFIX}.png")), cv2.IMREAD_GRAYSCALE) > 0)[keep]
        tumour = image.parent.name.lower() not in NO_TUMOUR_NAMES
        item = image if not contrasts else {
            name: contrasts[name] / image.relative_to(data) if name in contrasts else image for name in predictor.channels
        }
        if cut_columns:
            item = cv2.imread(str(image), cv2.IMREAD_UNCHANGED).astype(np.float32)[keep]
        result = predictor.predict(item)[0]
        predicted_tumour = result.is_tumour
        records.append({
            "file": str(image.relative_to(data)),
            "truth": image.parent.name,
            "label": result.label,
            "tumour_right": bool(predicted_tumour == tumour),
            "dice": dice_score(result.mask, truth) if tumour else None,
            "peak_in_tumour": pointing_hit(result.heatmap, truth, 0.0) if tumour else None,
            "out_of_distribution": result.out_of_distribution,
        })
        overlays.append(_overlay(result, truth))
    return records, overlays


def _overlay(result, truth: np.ndarray) -> np.ndarray:
    """RGB: the scan, the predicted class's heatmap (40 %), the mask in red and the ground truth in green."""
    import cv2

    image = result.image.astype(np.float32)
    grey = np.uint8(255 * image / max(float(image.max()), 1e-6))
    heat = np.clip(result.heatmap, 0, None)
    heat = cv2.applyColorMap(np.uint8(255 * heat / max(float(heat.max()), 1e-6)), cv2.COLORMAP_INFERNO)[..., ::-1]
    rgb = np.uint8(0.6 * np.stack([grey] * 3, axis=-1) + 0.4 * heat) if result.is_tumour else np.stack([grey] * 3, axis=-1)
    rgb = np.ascontiguousarray(rgb)
    for mask, colour in ((result.mask, (255, 0, 0)), (truth, (0, 255, 0))):
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(rgb, contours, -1, colour, 1)
    text = "OOD" if result.out_of_distribution else f"{result.label} {result.probabilities[result.label]:.2f}"
    cv2.putText(rgb, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return rgb


def summary(records: list[dict], by_class: bool = True) -> dict:
    """Totals over ``records``; with ``by_class``, the same per true class plus the labels given to it."""
    tumour = [r for r in records if r["dice"] is not None]
    found = {
        "images": len(records),
        "tumour_vs_healthy_right": sum(r["tumour_right"] for r in records),
        "median_dice_tumour_images": float(np.median([r["dice"] for r in tumour])) if tumour else None,
        "peak_in_tumour": sum(r["peak_in_tumour"] for r in tumour),
        "tumour_images": len(tumour),
    }
    if by_class:
        found["by_class"] = {
            truth: {**summary(group, by_class=False), "labels": dict(sorted(Counter(r["label"] for r in group).items()))}
            for truth in sorted({r["truth"] for r in records})
            for group in [[r for r in records if r["truth"] == truth]]
        }
    return found


def _contrast(value: str, parser: argparse.ArgumentParser) -> tuple[str, Path]:
    name, sep, folder = value.partition("=")
    if not sep or not name or not folder:
        parser.error(f"--contrast {value!r}: expected NAME=DIR, e.g. flair=held-flair")
    return name.lower(), Path(folder)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--model", type=Path, help="model package or bundled model's name (default: the bundled default)")
    parser.add_argument("--contrast", action="append", default=[], metavar="NAME=DIR",
                        help="folder holding the images' contrast NAME (repeat for each channel DATA does not hold)")
    parser.add_argument("--mask-rule", help="mask rule (default: the package's)")
    parser.add_argument("--offset", type=float, help="the rule's parameter (default: the package's)")
    parser.add_argument("--cut-columns", type=int, default=0, metavar="N",
                        help="cut N columns off each side of every image and its ground truth (one-channel models)")
    parser.add_argument("--json", type=Path, help="write records and summary here")
    parser.add_argument("--overlays", type=Path, help="write a PNG contact sheet of the overlays here")
    args = parser.parse_args(argv)
    contrasts = dict(_contrast(value, parser) for value in args.contrast)
    if args.cut_columns < 0 or (args.cut_columns and contrasts):
        parser.error("--cut-columns takes N >= 0 and a one-channel model (no --contrast)")
    with Predictor(args.model, backend="onnxruntime", mask_rule=args.mask_rule, offset=args.offset) as predictor:
        missing = [name for name in predictor.channels if name not in contrasts]
        if len(missing) != 1:
            parser.error(f"the model reads {predictor.channels}; name with --contrast every channel but the one DATA holds")
        records, overlays = check(args.data, predictor, contrasts, args.cut_columns)
        found = {"model": str(predictor.package.root), "mask_rule": predictor.mask_rule, "offset": predictor.offset,
                 "data": str(args.data), "cut_columns": args.cut_columns, "summary": summary(records), "records": records}
    print(json.dumps(found["summary"]))
    if args.json:
        args.json.write_text(json.dumps(found, indent=2) + "\n")
    if args.overlays and overlays:
        import cv2

        size = min(min(o.shape[:2]) for o in overlays)
        tiles = [fit_image(o.transpose(2, 0, 1), (size, size)).transpose(1, 2, 0).astype(np.uint8) for o in overlays]
        columns = 6
        tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % columns)
        rows = [np.hstack(tiles[i : i + columns]) for i in range(0, len(tiles), columns)]
        cv2.imwrite(str(args.overlays), cv2.cvtColor(np.vstack(rows), cv2.COLOR_RGB2BGR))
    return 0


if __name__ == "__main__":
    sys.exit(main())
