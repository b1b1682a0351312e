"""The mask rules as torch modules, exported inside the fused graph.

:class:`MaskRule` builds the map a rule thresholds (the predicted class's map or the contrast
map, negatives zeroed, zeroed outside the head region when asked) and its threshold from the
lower and upper multi-Otsu thresholds (:class:`MultiOtsu`); the rule is chosen per call by the
graph's ``offset`` and ``mask_rule`` inputs (:mod:`gpedge.graph.contract`). Only operations
TensorRT runs well: the histogram is built by comparisons and a MatMul of one-hot codes,
cumulative sums are MatMuls with a triangular constant, the multi-Otsu search is an exhaustive
max over all threshold pairs, erosion is a max pool (no CumSum, Loop, or INT64 outputs). The
host reference the tests hold it to (scikit-image's multi-Otsu) is ``tests/mask_reference.py``.
"""
from __future__ import annotations

import torch
from torch import nn

from gpedge.graph.contract import HEAD_FRACTION
from gpedge.graph.contract import MASK_BINS as BINS

_DIGIT = 16  # the histogram index is split into two base-16 digits: two (N, H*W, 16) one-hots


class MaskRule(nn.Module):
    """Every mask rule of :data:`gpedge.graph.contract.MASK_RULES` on a batch, selected by ``rule``.

    ``forward(heatmaps (N, K, H, W), label (N,), image (N, C, H, W) normalised, offset (1,),
    rule (3,) int32, keep (N,) bool or None)`` returns ``score`` (N, H, W), the thresholded map;
    ``threshold`` (N,); and ``mask`` (N, H, W) bool = score > threshold where ``keep`` (default:
    the label is not ``empty_for_class``). ``erosion`` is the head region's erosion radius (px).
    """

    def __init__(self, empty_for_class: int | None, erosion: int) -> None:
        super().__init__()
        self.empty_for_class = -1 if empty_for_class is None else int(empty_for_class)
        self.erosion = int(erosion)
        self.otsu = MultiOtsu()

    def forward(self, heatmaps: torch.Tensor, label: torch.Tensor, image: torch.Tensor, offset: torch.Tensor,
                rule: torch.Tensor, keep: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n, k, height, width = heatmaps.shape
        codes = rule.to(torch.float32)
        use_contrast = codes[0:1].reshape(1, 1, 1) > 0.5
        relative = codes[1:2].reshape(1, 1) > 0.5
        use_head = codes[2:3].reshape(1, 1, 1) > 0.5
        chosen = torch.gather(heatmaps, 1, label.reshape(n, 1, 1, 1).expand(n, 1, height, width)).reshape(n, height, width)
        score = torch.relu(torch.where(use_contrast, chosen - self._reference(heatmaps, chosen), chosen))
        score = torch.where(use_head, score * self._head(image), score)
        x = score.reshape(n, height * width)
        lower, upper, hi, split = self.otsu(x)
        p = offset.reshape(-1, 1)  # (1,) per call, or (N, 1) per sample (servers that merge requests)
        scaled = upper - p * torch.where(p >= 0, upper - lower, hi - upper)
        threshold = torch.clamp(torch.where(relative, scaled, upper - p), min=0.0)
        threshold = torch.where(split, threshold, hi)
        if keep is None:
            keep = label != self.empty_for_class
        mask = (x > threshold) & keep[:, None]
        return score, threshold.reshape(n), mask.reshape(n, height, width)

    def _reference(self, heatmaps: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
        """The map the contrast subtracts: the no-tumour class's, else the mean of the other classes' (0 for K = 1)."""
        k = heatmaps.shape[1]
        if self.empty_for_class >= 0:
            return heatmaps[:, self.empty_for_class]
        if k == 1:
            return torch.zeros_like(chosen)
        return (heatmaps.sum(dim=1) - chosen) / float(k - 1)

    def _head(self, image: torch.Tensor) -> torch.Tensor:
        """(N, H, W) float 0/1: any channel above HEAD_FRACTION of the slice maximum, eroded (outside counts as head)."""
        foreground = (torch.amax(image, dim=1) > HEAD_FRACTION).float()
        size = 2 * self.erosion + 1
        outside = torch.nn.functional.max_pool2d(1.0 - foreground.unsqueeze(1), size, stride=1, padding=self.erosion)
        return 1.0 - outside.squeeze(1)


class MultiOtsu(nn.Module):
    """Lower and upper thresholds of three-class multi-Otsu over 256 bins of each row's own range,
    binned and scored exactly as ``skimage.filters.threshold_multiotsu(classes=3, nbins=256)``.

    ``forward(x (N, P) non-negative)`` returns ``lower``, ``upper``, the row maximum ``hi`` (each
    (N, 1)) and ``split`` (N, 1) bool: False for rows with fewer than three occupied bins (no split).
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

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        lo = torch.amin(x, dim=1, keepdim=True)
        hi = torch.amax(x, dim=1, keepdim=True)
        span = hi - lo
        step = span / BINS
        index = self._bin_index(x, lo, hi, span, step)
        prob = self._histogram(index) / float(x.shape[1])

        occupied = (prob > 0).float()
        cum_occupied = occupied @ self.upper_triangle
        n_values = cum_occupied[:, -1:]
        zeroth = prob @ self.upper_triangle
        first = (prob * self.moment_weights) @ self.upper_triangle

        # with exactly three occupied bins scikit-image splits at the first two occupied bins
        first_occupied = (cum_occupied < 1).float().sum(dim=1, keepdim=True)
        second_occupied = (cum_occupied < 2).float().sum(dim=1, keepdim=True)
        t1, t2 = self._best_pair(zeroth, first)
        three = n_values == 3
        t1 = torch.where(three, first_occupied, t1)
        t2 = torch.where(three, second_occupied, t2)
        lower = (self._edge(t1, lo, hi, step) + self._edge(t1 + 1, lo, hi, step)) / 2.0
        upper = (self._edge(t2, lo, hi, step) + self._edge(t2 + 1, lo, hi, step)) / 2.0
        return lower, upper, hi, n_values >= 3

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

    def _best_pair(self, zeroth: torch.Tensor, first: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 1) bins t1 < t2 of the pair maximising the between-class variance (first pair on ties)."""
        total0, total1 = zeroth[:, -1:], first[:, -1:]
        low_class = _variance(first, zeroth) * self.low_class_weight
        high_class = _variance(total1 - first, total0 - zeroth)
        mid_class = _variance(first[:, None, :] - first[:, :, None], zeroth[:, None, :] - zeroth[:, :, None])
        sigma = (low_class[:, :, None] + high_class[:, None, :]) + mid_class
        sigma = torch.where(self.valid_pairs, sigma, torch.full_like(sigma, -1.0))
        best = torch.amax(sigma, dim=(1, 2), keepdim=True)
        big = torch.full_like(sigma, float(BINS * BINS))
        flat = torch.amin(torch.where(sigma == best, self.pair_index, big), dim=(1, 2)).reshape(-1, 1)
        t1 = torch.floor(flat / BINS)
        return t1, flat - t1 * BINS


def _variance(moment1: torch.Tensor, moment0: torch.Tensor) -> torch.Tensor:
    """``moment1**2 / moment0`` where the class is occupied, else 0."""
    occupied = moment0 > 0
    safe = torch.where(occupied, moment0, torch.ones_like(moment0))
    return torch.where(occupied, moment1 * moment1 / safe, torch.zeros_like(moment1))
