"""The fused torch module exported as one graph: normalisation, network, softmax, label, mask.

Everything after the network runs in FP32. Inputs and outputs follow
:mod:`gpedge.graph.contract`; the mask rules are :class:`gpedge.graph.mask.MaskRule`, chosen per
call by the ``offset`` and ``mask_rule`` inputs.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from gpedge.graph.contract import OUTPUTS, head_erosion_px
from gpedge.graph.mask import MaskRule

#: Outputs of the fused graph, named and ordered as :data:`gpedge.graph.contract.OUTPUTS`.
FusedOutput = NamedTuple("FusedOutput", [(name, torch.Tensor) for name in OUTPUTS])


def normalise_slice_max(image: torch.Tensor) -> torch.Tensor:
    """Divide each (C, H, W) slice by its joint maximum; slices with maximum <= 0 stay unchanged."""
    peak = torch.amax(image, dim=(1, 2, 3), keepdim=True)
    return image / torch.where(peak > 0, peak, torch.ones_like(peak))


class FusedModel(nn.Module):
    """Raw image batch, mask-rule parameter and code -> :data:`FusedOutput`; the graph exported into a
    model package. ``image_size`` (H, W) sets the head region's erosion radius."""

    def __init__(self, network: nn.Module, empty_for_class: int | None, image_size: tuple[int, int]) -> None:
        super().__init__()
        self.network = network
        self.mask_rule = MaskRule(empty_for_class, head_erosion_px(*image_size))

    def forward(self, image: torch.Tensor, offset: torch.Tensor, mask_rule: torch.Tensor) -> FusedOutput:
        normalised = normalise_slice_max(image)
        logits, heatmaps = self.network(normalised)
        logits = logits.float()
        heatmaps = heatmaps.float()
        probs = torch.softmax(logits, dim=1)
        label = torch.argmax(logits, dim=1)
        score, threshold, mask = self.mask_rule(heatmaps, label, normalised, offset, mask_rule)
        return FusedOutput(
            logits=logits, probs=probs, label=label.to(torch.int32), heatmaps=heatmaps,
            score=score, threshold=threshold, mask=mask.to(torch.uint8),
        )
