"""Whether a model's call rests on the lesion: each tumour slice against the same slice of its lesion-free twin.

``gpedge synth TWINS --lesion-free`` with the arguments that wrote a synthetic data set writes the same
patients without their tumours (same anatomy, pose, scanner and noise). For every tumour slice of a split
of the data (default: the package's test patients), the runtime (``gpedge.Predictor``) runs on the slice
and on the twin's slice of the same patient and index. Per true tumour class it reports the median
probability of that class on both, the share of slices called that class on both, and the share whose
probability falls by more than ``DROP`` once the lesion is gone. A call that rests on the lesion falls
with it; one that rests on anything else (the section's outline, the anatomy, the scanner) does not.

    gpedge synth twins --lesion-free --patients 192 --seed 2027 --size 128 --slices 48
    python scripts/twin_check.py PKG --twins twins [--data DIR] [--split test] [--json out.json]
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from gpedge.data import open_dataset
from gpedge.errors import DataError, reporting
from gpedge.evaluate.selection import class_index_map, select_split
from gpedge.package import ModelPackage
from gpedge.runtime.predictor import Predictor

from _report import emit, package_and_data, package_parser

DROP = 0.1  # a fall in the true class's probability that counts as the call resting on the lesion


def by_class(rows: list[dict]) -> dict[str, dict]:
    """Per true tumour class: slices, median probability of the class and share called it, on the slice and on
    its twin, the median fall and the share of slices whose probability falls by more than ``DROP``."""
    out = {}
    for name in dict.fromkeys(r["label"] for r in rows):
        group = [r for r in rows if r["label"] == name]
        with_lesion = np.array([r["p_slice"] for r in group])
        without = np.array([r["p_twin"] for r in group])
        out[name] = {
            "slices": len(group),
            "median_p_slice": float(np.median(with_lesion)),
            "median_p_twin": float(np.median(without)),
            "called_on_slice": float(np.mean([r["called_slice"] == name for r in group])),
            "called_on_twin": float(np.mean([r["called_twin"] == name for r in group])),
            "median_fall": float(np.median(with_lesion - without)),
            f"share_falling_over_{DROP}": float(np.mean(with_lesion - without > DROP)),
        }
    return out


def twin_check(package: ModelPackage, data: Path, twins: Path, split: str) -> dict:
    dataset, _ = select_split(open_dataset(data, channels=package.channels), package, split)
    twin_set = open_dataset(twins, channels=package.channels)
    twin_index = {(r.patient, r.slice): i for i, r in enumerate(twin_set.records)}
    to_package = class_index_map(dataset, package)
    rows = []
    with Predictor(package, backend="onnxruntime") as predictor:
        for i, record in enumerate(dataset.records):
            true_class = int(to_package[record.label])
            if true_class == package.no_tumour_class:
                continue
            j = twin_index.get((record.patient, record.slice))
            if j is None:
                raise DataError(f"{twins} has no slice {record.slice} of {record.patient}; write the twins with the "
                                "arguments that wrote the data set, adding --lesion-free")
            if twin_set.records[j].label != twin_set.no_tumour_class:
                raise DataError(f"{twins}: slice {record.slice} of {record.patient} holds a tumour; "
                                "write the twins with --lesion-free")
            pair = np.stack([np.asarray(dataset[i]["image"], np.float32), np.asarray(twin_set[j]["image"], np.float32)])
            on_slice, on_twin = predictor.predict(pair)
            name = predictor.classes[true_class]
            rows.append({"label": name, "p_slice": on_slice.probabilities[name], "p_twin": on_twin.probabilities[name],
                         "called_slice": on_slice.label, "called_twin": on_twin.label})
    return {"package": str(package.root), "data": str(data), "twins": str(twins), "split": split,
            "tumour_slices": len(rows), "by_class": by_class(rows)}


def main(argv: list[str] | None = None) -> int:
    parser = package_parser(__doc__.splitlines()[0], split="test")
    parser.add_argument("--twins", type=Path, required=True, help="the data set's lesion-free twins (gpedge synth --lesion-free)")
    args = parser.parse_args(argv)
    package, data = package_and_data(args.package, args.data)
    return emit(twin_check(package, data, args.twins, args.split), args.json)


if __name__ == "__main__":
    sys.exit(reporting(main))
