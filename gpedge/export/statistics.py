"""What the exporter records about the network's weights and its training inputs.

- Denormal weights (magnitude below the smallest normal float32) are flushed to zero before the
  graphs are written: they change no output beyond float32 rounding, and Intel cores compute
  with them through slow microcode assists (tens of times slower convolutions).
- ``input_statistics``: the ranges of :func:`gpedge.runtime.ood.features` over the training
  slices, which the runtime's out-of-distribution check compares every input with.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

from gpedge.export.parity import open_run_data
from gpedge.runtime import ood

log = logging.getLogger(__name__)

#: Training slices the statistics are computed on at most (a seeded sample beyond that).
MAX_STATISTICS_SLICES = 4096


def flush_denormal_weights(module: Any) -> int:
    """Set every denormal float32 parameter and buffer of a torch ``module`` to zero; returns how many were."""
    import torch

    tiny = torch.finfo(torch.float32).tiny
    flushed = 0
    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            if not tensor.is_floating_point():
                continue
            denormal = (tensor != 0) & (tensor.abs() < tiny)
            count = int(denormal.sum())
            if count:
                tensor[denormal] = 0.0
                flushed += count
    return flushed


def training_statistics(config: Any, seed: int = 0) -> dict[str, Any] | None:
    """``input_statistics`` of the run's training slices, or None when its data set is not reachable here."""
    dataset = open_run_data(config, ("train",))
    if dataset is None:
        log.warning("training data of the run not reachable: no input statistics, the runtime checks only for blank images")
        return None
    indices = np.arange(len(dataset))
    if len(indices) > MAX_STATISTICS_SLICES:
        indices = np.sort(np.random.default_rng(seed).choice(indices, MAX_STATISTICS_SLICES, replace=False))
    values = np.concatenate([
        ood.features(np.stack([np.asarray(dataset[int(i)]["image"], np.float32) for i in chunk]))
        for chunk in np.array_split(indices, max(1, len(indices) // 256))
    ])
    source = f"{len(indices)} training slices of {config.dataset.get('path')}"
    return ood.statistics(values, config.channels, source)
