"""GP-UNet: a U-Net with average-pool downsampling, sinc upsampling and the GP head."""
from __future__ import annotations

import torch
from torch import nn

from gpedge.models.base import GPNetwork
from gpedge.models.layers import double_conv, upsample_x2


class _UpBlock(nn.Module):
    """Upsample x2, concatenate the skip, double conv (2*out -> out)."""

    def __init__(self, in_channels: int, out_channels: int, upsample: str, norm: str) -> None:
        super().__init__()
        self.up = upsample_x2(in_channels, out_channels, upsample)
        self.conv = double_conv(2 * out_channels, out_channels, norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([self.up(x), skip], dim=1))


class _UNetBody(nn.Module):
    def __init__(self, in_channels: int, width: int, depth: int, upsample: str, dropout: float, norm: str) -> None:
        super().__init__()
        widths = [width * 2**level for level in range(depth)]
        self.down = nn.ModuleList(double_conv(c_in, c_out, norm) for c_in, c_out in zip([in_channels] + widths[:-1], widths))
        self.pool = nn.AvgPool2d(2)
        self.dropout = nn.Dropout2d(dropout)
        self.up = nn.ModuleList(_UpBlock(c_in, c_out, upsample, norm) for c_in, c_out in zip(widths[:0:-1], widths[-2::-1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for index, block in enumerate(self.down):
            if index:
                x = self.pool(x)
            x = block(x)
            skips.append(x)
        x = self.dropout(skips.pop())
        for block in self.up:
            x = block(x, skips.pop())
        return x


class GPUNet(GPNetwork):
    """GP-UNet (paper: width 64, depth 3, sinc upsampling, no normalisation; 1,740,675 parameters at 4 in, 3 classes).

    ``norm="batch"`` puts a BatchNorm between each 3x3 convolution and its ReLU (docs/quality.md, "BatchNorm").
    """

    def __init__(
        self, in_channels: int, num_classes: int, width: int, depth: int, upsample: str, dropout: float, norm: str
    ) -> None:
        options = {"width": width, "depth": depth, "upsample": upsample, "dropout": dropout, "norm": norm}
        body = _UNetBody(in_channels, width, depth, upsample, dropout, norm)
        super().__init__("gp-unet", in_channels, num_classes, options, body, width)
        self.input_multiple = 2 ** (depth - 1)
