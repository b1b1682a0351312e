"""The global-pooling (GP) head shared by all three networks, and its output type."""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn


class GPOutput(NamedTuple):
    """What every GP network returns, in train and eval mode alike."""

    logits: torch.Tensor
    """(N, K) class scores before softmax."""
    heatmaps: torch.Tensor
    """(N, K, H, W) one map per class at input resolution."""


class GPHead(nn.Module):
    """One 1x1 convolution used twice: on the spatially max-pooled features and on the full map.

    ``logits[c] = b_c + sum_k W_ck * max_xy F_k`` and ``heatmaps[c] = b_c + sum_k W_ck * F_k``,
    so a logit is not the spatial maximum of its heatmap.
    """

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.classifier = nn.Conv2d(in_channels, num_classes, kernel_size=1)

    def forward(self, features: torch.Tensor) -> GPOutput:
        pooled = torch.amax(features, dim=(2, 3), keepdim=True)
        logits = torch.flatten(self.classifier(pooled), 1)
        return GPOutput(logits=logits, heatmaps=self.classifier(features))
