"""The package's class bias, chosen at export on the run's validation patients (``gpedge export``'s default).

A network calls with the priors of the mix it was trained on (class-weighted: as if every class were
equally common), in two ways that the bias (:class:`gpedge.graph.bias.ClassBias`) corrects:

- *The grades.* Where the validation patients show it calling one grade for another, a bias on the tumour
  classes' odds among themselves (the no-tumour probability kept) corrects it. The export scores each candidate
  by macro F1 over the validation slices and adopts the best when it beats no bias by at least :data:`MIN_GAIN`:
  a smaller gain is within what resampling the validation patients moves, and a bias fitted to it can cost calls
  on other patients (docs/quality.md).
- *Healthy slices called tumour.* Healthy slices are the common class and the cheapest one in class-weighted
  training, so the tumour-versus-healthy decision leans to tumour. The no-tumour class's value is an operating
  point: the smallest of :data:`HEALTHY_GRID` at which at most ``max_healthy_fp`` of the validation patients'
  healthy slices are called tumour (0 when none reaches it, recorded so). ``max_sensitivity_loss`` puts a floor
  under the share of validation tumour slices called tumour: values that lower it more are not considered.

The export runs the fused module once on every validation slice; the grades' bias is chosen first, the
no-tumour value on top of it.
"""
from __future__ import annotations

import itertools
import logging
from typing import Any

import numpy as np
import torch
from sklearn.metrics import f1_score

from gpedge.export.options import DEFAULT_MAX_HEALTHY_FP, DEFAULT_MAX_SENSITIVITY_LOSS
from gpedge.export.parity import open_run_data
from gpedge.graph.bias import ClassBias

log = logging.getLogger(__name__)

#: Candidate bias of each free class (log-odds; up to e^2 = 7.4 times the odds either way).
GRID = tuple(np.round(np.arange(-2.0, 2.0001, 0.25), 2).tolist())
#: Rounds of coordinate search over the free classes (one is exact with one free class).
ROUNDS = 3
#: Least rise of the validation macro F1 over no bias for a grades' bias to be adopted.
MIN_GAIN = 0.03
CRITERION = ("grades: highest macro F1 on every slice of the validation patients (ties: the smaller total bias), adopted "
             f"when it beats no bias by at least {MIN_GAIN}; the first tumour class is not biased")
#: Candidate values of the no-tumour class (log-odds; the tumour-versus-healthy odds lowered up to e^2 = 7.4 times).
HEALTHY_GRID = tuple(np.round(np.arange(0.0, 2.0001, 0.25), 2).tolist())
HEALTHY_CRITERION = ("no-tumour class: the smallest value at which at most max_healthy_fp of the validation patients' "
                     "healthy slices are called tumour, on top of the grades' bias, among the values that lower the share "
                     "of their tumour slices called tumour by at most max_sensitivity_loss; when none reaches it, the "
                     "largest of those values (0 without a floor)")


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


def _calls(logits: torch.Tensor, bias: list[float], empty_for_class: int | None) -> np.ndarray:
    """The graph's label for each row of ``logits`` under ``bias``."""
    with torch.no_grad():
        return ClassBias(bias, empty_for_class)(logits).argmax(dim=1).numpy()


def choose(logits: np.ndarray, labels: np.ndarray, empty_for_class: int | None,
           max_healthy_fp: float = DEFAULT_MAX_HEALTHY_FP,
           max_sensitivity_loss: float = DEFAULT_MAX_SENSITIVITY_LOSS) -> dict[str, Any]:
    """The class bias chosen on validation logits (see the module's docstring) and the record of the choice: the
    grades' values all 0 when their best does not beat no bias by :data:`MIN_GAIN` (then ``best`` records it);
    ``no_tumour`` records the operating point when there is a no-tumour class."""
    num_classes = logits.shape[1]
    free = [k for k in range(num_classes) if k != empty_for_class][1:]
    tensor = torch.from_numpy(np.asarray(logits, np.float32))
    classes = list(range(num_classes))

    def macro_f1(bias: list[float]) -> float:
        called = _calls(tensor, bias, empty_for_class)
        return float(f1_score(labels, called, labels=classes, average="macro", zero_division=0))

    def score(bias: list[float]) -> tuple[float, float]:
        return macro_f1(bias), -sum(map(abs, bias))

    bias = [0.0] * num_classes
    before = best = score(bias)
    for _, k in itertools.product(range(ROUNDS if len(free) > 1 else 1), free):
        for value in GRID:
            trial = bias[:k] + [float(value)] + bias[k + 1:]
            result = score(trial)
            if result > best:
                bias, best = trial, result
    record: dict[str, Any] = {"criterion": CRITERION, "slices": int(len(labels)),
                              "val_macro_f1_unbiased": round(before[0], 4), "grid": [GRID[0], GRID[-1]],
                              "min_gain": MIN_GAIN}
    if best[0] - before[0] < MIN_GAIN and any(bias):
        record["best"] = {"values": bias, "val_macro_f1": round(best[0], 4)}
        bias = [0.0] * num_classes
    if empty_for_class is not None:
        record["no_tumour"] = _operating_point(tensor, labels, bias, empty_for_class, max_healthy_fp,
                                               max_sensitivity_loss)
        bias[empty_for_class] = record["no_tumour"]["value"]
    return {"values": bias, **record, "val_macro_f1": round(macro_f1(bias), 4)}


def _operating_point(logits: torch.Tensor, labels: np.ndarray, bias: list[float], empty: int,
                     max_healthy_fp: float, max_sensitivity_loss: float) -> dict[str, Any]:
    """The no-tumour class's value (see :data:`HEALTHY_CRITERION`) on top of the grades' ``bias``, with the shares
    of the validation healthy and tumour slices called tumour before (the grades' bias only) and after."""
    healthy = labels == empty

    def called_tumour(value: float) -> tuple[float, float]:
        tumour = _calls(logits, bias[:empty] + [value] + bias[empty + 1:], empty) != empty
        return tuple(float(tumour[rows].mean()) if rows.any() else 0.0 for rows in (healthy, ~healthy))

    shares = {value: called_tumour(value) for value in HEALTHY_GRID}
    floor = shares[0.0][1] - max_sensitivity_loss
    allowed = [value for value in HEALTHY_GRID if shares[value][1] >= floor - 1e-9]
    reaching = [value for value in allowed if shares[value][0] <= max_healthy_fp]
    limited = not reaching and len(allowed) < len(HEALTHY_GRID)  # the floor, not the grid, ended the search
    value = reaching[0] if reaching else allowed[-1] if limited else 0.0
    record = {"criterion": HEALTHY_CRITERION, "max_healthy_fp": max_healthy_fp,
              "max_sensitivity_loss": max_sensitivity_loss,
              "grid": [HEALTHY_GRID[0], HEALTHY_GRID[-1]], "healthy_slices": int(healthy.sum()),
              "reached": bool(reaching), "limited_by_sensitivity": limited, "value": float(value),
              "healthy_called_tumour_before": round(shares[0.0][0], 4),
              "tumour_called_tumour_before": round(shares[0.0][1], 4),
              "healthy_called_tumour": round(shares[value][0], 4), "tumour_called_tumour": round(shares[value][1], 4)}
    if not reaching:
        record["healthy_called_tumour_at_grid_end"] = round(shares[HEALTHY_GRID[-1]][0], 4)
    return record


def choose_class_bias(fused: Any, config: Any, size: int, max_healthy_fp: float = DEFAULT_MAX_HEALTHY_FP,
                      max_sensitivity_loss: float = DEFAULT_MAX_SENSITIVITY_LOSS) -> dict[str, Any] | None:
    """Choose the class bias of ``fused`` (unbiased) on the run's validation patients; the manifest's
    ``class_bias`` record, or None when those patients are not reachable here."""
    outputs = validation_outputs(fused, config, size)
    if outputs is None:
        return None
    logits, labels, patients = outputs
    record = {**choose(logits, labels, config.no_tumour_class, max_healthy_fp, max_sensitivity_loss),
              "patients": patients}
    log.info("class bias %s: validation macro F1 %.3f -> %.3f on %d slices", record["values"],
             record["val_macro_f1_unbiased"], record["val_macro_f1"], record["slices"])
    return record
