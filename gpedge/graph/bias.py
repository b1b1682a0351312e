"""The package's class bias, added to the logits inside the fused graph.

A network trained on one mix of classes calls another mix with the training mix's priors; the class
bias re-weights the classes' odds by ``exp(bias)`` (a prior shift). With a no-tumour class, the
tumour classes' values move their odds among themselves only (the no-tumour class's probability is kept
by them), and the no-tumour class's own value moves the tumour-versus-healthy odds: its logit gets that
value, the grades' odds among themselves stay. Chosen at export on the run's validation patients
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
    ``empty_for_class`` is None; otherwise the other classes' values shifted together so that their softmax
    total is unchanged, and the no-tumour class's value added to its logit."""

    def __init__(self, bias: Sequence[float], empty_for_class: int | None) -> None:
        super().__init__()
        values = torch.tensor([float(b) for b in bias], dtype=torch.float32)
        tumour = torch.ones_like(values)
        if empty_for_class is not None:
            tumour[int(empty_for_class)] = 0.0
        self.has_no_tumour = empty_for_class is not None
        self.register_buffer("bias", values, persistent=False)
        self.register_buffer("tumour", tumour, persistent=False)

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        if not self.has_no_tumour:
            return logits + self.bias
        shifted = logits + self.bias * self.tumour
        keep = self._tumour_logsumexp(logits) - self._tumour_logsumexp(shifted)
        return torch.where(self.tumour > 0.5, shifted + keep, logits + self.bias)

    def _tumour_logsumexp(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1) log of the summed exponentials of the tumour classes' entries, computed stably."""
        masked = x - (1.0 - self.tumour) * _OUTSIDE
        top = torch.amax(masked, dim=1, keepdim=True)
        return torch.log(torch.sum(torch.exp(masked - top), dim=1, keepdim=True)) + top
