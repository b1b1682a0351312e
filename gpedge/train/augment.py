"""Batch augmentation on the device: random rotation and flips, then slice-max re-normalisation."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from gpedge.graph.fused import normalise_slice_max


def augment_batch(
    images: torch.Tensor, generator: torch.Generator, max_degrees: float = 10.0, rank: int = 0, world_size: int = 1
) -> torch.Tensor:
    """Rotate each (C, H, W) slice of ``images`` by a random angle in ``[-max_degrees, max_degrees]``,
    flip it horizontally and vertically each with probability 1/2, then divide it by its maximum.

    Rotation and flips are one affine resampling (bilinear, zero fill), so each slice is
    interpolated once. The random draws come from ``generator`` (a CPU generator), so a seed
    gives the same augmentation on every device. Images are expected square (H == W).

    With ``world_size`` > 1, ``images`` are the shard ``rank, rank + world_size, ...`` of a global
    batch ``world_size`` times longer: the draws are those of the global batch, each slice gets
    the transform of its place in it.
    """
    count = images.shape[0] * world_size
    angles = (torch.rand(count, generator=generator, dtype=torch.float64) * 2 - 1) * math.radians(max_degrees)
    flip_x = torch.where(torch.rand(count, generator=generator) < 0.5, -1.0, 1.0).double()
    flip_y = torch.where(torch.rand(count, generator=generator) < 0.5, -1.0, 1.0).double()
    cos, sin = torch.cos(angles), torch.sin(angles)
    zero = torch.zeros_like(angles)
    theta = torch.stack(
        [torch.stack([cos * flip_x, -sin * flip_y, zero], dim=1), torch.stack([sin * flip_x, cos * flip_y, zero], dim=1)],
        dim=1,
    )[rank::world_size].to(device=images.device, dtype=images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    moved = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return normalise_slice_max(moved)
