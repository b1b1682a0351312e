"""Where a model's macro F1 is lost to the grade (issue 9, items 1 and 7): tumour slices that show no enhancing tumour.

A BraTS slice takes its patient's grade as soon as its segmentation holds any tumour voxel, so an HGG
slice may hold only oedema or non-enhancing tumour (BraTS labels 2 and 1, no label 4): nothing on it
tells it from an LGG slice by enhancement. For a split of a BraTS-layout data set, through the runtime
(``gpedge.Predictor``, what ``gpedge infer`` and ``gpedge evaluate`` apply), this reports:

- the confusion matrix, and how the HGG slices without enhancing tumour are called;
- macro F1 over all slices, without those slices, and without tumour slices under 20 px;
- ``bound_no_et_as_lgg``: the macro F1 of a classifier right on every slice except that it calls every
  HGG slice without enhancing tumour LGG (what a slice classifier that grades by enhancement alone can reach);
- ``volume_grade``: macro F1 when every slice a patient's volume has called tumour takes the grade with
  the larger summed probability over those slices (one grade per patient, as the labels have it).

    python scripts/grade_breakdown.py PKG --split test [--data DIR] [--json out.json]
    python scripts/grade_breakdown.py PKG --split external --data OTHER_PATIENTS
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score

from gpedge.data import open_dataset
from gpedge.data.brats import decode_patient, find_files
from gpedge.errors import reporting
from gpedge.evaluate.selection import class_index_map, select_split
from gpedge.package import ModelPackage
from gpedge.runtime.predictor import Predictor

from _report import emit, package_and_data, package_parser

ENHANCING = 4  # BraTS label of enhancing tumour
SMALL = 20  # tumour pixels at the data's resolution


def slice_rows(package: ModelPackage, data: Path, split: str) -> list[dict]:
    """One row per slice: true and predicted class, probabilities, tumour and enhancing-tumour area."""
    dataset = open_dataset(data, format="brats", channels=package.channels)
    dataset, _ = select_split(dataset, package, split)
    to_package = class_index_map(dataset, package)
    enhancing: dict[str, dict[int, int]] = {}
    rows = []
    with Predictor(package, backend="onnxruntime") as predictor:
        for i in range(len(dataset)):
            sample = dataset[i]
            patient = sample["patient"]
            if patient not in enhancing:
                arrays, index = decode_patient(find_files(Path(data) / patient))
                enhancing[patient] = {z: int((seg == ENHANCING).sum()) for z, seg in zip(index["slices"], arrays["seg"])}
            result = predictor.predict(np.asarray(sample["image"], np.float32))[0]
            rows.append({
                "patient": patient,
                "truth": int(to_package[int(sample["label"])]),
                "predicted": result.class_index,
                "probabilities": [float(result.probabilities[name]) for name in predictor.classes],
                "area": int((np.asarray(sample["mask"]) > 0).sum()),
                "enhancing": enhancing[patient][int(sample["slice"])],
            })
    return rows


def volume_grades(rows: list[dict], tumour_classes: list[int]) -> np.ndarray:
    """Predictions with every slice a patient's volume calls tumour given that volume's most probable tumour class."""
    predicted = np.array([r["predicted"] for r in rows])
    probabilities = np.array([r["probabilities"] for r in rows])
    patients = np.array([r["patient"] for r in rows])
    out = predicted.copy()
    for patient in np.unique(patients):
        called = (patients == patient) & np.isin(predicted, tumour_classes)
        if called.any():
            out[called] = tumour_classes[int(np.argmax(probabilities[called][:, tumour_classes].sum(axis=0)))]
    return out


def breakdown(rows: list[dict], classes: list[str]) -> dict:
    low, high = classes.index("LGG"), classes.index("HGG")
    labels = list(range(len(classes)))
    truth = np.array([r["truth"] for r in rows])
    predicted = np.array([r["predicted"] for r in rows])
    area = np.array([r["area"] for r in rows])
    no_et = (truth == high) & (np.array([r["enhancing"] for r in rows]) == 0)
    small = (area > 0) & (area < SMALL)
    bound = truth.copy()
    bound[no_et] = low

    def macro(keep: np.ndarray, guess: np.ndarray = predicted) -> float:
        return float(f1_score(truth[keep], guess[keep], labels=labels, average="macro", zero_division=0))

    everything = np.ones(len(rows), dtype=bool)
    return {
        "slices": len(rows),
        "confusion": confusion_matrix(truth, predicted, labels=labels).tolist(),
        "hgg_slices": int((truth == high).sum()),
        "hgg_slices_without_enhancing": int(no_et.sum()),
        "hgg_without_enhancing_called": dict(zip(classes, np.bincount(predicted[no_et], minlength=len(classes)).tolist())),
        "hgg_with_enhancing_called": dict(zip(classes, np.bincount(predicted[(truth == high) & ~no_et], minlength=len(classes)).tolist())),
        "macro_f1": macro(everything),
        "macro_f1_without_hgg_without_enhancing": macro(~no_et),
        f"macro_f1_without_tumour_under_{SMALL}px": macro(~small),
        "bound_no_et_as_lgg": macro(everything, bound),
        "volume_grade_macro_f1": macro(everything, volume_grades(rows, [low, high])),
    }


def main(argv: list[str] | None = None) -> int:
    args = package_parser(__doc__.splitlines()[0], split="test").parse_args(argv)
    package, data = package_and_data(args.package, args.data)
    found = {"package": str(package.root), "data": str(data), "split": args.split,
             **breakdown(slice_rows(package, data, args.split), list(package.classes))}
    return emit(found, args.json)


if __name__ == "__main__":
    sys.exit(reporting(main))
