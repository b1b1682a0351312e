"""Which slices an evaluation may use: the package's split, mapped onto the package's classes."""
from __future__ import annotations

from typing import Any

import numpy as np

from gpedge.errors import DataError
from gpedge.package import ModelPackage

SPLITS = ("test", "val", "all", "external")


def class_index_map(dataset: Any, package: ModelPackage) -> np.ndarray:
    """Package class index of each data-set class, matched by name (case-insensitive)."""
    lookup = {name.lower(): i for i, name in enumerate(package.classes)}
    missing = [name for name in dataset.class_names if name.lower() not in lookup]
    if missing:
        raise DataError(
            f"data set {dataset.root} has class(es) {missing} that model package {package.root} does not know "
            f"(its classes: {package.classes}); evaluate with data labelled in the model's classes"
        )
    return np.array([lookup[name.lower()] for name in dataset.class_names], dtype=np.int64)


def select_split(dataset: Any, package: ModelPackage, split: str) -> tuple[Any, dict[str, Any]]:
    """The slices of ``split`` in ``dataset`` and a description of the selection.

    ``test``/``val`` take the patients the package records for that split; ``all`` takes every
    slice but only of external data (refused when a patient ID is one the model was trained or tuned
    on); ``external`` takes every slice without that check, for other patients that happen to share
    IDs with the package's (real BraTS against a model trained on ``gpedge synth``, which names its
    patients the BraTS way).
    """
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    recorded: dict[str, list[str]] = package.manifest.get("split") or {}
    available = set(dataset.patients)
    if split in ("all", "external"):
        return _every_slice(dataset, package, split, recorded, available)
    wanted = list(recorded.get(split, []))
    if not wanted:
        raise DataError(
            f"model package {package.root} records no '{split}' patients in manifest.json 'split'; "
            "re-export it from a run with a patient split, or use --split all on external data"
        )
    present = sorted(set(wanted) & available)
    if not present:
        raise DataError(
            f"data set {dataset.root} holds none of the {len(wanted)} '{split}' patients of {package.root} "
            f"(e.g. {', '.join(sorted(wanted)[:3])}); point --data at the data the model was trained on, "
            "or use --split all for external data"
        )
    missing = sorted(set(wanted) - available)
    return dataset.subset(present), {"split": split, "patients": len(present), "missing_patients": missing}


def _every_slice(dataset: Any, package: ModelPackage, split: str, recorded: dict[str, list[str]],
                 available: set[str]) -> tuple[Any, dict[str, Any]]:
    """``all`` (refused when a patient ID is a training or validation one) or ``external`` (the shared IDs counted)."""
    seen = sorted(available & (set(recorded.get("train", [])) | set(recorded.get("val", []))))
    if split == "all":
        if seen:
            raise DataError(
                f"--split all is for external data, but {len(seen)} patient(s) of {dataset.root} were used to train "
                f"or tune {package.root} (e.g. {', '.join(seen[:3])}); use --split test, or --split external if these "
                "are other patients that share the IDs"
            )
        return dataset, {"split": "all", "patients": len(available), "missing_patients": []}
    return dataset, {"split": "external", "patients": len(available), "missing_patients": [], "ids_shared_with_training": len(seen)}
