"""Measure shortcut cues in a slice data set: can a trivial classifier on global statistics tell the classes apart?

Usage:
    python scripts/shortcut_cues.py DATA [--test DATA2] [--channels t1ce] [--image-size 128] [--json out.json]

Each slice is read exactly as training reads it (``open_dataset``: resized, divided by its maximum).
Per slice, a handful of global statistics (per channel: mean, spread and percentiles of the
foreground, share of bright pixels, high-frequency energy; plus the
foreground area and, for volumes, the slice's relative height in the head) feed a logistic
regression and a gradient-boosting classifier, cross-validated by patient (GroupKFold).

Two feature sets:
- ``full``: statistics of the whole slice, lesion included (a global-statistics model);
- ``context``: the same statistics with the lesion (ground-truth mask dilated by 4 px) left out and
  the rest re-normalised by its own maximum, i.e. what the slice says about its class *without* the
  tumour (the foreground area still counts the lesion): this is the shortcut measure and
  should be at chance (balanced accuracy 1/3, AUC 0.5) for a generator without class cues.

With ``--test`` the classifiers are fitted on DATA and scored on DATA2 (e.g. another generator family).
Needs the [train] extra (scikit-learn, scipy).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import ndimage

from gpedge.data import open_dataset

PERCENTILES = (10, 50, 90, 99)


def _stats(image: np.ndarray, keep: np.ndarray, foreground: np.ndarray) -> list[float]:
    feats: list[float] = [float(foreground.mean())]
    for channel in image:
        values = channel[keep]
        if values.size < 8:
            values = np.zeros(8, dtype=np.float32)
        lap = np.abs(ndimage.laplace(channel))[keep] if keep.any() else np.zeros(1)
        feats += [float(values.mean()), float(values.std()), *np.percentile(values, PERCENTILES).tolist()]
        feats += [float((values > 0.5).mean()), float(np.median(lap))]
    return feats


def feature_names(channels: list[str]) -> list[str]:
    names = ["area"]
    for c in channels:
        names += [f"{c}_{s}" for s in ("mean", "std", *(f"p{p}" for p in PERCENTILES), "bright", "hf")]
    return names


def slice_features(dataset) -> dict[str, np.ndarray]:
    """Full and context features, relative height, labels, patients and lesion areas of every slice."""
    records = dataset.records
    extent: dict[str, tuple[int, int]] = {}
    for r in records:
        lo, hi = extent.get(r.patient, (r.slice, r.slice))
        extent[r.patient] = (min(lo, r.slice), max(hi, r.slice))
    full, context, height, lesion = [], [], [], []
    for i, r in enumerate(records):
        sample = dataset[i]
        image, mask = sample["image"], sample["mask"] > 0
        foreground = image.max(axis=0) > 0.02
        lo, hi = extent[r.patient]
        height.append((r.slice - lo) / max(hi - lo, 1))
        lesion.append(float(mask.mean()))
        full.append(_stats(image, foreground, foreground))
        if mask.any():
            keep = foreground & ~ndimage.binary_dilation(mask, iterations=4)
            peak = image[:, keep].max() if keep.any() else 0.0
            context.append(_stats(image / peak if peak > 0 else image, keep, foreground))
        else:
            context.append(full[-1])
    return {
        "full": np.asarray(full),
        "context": np.asarray(context),
        "height": np.asarray(height),
        "labels": dataset.labels,
        "patients": np.asarray(dataset.patient_of),
        "lesion": np.asarray(lesion),
    }


def _models():
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return {
        "logistic": make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, class_weight="balanced")),
        "boosting": HistGradientBoostingClassifier(max_iter=150, learning_rate=0.08, class_weight="balanced", random_state=0),
    }


def _scores(y: np.ndarray, proba: np.ndarray, healthy: int) -> dict[str, float]:
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    out = {"balanced_accuracy": float(balanced_accuracy_score(y, proba.argmax(axis=1)))}
    tumour = y != healthy
    if 0 < tumour.sum() < len(y):
        out["tumour_auc"] = float(roc_auc_score(tumour, 1.0 - proba[:, healthy]))
    return out


def evaluate(train: dict, test: dict | None, with_height: bool, healthy: int = 0) -> dict[str, dict[str, dict[str, float]]]:
    """Balanced accuracy and tumour-vs-healthy AUC of each model on each feature set."""
    from sklearn.base import clone
    from sklearn.model_selection import GroupKFold, cross_val_predict

    results: dict[str, dict[str, dict[str, float]]] = {}
    for kind in ("full", "context"):
        x = train[kind]
        if with_height:
            x = np.column_stack([x, train["height"]])
        results[kind] = {}
        for name, model in _models().items():
            if test is None:
                proba = cross_val_predict(model, x, train["labels"], groups=train["patients"], cv=GroupKFold(5), method="predict_proba")
                results[kind][name] = _scores(train["labels"], proba, healthy)
            else:
                xt = test[kind]
                if with_height:
                    xt = np.column_stack([xt, test["height"]])
                fitted = clone(model).fit(x, train["labels"])
                results[kind][name] = _scores(test["labels"], fitted.predict_proba(xt), healthy)
    return results


def single_cues(data: dict, names: list[str], healthy: int = 0) -> list[tuple[str, float]]:
    """Tumour-vs-healthy AUC of each context feature alone, folded to >= 0.5, strongest first."""
    from sklearn.metrics import roc_auc_score

    tumour = data["labels"] != healthy
    columns = {"height": data["height"], **{n: data["context"][:, k] for k, n in enumerate(names)}}
    aucs = []
    for name, values in columns.items():
        auc = float(roc_auc_score(tumour, values))
        aucs.append((name, max(auc, 1.0 - auc)))
    return sorted(aucs, key=lambda t: -t[1])


def summary(data: dict, class_names: list[str]) -> dict[str, dict[str, float]]:
    """Per class: slice count, relative height quartiles, foreground area and lesion area."""
    out = {}
    for k, name in enumerate(class_names):
        sel = data["labels"] == k
        if not sel.any():
            continue
        h = data["height"][sel]
        out[name] = {
            "slices": int(sel.sum()),
            "height_q25": float(np.percentile(h, 25)),
            "height_q50": float(np.percentile(h, 50)),
            "height_q75": float(np.percentile(h, 75)),
            "area_mean": float(data["full"][sel, 0].mean()),
            "lesion_area_median": float(np.median(data["lesion"][sel])),
        }
    return out


def load(path: Path, channels: list[str] | None, size: int, cache: Path | None) -> tuple[dict, object]:
    ds = open_dataset(path, channels=channels, image_size=size, cache_dir=cache)
    return slice_features(ds), ds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--test", type=Path)
    parser.add_argument("--channels", default="t1ce")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--cache", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    channels = [c.strip() for c in args.channels.split(",")] if args.channels else None
    train, ds = load(args.data, channels, args.image_size, args.cache)
    volumes = ds.format == "brats"
    report = {
        "data": str(args.data),
        "channels": ds.channels,
        "slices": int(len(ds)),
        "per_class": summary(train, ds.class_names),
        "cross_validated": evaluate(train, None, volumes),
        "single_context_cues": single_cues(train, feature_names(ds.channels))[:8],
    }
    if args.test is not None:
        test, test_ds = load(args.test, channels, args.image_size, args.cache)
        report["test_data"] = str(args.test)
        report["fit_on_data_scored_on_test"] = evaluate(train, test, volumes and test_ds.format == "brats")
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
