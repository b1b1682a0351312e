"""Batch augmentation on the device: random rotation and flips (the paper's), optionally scale and per-channel
intensity (what scanners vary), then slice-max re-normalisation."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gpedge.graph.fused import normalise_slice_max


@dataclass(frozen=True)
class Intensity:
    """Scanner-like variation drawn per slice: isotropic zoom by a factor in ``[1/zoom, zoom]``, and per channel a
    gamma ``exp(U(-gamma, gamma))`` of the channel's own range and a gain ``exp(U(-gain, gain))`` (before the
    slice-max normalisation, so the contrasts' relative brightness varies too)."""

    zoom: float = 1.0
    gamma: float = 0.0
    gain: float = 0.0


#: Named augmentations (``gpedge train --augment``): ``paper`` rotation and flips only; ``scanner`` adds zoom, gamma and
#: gain; ``gain`` adds only a per-channel gain of x0.41-2.46 (raw MR intensities have no common scale between contrasts
#: and sites, and the joint slice maximum keeps their ratio).
AUGMENTATIONS = {
    "paper": Intensity(),
    "scanner": Intensity(zoom=1.15, gamma=0.4, gain=0.2),
    "gain": Intensity(gain=0.9),
}


def augment_batch(
    images: torch.Tensor, generator: torch.Generator, max_degrees: float = 10.0, rank: int = 0, world_size: int = 1,
    intensity: Intensity = AUGMENTATIONS["paper"],
) -> torch.Tensor:
    """Rotate each (C, H, W) slice of ``images`` by a random angle in ``[-max_degrees, max_degrees]``,
    flip it horizontally and vertically each with probability 1/2, apply ``intensity``, then divide it by its maximum.

    Rotation, flips and zoom are one affine resampling (bilinear, zero fill), so each slice is
    interpolated once. The random draws come from ``generator`` (a CPU generator), so a seed
    gives the same augmentation on every device; ``paper`` draws nothing beyond rotation and flips.
    Images are expected square (H == W).

    With ``world_size`` > 1, ``images`` are the shard ``rank, rank + world_size, ...`` of a global
    batch ``world_size`` times longer: the draws are those of the global batch, each slice gets
    the transform of its place in it.
    """
    count = images.shape[0] * world_size
    channels = images.shape[1]
    angles = (torch.rand(count, generator=generator, dtype=torch.float64) * 2 - 1) * math.radians(max_degrees)
    flip_x = torch.where(torch.rand(count, generator=generator) < 0.5, -1.0, 1.0).double()
    flip_y = torch.where(torch.rand(count, generator=generator) < 0.5, -1.0, 1.0).double()
    zoom = torch.exp((torch.rand(count, generator=generator, dtype=torch.float64) * 2 - 1) * math.log(intensity.zoom)) \
        if intensity.zoom > 1.0 else torch.ones(count, dtype=torch.float64)
    cos, sin = torch.cos(angles) / zoom, torch.sin(angles) / zoom
    zero = torch.zeros_like(angles)
    theta = torch.stack(
        [torch.stack([cos * flip_x, -sin * flip_y, zero], dim=1), torch.stack([sin * flip_x, cos * flip_y, zero], dim=1)],
        dim=1,
    )[rank::world_size].to(device=images.device, dtype=images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    moved = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if intensity.gamma > 0 or intensity.gain > 0:
        def draw(spread: float) -> torch.Tensor:
            values = torch.exp((torch.rand(count, channels, generator=generator) * 2 - 1) * spread)
            return values[rank::world_size].to(device=images.device, dtype=images.dtype)[:, :, None, None]

        gamma, gain = draw(intensity.gamma), draw(intensity.gain)
        top = moved.amax(dim=(2, 3), keepdim=True).clamp_min(torch.finfo(moved.dtype).tiny)
        moved = (moved.clamp_min(0) / top) ** gamma * top * gain
    return normalise_slice_max(moved)
