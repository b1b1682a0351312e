"""Building blocks shared by the GP networks, initialised for the nonlinearity that follows them."""
from __future__ import annotations

from torch import nn

from gpedge.models.init import LINEAR_GAIN, RELU_GAIN, init_conv_
from gpedge.models.sinc import SincUpsample

UPSAMPLE_MODES = ("sinc", "sinc-mirror", "transpose")
#: Normalisation after the 3x3 convolutions of the U-Net blocks: ``none`` (the paper's GP-UNet) or ``batch``.
NORMS = ("none", "batch")
#: The sinc upsampling modes and whether each resamples the mirror-extended map.
SINC_MIRROR = {"sinc": False, "sinc-mirror": True}


def conv3x3(in_channels: int, out_channels: int, gain: float = RELU_GAIN, bias: bool = True) -> nn.Conv2d:
    """3x3 convolution, padding 1; He-initialised for ``gain`` (default: a ReLU follows)."""
    return init_conv_(nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=bias), gain)


def conv_relu(in_channels: int, out_channels: int, norm: str = "none") -> nn.Sequential:
    """conv3x3 -> ReLU, or conv3x3 (no bias) -> BatchNorm -> ReLU with ``norm="batch"``."""
    if norm == "batch":
        return nn.Sequential(conv3x3(in_channels, out_channels, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))
    if norm == "none":
        return nn.Sequential(conv3x3(in_channels, out_channels), nn.ReLU(inplace=True))
    raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")


def double_conv(in_channels: int, out_channels: int, norm: str = "none") -> nn.Sequential:
    """Two :func:`conv_relu` in a row (in -> out -> out)."""
    return nn.Sequential(conv_relu(in_channels, out_channels, norm), conv_relu(out_channels, out_channels, norm))


def upsample_x2(in_channels: int, out_channels: int, mode: str) -> nn.Module:
    """Double H and W and map ``in_channels`` to ``out_channels``, linearly (no activation follows).

    ``"sinc"``: Fourier resampling then a 1x1 convolution (``"sinc-mirror"``: of the
    mirror-extended map, see :mod:`gpedge.models.sinc`); ``"transpose"``: a 2x2 stride-2
    transposed convolution. Both are initialised with unit gain.
    """
    if mode in SINC_MIRROR:
        return nn.Sequential(SincUpsample(2, mirror=SINC_MIRROR[mode]), init_conv_(nn.Conv2d(in_channels, out_channels, kernel_size=1), LINEAR_GAIN))
    if mode == "transpose":
        return init_conv_(nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2), LINEAR_GAIN)
    raise ValueError(f"upsample must be one of {', '.join(UPSAMPLE_MODES)}, got {mode!r}")
