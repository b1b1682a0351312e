"""Experiment (docs/quality.md, "Neighbouring slices as extra channels"): each BraTS slice with its neighbours.

Trains and judges a network whose input is a slice's contrasts together with those of the ``K`` slices above
and below it (border slices repeated), to measure whether the grade of a slice without enhancing tumour, or a
small end section, is read better with the volume around it. gpedge's BraTS reader is patched in this process
only: the runtime, the export and the package format know nothing of it (a package could not hold such a model).

    python scripts/context_slices.py train --context 1 -- --arch gp-unet --width 16 --norm batch --epochs 8 \\
        --data DATA --channels t1,t2,t1ce,flair --image-size 96 --recipe cpu --seed 1701 --workers 1 --out RUN
    python scripts/context_slices.py evaluate RUN DATA --context 1 --split test     # or val, or all (every patient)
    python scripts/context_slices.py evaluate RUN DATA --context 1 --split all --step 3   # neighbours 3 slices away

``--context 0`` judges a plain run the same way. ``evaluate`` prints the raw decision of the network (argmax of
the logits, one pass, no class bias, no flip averaging): slices, macro F1, F1 per class, confusion matrix, as JSON.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def add_context(k: int, step: int = 1) -> None:
    """Patch the BraTS reader so that every slice carries its neighbours ``-k .. k`` (``step`` slices apart) as extra
    channels."""
    from gpedge.data import brats, loader

    read = brats.BratsSource.read

    def read_with_context(self, key):
        image, mask = read(self, key)
        patient, row = key
        last = self._open[patient][0].shape[0] - 1  # the patient's slices, opened by the read above
        parts = [image if offset == 0 else read(self, (patient, min(max(row + offset * step, 0), last)))[0]
                 for offset in range(-k, k + 1)]
        return np.concatenate(parts, axis=0), mask

    open_dataset = loader.open_dataset

    def open_with_context(*args, **kwargs):
        dataset = open_dataset(*args, **kwargs)
        dataset.channels = [c if offset == 0 else f"{c}{offset:+d}"
                            for offset in range(-k, k + 1) for c in dataset.channels]
        return dataset

    brats.BratsSource.read = read_with_context
    loader.open_dataset = open_with_context
    import gpedge.data

    gpedge.data.open_dataset = open_with_context


def evaluate(run: str, data: str, split: str) -> dict:
    import torch
    from sklearn.metrics import confusion_matrix, f1_score

    import gpedge.data
    from gpedge.runs import load_run

    model, config = load_run(run)
    contrasts = [c for c in config.channels if "+" not in c and "-" not in c]  # the centre slice's
    dataset = gpedge.data.open_dataset(data, format="brats", channels=contrasts, image_size=config.image_size)
    patients = set(dataset.patients) if split == "all" else set(config.split[split])
    chosen = [i for i, p in enumerate(dataset.patient_of) if p in patients]
    truth, predicted = [], []
    with torch.no_grad():
        for start in range(0, len(chosen), 64):
            batch = [dataset[i] for i in chosen[start:start + 64]]
            logits = model(torch.from_numpy(np.stack([b["image"] for b in batch])))[0]
            predicted += logits.argmax(1).tolist()
            truth += [b["label"] for b in batch]
    return {"run": run, "data": data, "split": split, "slices": len(truth),
            "macro_f1": round(float(f1_score(truth, predicted, average="macro")), 4),
            "f1": [round(float(v), 4) for v in f1_score(truth, predicted, average=None)],
            "confusion": confusion_matrix(truth, predicted).tolist()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="gpedge train with the neighbours as extra channels")
    train.add_argument("--context", type=int, default=1)
    train.add_argument("args", nargs=argparse.REMAINDER, help="gpedge train's options, after --")
    train.set_defaults(step=1)
    judge = sub.add_parser("evaluate", help="raw macro F1 of a run on a split")
    judge.add_argument("run")
    judge.add_argument("data")
    judge.add_argument("--context", type=int, default=1)
    judge.add_argument("--split", default="test", choices=("train", "val", "test", "all"))
    judge.add_argument("--step", type=int, default=1, help="slices between neighbours (volumes finer than the training data's)")
    args = parser.parse_args()
    if args.context:
        add_context(args.context, args.step)
    if args.command == "train":
        from gpedge.cli import main as gpedge

        sys.argv = ["gpedge", "train", *[a for a in args.args if a != "--"]]
        gpedge()
        return 0
    print(json.dumps(evaluate(args.run, args.data, args.split)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
