"""The package's class bias, chosen at export on the run's validation patients (``gpedge export``'s default).

A network calls the grades with the priors of the mix it was trained on (class-weighted: as if every
class were equally common); where the validation patients show it calling one grade for another,
a bias on the tumour classes' odds (:class:`gpedge.graph.bias.ClassBias`: the no-tumour probability
is kept) corrects it. The export runs the fused module once on every validation slice, scores each
candidate bias by macro F1 over the validation slices, and bakes the best into the graph when it beats no bias
by at least :data:`MIN_GAIN`: a smaller gain is within what resampling the validation patients moves, and a bias
fitted to it can cost calls on other patients (docs/quality.md).
"""
from __future__ import annotations

import itertools
import logging
from typing import Any

import numpy as np
import torch
from sklearn.metrics import f1_score

from gpedge.export.parity import open_run_data
from gpedge.graph.bias import ClassBias

log = logging.getLogger(__name__)

#: Candidate bias of each free class (log-odds; up to e^2 = 7.4 times the odds either way).
GRID = tuple(np.round(np.arange(-2.0, 2.0001, 0.25), 2).tolist())
#: Rounds of coordinate search over the free classes (one is exact with one free class).
ROUNDS = 3
#: Least rise of the validation macro F1 over no bias for a bias to be adopted.
MIN_GAIN = 0.03
CRITERION = ("highest macro F1 on every slice of the validation patients (ties: the smaller total bias), adopted when it "
             f"beats no bias by at least {MIN_GAIN}; the no-tumour class and the first other class are not biased")


def validation_outputs(fused: Any, config: Any, size: int, batch: int = 32
                       ) -> tuple[np.ndarray, np.ndarray, int] | None:
    """The fused module's unbiased logits (N, K) on every slice of the run's validation patients at ``size``, their
    labels and the patients' count; None when the run records no validation patients or its data set is not
    reachable here."""
    if not (config.split or {}).get("val"):
        return None
    dataset = open_run_data(config, ("val",), image_size=size)
    if dataset is None:
        return None
    logits = []
    with torch.no_grad():
        for start in range(0, len(dataset), batch):
            stop = min(start + batch, len(dataset))
            images = np.stack([np.asarray(dataset[i]["image"], np.float32) for i in range(start, stop)])
            logits.append(fused.network_outputs(torch.from_numpy(images))[0].numpy())
    return np.concatenate(logits), np.asarray(dataset.labels), len(dataset.patients)


def choose(logits: np.ndarray, labels: np.ndarray, empty_for_class: int | None) -> dict[str, Any]:
    """The class bias of the highest validation macro F1 (see :data:`CRITERION`) and the record of the choice:
    ``values`` all 0 when the best does not beat no bias by :data:`MIN_GAIN` (then ``best`` records it)."""
    num_classes = logits.shape[1]
    free = [k for k in range(num_classes) if k != empty_for_class][1:]
    tensor = torch.from_numpy(np.asarray(logits, np.float32))
    classes = list(range(num_classes))

    def score(bias: list[float]) -> tuple[float, float]:
        with torch.no_grad():
            called = ClassBias(bias, empty_for_class)(tensor).argmax(dim=1).numpy()
        return float(f1_score(labels, called, labels=classes, average="macro", zero_division=0)), -sum(map(abs, bias))

    bias = [0.0] * num_classes
    before = best = score(bias)
    for _, k in itertools.product(range(ROUNDS if len(free) > 1 else 1), free):
        for value in GRID:
            trial = bias[:k] + [float(value)] + bias[k + 1:]
            result = score(trial)
            if result > best:
                bias, best = trial, result
    record = {"values": bias, "criterion": CRITERION, "slices": int(len(labels)),
              "val_macro_f1_unbiased": round(before[0], 4), "val_macro_f1": round(best[0], 4),
              "grid": [GRID[0], GRID[-1]], "min_gain": MIN_GAIN}
    if best[0] - before[0] < MIN_GAIN and any(bias):
        record.update(values=[0.0] * num_classes, val_macro_f1=record["val_macro_f1_unbiased"],
                      best={"values": bias, "val_macro_f1": round(best[0], 4)})
    return record


def choose_class_bias(fused: Any, config: Any, size: int) -> dict[str, Any] | None:
    """Choose the class bias of ``fused`` (unbiased) on the run's validation patients; the manifest's
    ``class_bias`` record, or None when those patients are not reachable here."""
    outputs = validation_outputs(fused, config, size)
    if outputs is None:
        return None
    logits, labels, patients = outputs
    record = {**choose(logits, labels, config.no_tumour_class), "patients": patients}
    log.info("class bias %s: validation macro F1 %.3f -> %.3f on %d slices", record["values"],
             record["val_macro_f1_unbiased"], record["val_macro_f1"], record["slices"])
    return record
