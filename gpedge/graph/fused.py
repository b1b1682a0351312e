"""The fused torch module exported as one graph: normalisation, network, softmax, label, mask.

With ``flip_average`` the network also sees each slice mirrored left to right, and the two passes'
logits and heatmaps (the mirrored ones mirrored back) are averaged before the softmax, the label and
the mask: an ensemble of two inherent explanations, at twice the network's cost. Everything after
the network runs in FP32. With a ``class_bias`` (:class:`gpedge.graph.bias.ClassBias`) the logits, and so the
probabilities, the label and the mask's class, carry the package's prior shift. Inputs and outputs follow
:mod:`gpedge.graph.contract`; the mask rules are :class:`gpedge.graph.mask.MaskRule`, chosen per
call by the ``offset`` and ``mask_rule`` inputs.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from gpedge.graph.bias import ClassBias
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
    model package. ``image_size`` (H, W) sets the head region's erosion radius; ``flip_average``: average
    the network's outputs over the slice and its left-right mirror image; ``class_bias`` (K,): the
    package's class bias (None: none)."""

    def __init__(self, network: nn.Module, empty_for_class: int | None, image_size: tuple[int, int],
                 flip_average: bool = False, class_bias: Sequence[float] | None = None) -> None:
        super().__init__()
        self.network = network
        self.flip_average = flip_average
        self.class_bias = None if class_bias is None else ClassBias(class_bias, empty_for_class)
        self.mask_rule = MaskRule(empty_for_class, head_erosion_px(*image_size))

    def forward(self, image: torch.Tensor, offset: torch.Tensor, mask_rule: torch.Tensor) -> FusedOutput:
        logits, heatmaps, normalised = self.network_outputs(image)
        if self.class_bias is not None:
            logits = self.class_bias(logits)
        probs = torch.softmax(logits, dim=1)
        label = torch.argmax(logits, dim=1)
        score, threshold, mask = self.mask_rule(heatmaps, label, normalised, offset, mask_rule)
        return FusedOutput(
            logits=logits, probs=probs, label=label.to(torch.int32), heatmaps=heatmaps,
            score=score, threshold=threshold, mask=mask.to(torch.uint8),
        )

    def network_outputs(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The network's logits and heatmaps in FP32 (averaged with the mirror image's when ``flip_average``),
        before the class bias, and the normalised image."""
        normalised = normalise_slice_max(image)
        # both views in one network call: its weights stay single-use, so BatchNorm folds at export
        views = torch.cat([normalised, torch.flip(normalised, dims=[3])]) if self.flip_average else normalised
        logits, heatmaps = self.network(views)
        logits, heatmaps = logits.float(), heatmaps.float()
        if self.flip_average:
            n = normalised.shape[0]
            logits = (logits[:n] + logits[n:]) * 0.5
            heatmaps = (heatmaps[:n] + torch.flip(heatmaps[n:], dims=[3])) * 0.5
        return logits, heatmaps, normalised
