"""GP-ReconResNet: a residual encoder-decoder without skips, InstanceNorm + PReLU, reflection padding."""
from __future__ import annotations

import torch
from torch import nn

from gpedge.models.base import GPNetwork
from gpedge.models.init import LINEAR_GAIN, init_conv_, prelu_gain
from gpedge.models.layers import SINC_MIRROR, UPSAMPLE_MODES
from gpedge.models.sinc import SincUpsample

_PRELU_INIT = 0.25
_GAIN = prelu_gain(_PRELU_INIT)


def _norm_act(channels: int) -> list[nn.Module]:
    return [nn.InstanceNorm2d(channels), nn.PReLU(num_parameters=1, init=_PRELU_INIT)]


def _conv(in_channels: int, out_channels: int, kernel_size: int, gain: float = _GAIN, **kwargs) -> nn.Conv2d:
    return init_conv_(nn.Conv2d(in_channels, out_channels, kernel_size=kernel_size, **kwargs), gain)


class _ResidualBlock(nn.Module):
    """x + (reflpad, conv3x3, IN, PReLU, Dropout2d, reflpad, conv3x3, IN); no activation after the add."""

    def __init__(self, channels: int, dropout: float) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            nn.ReflectionPad2d(1),
            _conv(channels, channels, 3),
            *_norm_act(channels),
            nn.Dropout2d(dropout),
            nn.ReflectionPad2d(1),
            _conv(channels, channels, 3, LINEAR_GAIN),
            nn.InstanceNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.residual(x)


def _up_block(in_channels: int, out_channels: int, upsample: str) -> nn.Sequential:
    if upsample in SINC_MIRROR:
        layers = [SincUpsample(2, mirror=SINC_MIRROR[upsample]), nn.ReflectionPad2d(1), _conv(in_channels, out_channels, 3)]
    elif upsample == "transpose":
        transpose = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=3, stride=2, padding=1, output_padding=1)
        layers = [init_conv_(transpose, _GAIN)]
    else:
        raise ValueError(f"upsample must be one of {', '.join(UPSAMPLE_MODES)}, got {upsample!r}")
    return nn.Sequential(*layers, *_norm_act(out_channels))


class _ReconResNetBody(nn.Module):
    def __init__(self, in_channels: int, width: int, num_res_blocks: int, upsample: str, dropout: float) -> None:
        super().__init__()
        widths = [width, 2 * width, 4 * width]
        self.stem = nn.Sequential(nn.ReflectionPad2d(3), _conv(in_channels, width, 7), *_norm_act(width))
        self.down = nn.Sequential(
            *(
                nn.Sequential(_conv(c_in, c_out, 3, stride=2, padding=1), *_norm_act(c_out))
                for c_in, c_out in zip(widths[:-1], widths[1:])
            )
        )
        self.blocks = nn.Sequential(*(_ResidualBlock(widths[-1], dropout) for _ in range(num_res_blocks)))
        self.up = nn.Sequential(_up_block(widths[2], widths[1], upsample), _up_block(widths[1], widths[0], upsample))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.blocks(self.down(self.stem(x))))


class GPReconResNet(GPNetwork):
    """GP-ReconResNet (paper: width 64, 14 residual blocks, sinc; 17,272,918 parameters at 4 in, 3 classes)."""

    input_multiple = 4

    def __init__(self, in_channels: int, num_classes: int, width: int, num_res_blocks: int, upsample: str, dropout: float) -> None:
        options = {"width": width, "num_res_blocks": num_res_blocks, "upsample": upsample, "dropout": dropout}
        body = _ReconResNetBody(in_channels, width, num_res_blocks, upsample, dropout)
        super().__init__("gp-reconresnet", in_channels, num_classes, options, body, width)
