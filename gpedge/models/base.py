"""Common shell of the GP networks: input checks, feature extractor, GP head."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from gpedge.models.heads import GPHead, GPOutput


class GPNetwork(nn.Module):
    """A feature extractor followed by the GP head.

    Subclasses build ``self.body`` (input -> full-resolution features of ``feature_channels``)
    and set ``input_multiple``.
    """

    input_multiple: int = 1

    def __init__(self, arch: str, in_channels: int, num_classes: int, options: dict[str, Any], body: nn.Module, feature_channels: int) -> None:
        super().__init__()
        self.config = {"arch": arch, "in_channels": in_channels, "num_classes": num_classes, "options": dict(options)}
        self.body = body
        self.head = GPHead(feature_channels, num_classes)

    def forward(self, x: torch.Tensor) -> GPOutput:
        self._check_input(x)
        return self.head(self.body(x))

    def _check_input(self, x: torch.Tensor) -> None:
        in_channels = self.config["in_channels"]
        if x.dim() != 4 or x.shape[1] != in_channels:
            raise ValueError(
                f"{self.config['arch']} expects input of shape (N, {in_channels}, H, W), got {tuple(x.shape)}"
            )
        height, width = int(x.shape[-2]), int(x.shape[-1])
        multiple = self.input_multiple
        if height % multiple or width % multiple:
            raise ValueError(
                f"{self.config['arch']} needs H and W divisible by {multiple}, got {height}x{width}; "
                f"resize or pad the input (e.g. to {_round_up(height, multiple)}x{_round_up(width, multiple)})"
            )


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple
