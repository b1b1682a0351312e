"""Initialisation of the GP networks, matched to what follows each convolution.

PyTorch's default (``kaiming_uniform_(a=sqrt(5))`` weights, uniform biases of the same scale)
gives a conv+ReLU layer a second-moment gain of 1/6, so a few layers deep the features are
bias-dominated and nearly identical for every image; the data gradients of those layers fall
below an L2 decay term and Adam then shrinks them to zero (docs/quality.md, "Training").
Here every weight of the feature extractor is drawn from ``N(0, gain^2 / fan_in)`` with the gain
of the nonlinearity that follows (He et al. 2015) and biases start at zero. The GP head keeps
PyTorch's smaller default: its input is a spatial maximum, and a He-scaled head starts
GP-ShuffleUNet at a loss of 10 with most head gradients clipped.
"""
from __future__ import annotations

import math

from torch import nn

RELU_GAIN = math.sqrt(2.0)
LINEAR_GAIN = 1.0


def prelu_gain(slope: float) -> float:
    """Gain of a leaky ReLU/PReLU with negative slope ``slope``: ``sqrt(2 / (1 + slope^2))``."""
    return math.sqrt(2.0 / (1.0 + slope**2))


def fan_in(module: nn.Conv2d | nn.ConvTranspose2d) -> float:
    """Inputs that reach one output value: ``C_in/groups * kH * kW`` for a convolution, divided by
    ``sH * sW`` for a transposed one (each output pixel sees one kernel tap per stride cell)."""
    kernel = module.kernel_size[0] * module.kernel_size[1]
    if isinstance(module, nn.ConvTranspose2d):
        return module.in_channels * kernel / (module.stride[0] * module.stride[1])
    return module.in_channels // module.groups * kernel


def init_conv_(module: nn.Conv2d | nn.ConvTranspose2d, gain: float) -> nn.Module:
    """Draw ``module``'s weight from ``N(0, gain^2 / fan_in)``, zero its bias; return it."""
    nn.init.normal_(module.weight, 0.0, gain / math.sqrt(fan_in(module)))
    if module.bias is not None:
        nn.init.zeros_(module.bias)
    return module

