"""The paper's mask rule as a torch module, exported inside the fused graph.

It uses only operations TensorRT runs well: the histogram is built by comparisons and a MatMul
of one-hot codes, cumulative sums are MatMuls with a triangular constant, and the multi-Otsu
search is an exhaustive max over all threshold pairs (no CumSum, Loop, or INT64 outputs).
The host reference it is tested against is scikit-image's, in ``tests/mask_reference.py``.
"""
from __future__ import annotations

import torch
from torch import nn

from gpedge.graph.contract import MASK_BINS as BINS

_DIGIT = 16  # the histogram index is split into two base-16 digits: two (N, H*W, 16) one-hots


class MultiOtsuMask(nn.Module):
    """The mask rule (``gpedge.graph.contract.mask_rule``) on a batch of (N, H, W) maps, binned and
    scored exactly as ``skimage.filters.threshold_multiotsu(classes=3, nbins=256)`` does.

    Returns ``threshold`` (N,) and ``mask`` (N, H, W) bool. ``keep`` (N,) bool says which
    samples may have a non-empty mask (False for the no-tumour class).
    """

    def __init__(self) -> None:
        super().__init__()
        index = torch.arange(BINS)
        self.register_buffer("upper_triangle", (index[:, None] <= index[None, :]).float(), persistent=False)
        # scikit-image's first moment weights bin 0 by 1 and bin i > 0 by i
        self.register_buffer("moment_weights", index.clamp(min=1).float(), persistent=False)
        t1, t2 = index[:, None], index[None, :]
        self.register_buffer("valid_pairs", (t1 < t2) & (t2 <= BINS - 2), persistent=False)
        self.register_buffer("pair_index", torch.arange(BINS * BINS).float().reshape(BINS, BINS), persistent=False)
        self.register_buffer("digits", torch.arange(_DIGIT).float(), persistent=False)
        # scikit-image never fills the [0, 0] entry of its variance table: a first class of bin 0 scores 0
        self.register_buffer("low_class_weight", (index > 0).float(), persistent=False)

    def forward(self, maps: torch.Tensor, offset: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, height, width = maps.shape
        x = torch.relu(maps).reshape(n, height * width)
        lo = torch.amin(x, dim=1, keepdim=True)
        hi = torch.amax(x, dim=1, keepdim=True)
        span = hi - lo
        step = span / BINS
        index = self._bin_index(x, lo, hi, span, step)
        prob = self._histogram(index) / float(height * width)

        occupied = (prob > 0).float()
        cum_occupied = occupied @ self.upper_triangle
        n_values = cum_occupied[:, -1:]
        zeroth = prob @ self.upper_triangle
        first = (prob * self.moment_weights) @ self.upper_triangle

        # with exactly three occupied bins scikit-image splits at the first two occupied bins
        second_occupied = (cum_occupied < 2).float().sum(dim=1, keepdim=True)
        t2 = torch.where(n_values == 3, second_occupied, self._upper_bin(zeroth, first))

        upper = (self._edge(t2, lo, hi, step) + self._edge(t2 + 1, lo, hi, step)) / 2.0
        threshold = torch.clamp(upper - offset, min=0.0)
        threshold = torch.where(n_values < 3, hi, threshold)
        mask = (x > threshold) & keep[:, None]
        return threshold.reshape(n), mask.reshape(n, height, width)

    @staticmethod
    def _edge(k: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        """Bin edge ``k`` as ``numpy.linspace(lo, hi, BINS + 1)`` computes it in float32."""
        return torch.where(k >= BINS, hi, k * step + lo)

    def _bin_index(self, x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, span: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        """Bin of every value as ``numpy.histogram`` assigns it: estimate, then correct against the edges."""
        safe_span = torch.where(span > 0, span, torch.ones_like(span))
        index = torch.clamp(torch.floor((x - lo) / safe_span * BINS), 0.0, BINS - 1.0)
        index = index - (x < self._edge(index, lo, hi, step)).float()
        above = (x >= self._edge(index + 1, lo, hi, step)) & (index < BINS - 1)
        return index + above.float()

    def _histogram(self, index: torch.Tensor) -> torch.Tensor:
        """(N, BINS) counts of an (N, P) bin index, as one-hot(high digit)^T @ one-hot(low digit)."""
        high = torch.floor(index / _DIGIT)
        low = index - high * _DIGIT
        one_high = (high.unsqueeze(-1) == self.digits).float()
        one_low = (low.unsqueeze(-1) == self.digits).float()
        return (one_high.transpose(1, 2) @ one_low).reshape(-1, BINS)

    def _upper_bin(self, zeroth: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
        """(N, 1) upper bin t2 of the pair (t1, t2) maximising the between-class variance (first pair on ties)."""
        total0, total1 = zeroth[:, -1:], first[:, -1:]
        low_class = _variance(first, zeroth) * self.low_class_weight
        high_class = _variance(total1 - first, total0 - zeroth)
        mid_class = _variance(first[:, None, :] - first[:, :, None], zeroth[:, None, :] - zeroth[:, :, None])
        sigma = (low_class[:, :, None] + high_class[:, None, :]) + mid_class
        sigma = torch.where(self.valid_pairs, sigma, torch.full_like(sigma, -1.0))
        best = torch.amax(sigma, dim=(1, 2), keepdim=True)
        big = torch.full_like(sigma, float(BINS * BINS))
        flat = torch.amin(torch.where(sigma == best, self.pair_index, big), dim=(1, 2)).reshape(-1, 1)
        return flat - torch.floor(flat / BINS) * BINS


def _variance(moment1: torch.Tensor, moment0: torch.Tensor) -> torch.Tensor:
    """``moment1**2 / moment0`` where the class is occupied, else 0."""
    occupied = moment0 > 0
    safe = torch.where(occupied, moment0, torch.ones_like(moment0))
    return torch.where(occupied, moment1 * moment1 / safe, torch.zeros_like(moment1))
