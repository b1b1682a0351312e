"""The heatmap term of the training objective (``--map-loss``).

The GP head scores a class from the spatial maxima of its feature channels, so a channel whose
maximum is the same on every image adds a constant to the logits but paints its own pattern
(normal white matter, say) into every heatmap: classification never sees it, the mask does.
The map term scores each class by the mean of the top share (``--map-top``; both recipes use
:data:`TOP_FRACTION`) of its own heatmap and applies the same cross-entropy to those scores. A
healthy slice then has to keep every tumour map below the healthy map everywhere, and a tumour
slice has to raise its class's map above the others somewhere: the only place that differs is
the lesion. The inference graph is unchanged; this is a training objective only.
"""
from __future__ import annotations

import math

import torch

TOP_FRACTION = 0.005
"""Share of the map's pixels whose mean scores a class: 82 pixels of 128 x 128, a disc of radius 5."""


def map_scores(heatmaps: torch.Tensor, top_fraction: float = TOP_FRACTION) -> torch.Tensor:
    """(N, K) mean of the top ``top_fraction`` of each (N, K, H, W) class map's pixels (at least one)."""
    flat = heatmaps.flatten(2)
    k = max(1, math.ceil(top_fraction * flat.shape[2]))
    return torch.topk(flat, k, dim=2).values.mean(dim=2)
