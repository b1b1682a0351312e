"""The package's class bias, added to the logits inside the fused graph.

A network trained on one mix of grades calls another mix with the training mix's priors; the class
bias re-weights the classes' odds by ``exp(bias)`` (a prior shift). With a no-tumour class, only the
tumour classes' odds among themselves move: the no-tumour class's probability, and with it the
tumour-versus-healthy decision's odds, is kept. Chosen at export on the run's validation patients
(:mod:`gpedge.export.class_bias`).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

#: Subtracted from the no-tumour logit where only the tumour classes are summed (exp of it is 0 in FP32).
_OUTSIDE = 1.0e4


class ClassBias(nn.Module):
    """``forward(logits (N, K))`` -> the logits with ``bias`` (K,) added: to every class when
    ``empty_for_class`` is None; otherwise to the other classes, shifted together so that their
    softmax total, and so the no-tumour class's probability, is unchanged."""

    def __init__(self, bias: Sequence[float], empty_for_class: int | None) -> None:
        super().__init__()
        values = torch.tensor([float(b) for b in bias], dtype=torch.float32)
        tumour = torch.ones_like(values)
        if empty_for_class is not None:
            tumour[int(empty_for_class)] = 0.0
        self.keeps_no_tumour = empty_for_class is not None
        self.register_buffer("bias", values * tumour, persistent=False)
        self.register_buffer("tumour", tumour, persistent=False)

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        shifted = logits + self.bias
        if not self.keeps_no_tumour:
            return shifted
        keep = self._tumour_logsumexp(logits) - self._tumour_logsumexp(shifted)
        return torch.where(self.tumour > 0.5, shifted + keep, logits)

    def _tumour_logsumexp(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1) log of the summed exponentials of the tumour classes' entries, computed stably."""
        masked = x - (1.0 - self.tumour) * _OUTSIDE
        top = torch.amax(masked, dim=1, keepdim=True)
        return torch.log(torch.sum(torch.exp(masked - top), dim=1, keepdim=True)) + top
