"""GP-ShuffleUNet: pixel-(un)shuffle resampling with four parallel branches per level."""
from __future__ import annotations

import torch
from torch import nn

from gpedge.models.base import GPNetwork
from gpedge.models.init import LINEAR_GAIN
from gpedge.models.layers import conv3x3, conv_relu, double_conv


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """The downsampling block's conv (with bias, as in the paper) -> BatchNorm -> ReLU."""
    return nn.Sequential(conv3x3(in_channels, out_channels), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class _EncoderLevel(nn.Module):
    """Four parallel conv branches; the 4th is pixel-unshuffled to half size, then widened to 2f."""

    def __init__(self, width: int, norm: str) -> None:
        super().__init__()
        self.branches = nn.ModuleList(conv_relu(width, width, norm) for _ in range(4))
        self.down = nn.Sequential(
            conv_relu(width, width, norm),
            nn.PixelUnshuffle(2),
            _conv_bn_relu(4 * width, width),
            _conv_bn_relu(width, width),
            double_conv(width, 2 * width, norm),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        branches = [branch(x) for branch in self.branches]
        return self.down(branches[-1]), branches


class _DecoderLevel(nn.Module):
    """Pixel-shuffle 2f -> f at double size, four branches added to the encoder's, concat skip, double conv."""

    def __init__(self, width: int, norm: str) -> None:
        super().__init__()
        self.up = nn.Sequential(conv3x3(2 * width, 4 * width, LINEAR_GAIN), nn.PixelShuffle(2))
        self.branches = nn.ModuleList(conv_relu(width, width, norm) for _ in range(4))
        self.conv = double_conv(5 * width, width, norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor, encoder_branches: list[torch.Tensor]) -> torch.Tensor:
        x = self.up(x)
        sums = [branch(x) + encoded for branch, encoded in zip(self.branches, encoder_branches)]
        return self.conv(torch.cat([skip, *sums], dim=1))


class _ShuffleUNetBody(nn.Module):
    def __init__(self, in_channels: int, width: int, levels: int, dropout: float, norm: str) -> None:
        super().__init__()
        widths = [width * 2**level for level in range(levels)]
        self.stem = double_conv(in_channels, width, norm)
        self.encoder = nn.ModuleList(_EncoderLevel(w, norm) for w in widths)
        self.dropout = nn.Dropout2d(dropout)
        self.decoder = nn.ModuleList(_DecoderLevel(w, norm) for w in reversed(widths))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        saved = []
        for level in self.encoder:
            skip = x
            x, branches = level(x)
            saved.append((skip, branches))
        x = self.dropout(x)
        for level in self.decoder:
            skip, branches = saved.pop()
            x = level(x, skip, branches)
        return x


class GPShuffleUNet(GPNetwork):
    """GP-ShuffleUNet (paper: width 64, 3 levels, BatchNorm only in the downsampling blocks; 26,371,587 parameters
    at 4 in, 3 classes).

    ``norm="batch"`` also puts a BatchNorm between each of the other 3x3 convolutions and its ReLU
    (docs/quality.md, "Why GP-ShuffleUNet learnt slowly").
    """

    def __init__(self, in_channels: int, num_classes: int, width: int, levels: int, dropout: float, norm: str) -> None:
        options = {"width": width, "levels": levels, "dropout": dropout, "norm": norm}
        body = _ShuffleUNetBody(in_channels, width, levels, dropout, norm)
        super().__init__("gp-shuffle-unet", in_channels, num_classes, options, body, width)
        self.input_multiple = 2**levels
