"""The three GP networks and their registry.

``create_model(name, in_channels=4, num_classes=3, **options)`` builds a network whose
``forward`` returns ``GPOutput(logits, heatmaps)``; defaults are the paper configuration.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from gpedge.models.base import GPNetwork
from gpedge.models.heads import GPHead, GPOutput
from gpedge.models.layers import NORMS, UPSAMPLE_MODES
from gpedge.models.reconresnet import GPReconResNet
from gpedge.models.shuffle_unet import GPShuffleUNet
from gpedge.models.unet import GPUNet

__all__ = ["GPHead", "GPNetwork", "GPOutput", "create_model", "list_models", "default_options"]


@dataclass(frozen=True)
class _Entry:
    builder: Callable[..., GPNetwork]
    defaults: dict[str, Any]


_REGISTRY: dict[str, _Entry] = {
    "gp-unet": _Entry(GPUNet, {"width": 64, "depth": 3, "upsample": "sinc", "dropout": 0.5, "norm": "none"}),
    "gp-shuffle-unet": _Entry(GPShuffleUNet, {"width": 64, "levels": 3, "dropout": 0.5, "norm": "none"}),
    "gp-reconresnet": _Entry(GPReconResNet, {"width": 64, "num_res_blocks": 14, "upsample": "sinc", "dropout": 0.5}),
}

def list_models() -> list[str]:
    """Names accepted by :func:`create_model`."""
    return list(_REGISTRY)


def default_options(name: str) -> dict[str, Any]:
    """The paper configuration of ``name`` (the options :func:`create_model` fills in)."""
    return dict(_entry(name).defaults)


def create_model(name: str, in_channels: int = 4, num_classes: int = 3, **options: Any) -> nn.Module:
    """Build GP network ``name`` with ``options`` overriding its paper defaults.

    Raises ``ValueError`` naming the valid choices for an unknown name, option or option value.
    """
    entry = _entry(name)
    unknown = sorted(set(options) - set(entry.defaults))
    if unknown:
        raise ValueError(
            f"{name} does not take option(s) {', '.join(unknown)}; valid options: {', '.join(entry.defaults)}"
        )
    resolved = {**entry.defaults, **options}
    _validate(name, in_channels, num_classes, resolved)
    return entry.builder(in_channels=in_channels, num_classes=num_classes, **resolved)


def _entry(name: str) -> _Entry:
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def _validate(name: str, in_channels: int, num_classes: int, options: dict[str, Any]) -> None:
    minimums = {"in_channels": 1, "num_classes": 2, "width": 1, "depth": 1, "levels": 1, "num_res_blocks": 0}
    values = {"in_channels": in_channels, "num_classes": num_classes, **options}
    for key, minimum in minimums.items():
        value = values.get(key, minimum)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{name}: {key} must be an integer >= {minimum}, got {value!r}")
    if "upsample" in options and options["upsample"] not in UPSAMPLE_MODES:
        raise ValueError(f"{name}: upsample must be one of {', '.join(UPSAMPLE_MODES)}, got {options['upsample']!r}")
    if "norm" in options and options["norm"] not in NORMS:
        raise ValueError(f"{name}: norm must be one of {', '.join(NORMS)}, got {options['norm']!r}")
    dropout = options["dropout"]
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"{name}: dropout must be a probability in [0, 1), got {dropout!r}")
