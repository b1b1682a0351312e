"""Dead-layer check of a network: weights sunk to zero or denormals, channels that never vary.

A layer is dead when it carries no information about its input: most of its weights are
(near) zero, or most of its output channels are constant over a batch of real images (a ReLU
that never fires, a convolution reduced to its bias). Such layers cost time (denormal floats are
slow on CPUs) and signal a broken recipe; :func:`check_layers` finds them.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from gpedge.models.init import fan_in

_WEIGHTED = (nn.Conv2d, nn.ConvTranspose2d)
_ACTIVATIONS = (nn.ReLU, nn.PReLU, nn.LeakyReLU)
_FLOAT32_TINY = torch.finfo(torch.float32).tiny

COLLAPSE_SCALE = 1e-6
"""A weight is collapsed below this fraction of its layer's He scale ``sqrt(2 / fan_in)``."""
DEAD_FRACTION = 0.5
"""A layer is dead when more than this share of its weights is collapsed or of its channels is constant."""


@dataclass(frozen=True)
class LayerReport:
    """Health figures of one layer (``None``: not measured for this kind of layer)."""

    layer: str
    weight_rms: float | None = None
    collapsed_weights: float | None = None
    """Share of weights below ``COLLAPSE_SCALE`` times the He scale (zeros and denormals included)."""
    denormal_weights: float | None = None
    """Share of non-zero weights below the smallest normal float32 (slow on CPUs)."""
    constant_channels: float | None = None
    """Share of output channels with one value over the whole batch and image (eval mode)."""

    @property
    def reasons(self) -> list[str]:
        """Why this layer counts as dead (empty when it is healthy)."""
        found = []
        if self.collapsed_weights is not None and self.collapsed_weights > DEAD_FRACTION:
            found.append(f"{self.collapsed_weights:.0%} of its weights are ~0 (rms {self.weight_rms:.1e})")
        if self.constant_channels is not None and self.constant_channels > DEAD_FRACTION:
            found.append(f"{self.constant_channels:.0%} of its output channels are constant")
        return found

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "dead": bool(self.reasons)}


@torch.no_grad()
def check_layers(model: nn.Module, images: torch.Tensor) -> list[LayerReport]:
    """Measure every convolution (weights, output channels) and activation (output channels) of
    ``model`` on ``images`` in eval mode; the model's mode is restored afterwards."""
    reports: dict[str, dict[str, float]] = {}
    hooks = []

    def record(name: str):
        def hook(module: nn.Module, inputs, output: torch.Tensor) -> None:
            reports.setdefault(name, {})["constant_channels"] = _constant_channels(output)

        return hook

    for name, module in model.named_modules():
        if isinstance(module, _WEIGHTED):
            reports[name] = _weight_figures(module)
        if isinstance(module, _WEIGHTED + _ACTIVATIONS):
            hooks.append(module.register_forward_hook(record(name)))
    was_training = model.training
    model.eval()
    try:
        model(images)
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return [LayerReport(layer=name, **figures) for name, figures in reports.items()]


def dead_layers(reports: list[LayerReport]) -> dict[str, list[str]]:
    """``{layer: reasons}`` of the dead layers among ``reports``."""
    return {report.layer: report.reasons for report in reports if report.reasons}


def _weight_figures(module: nn.Module) -> dict[str, float]:
    weight = module.weight.detach().float()
    magnitude = weight.abs()
    scale = math.sqrt(2.0 / fan_in(module))
    nonzero = magnitude > 0
    return {
        "weight_rms": float(weight.pow(2).mean().sqrt()),
        "collapsed_weights": float((magnitude < COLLAPSE_SCALE * scale).float().mean()),
        "denormal_weights": float((nonzero & (magnitude < _FLOAT32_TINY)).float().mean()),
    }


def _constant_channels(output: torch.Tensor) -> float:
    channels = output.detach().float().transpose(0, 1).reshape(output.shape[1], -1)
    spread = channels.amax(dim=1) - channels.amin(dim=1)
    level = channels.abs().amax(dim=1)
    return float((spread <= 1e-6 * (1.0 + level)).float().mean())
