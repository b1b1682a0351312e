"""Draw docs/synthetic.png: training-family and held-out-family patients, four contrasts, tumour outline.

Usage: python scripts/synthetic_figure.py [OUT.png] [--size 128 --slices 48 --seed 7]   (needs the [eval] extra)
Each row is one patient at the slice with the largest tumour area among the slices with at least
40 % of the largest head area (a mid-brain slice for healthy patients), shown as every gpedge reader shows it; the last column repeats T1CE with the
segmentation outlined (red: enhancing, yellow: necrosis / non-enhancing, cyan: oedema).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from gpedge.data.synthetic import CONTRASTS, display_slices, synthesise_patient

ROWS = (("train", "HGG"), ("train", "LGG"), ("train", "HGG"), ("train", None),
        ("heldout", "HGG"), ("heldout", "LGG"), ("heldout", "HGG"), ("heldout", None))
OUTLINES = ((4, "red"), (1, "yellow"), (2, "cyan"))


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "synthetic.png")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--slices", type=int, default=48)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    fig, axes = plt.subplots(len(ROWS), 5, figsize=(10, 2.05 * len(ROWS)))
    for row, (family, grade) in enumerate(ROWS):
        patient = synthesise_patient(np.random.default_rng([args.seed, row]), grade, (args.size, args.size, args.slices), family)
        seg = display_slices(patient.seg)
        t1 = display_slices(patient.volumes["t1"])
        head = t1 > 0.1 * np.percentile(t1, 99)
        level = head.sum(axis=(1, 2)) >= 0.4 * head.sum(axis=(1, 2)).max()
        area = (seg > 0).sum(axis=(1, 2)) * level
        k = int(area.argmax()) if area.any() else int(0.6 * args.slices)
        for col, name in enumerate(CONTRASTS):
            image = display_slices(patient.volumes[name])[k]
            axes[row, col].imshow(image, cmap="gray", vmin=0, vmax=np.percentile(image, 99.7))
        axes[row, 4].imshow(display_slices(patient.volumes["t1ce"])[k], cmap="gray", vmin=0,
                            vmax=np.percentile(display_slices(patient.volumes["t1ce"])[k], 99.7))
        for label, colour in OUTLINES:
            if (seg[k] == label).any():
                axes[row, 4].contour(seg[k] == label, levels=[0.5], colors=colour, linewidths=0.7)
        skull = "skull" if patient.params["skull"] else "stripped"
        axes[row, 0].set_ylabel(f"{family}\n{grade or 'healthy'}, {skull}", fontsize=8)
        for ax in axes[row]:
            ax.set_xticks([])
            ax.set_yticks([])
    for col, name in enumerate([*CONTRASTS, "t1ce + seg"]):
        axes[0, col].set_title(name, fontsize=9)
    fig.tight_layout(pad=0.3)
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
