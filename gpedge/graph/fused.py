"""The fused torch module exported as one graph: normalisation, network, softmax, label, mask.

Everything after the network runs in FP32. Inputs and outputs follow
:mod:`gpedge.graph.contract`; the mask rule is :class:`gpedge.graph.mask.MultiOtsuMask`.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from gpedge.graph.contract import OUTPUTS
from gpedge.graph.mask import MultiOtsuMask

#: Outputs of the fused graph, named and ordered as :data:`gpedge.graph.contract.OUTPUTS`.
FusedOutput = NamedTuple("FusedOutput", [(name, torch.Tensor) for name in OUTPUTS])


def normalise_slice_max(image: torch.Tensor) -> torch.Tensor:
    """Divide each (C, H, W) slice by its joint maximum; slices with maximum <= 0 stay unchanged."""
    peak = torch.amax(image, dim=(1, 2, 3), keepdim=True)
    return image / torch.where(peak > 0, peak, torch.ones_like(peak))


class FusedModel(nn.Module):
    """Raw image batch and mask offset -> :data:`FusedOutput`; the graph exported into a model package."""

    def __init__(self, network: nn.Module, empty_for_class: int | None) -> None:
        super().__init__()
        self.network = network
        self.empty_for_class = -1 if empty_for_class is None else int(empty_for_class)
        self.mask_rule = MultiOtsuMask()

    def forward(self, image: torch.Tensor, offset: torch.Tensor) -> FusedOutput:
        logits, heatmaps = self.network(normalise_slice_max(image))
        logits = logits.float()
        heatmaps = heatmaps.float()
        probs = torch.softmax(logits, dim=1)
        label = torch.argmax(logits, dim=1)
        n, _, height, width = heatmaps.shape
        chosen = torch.gather(heatmaps, 1, label.reshape(n, 1, 1, 1).expand(n, 1, height, width)).reshape(n, height, width)
        threshold, mask = self.mask_rule(chosen, offset, label != self.empty_for_class)
        return FusedOutput(
            logits=logits, probs=probs, label=label.to(torch.int32), heatmaps=heatmaps,
            threshold=threshold, mask=mask.to(torch.uint8),
        )
