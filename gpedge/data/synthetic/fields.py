"""Grids, smooth random fields and small geometric helpers shared by the generator's stages."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

FIELD_OF_VIEW_MM = np.array([240.0, 240.0, 155.0])


@dataclass(frozen=True)
class Grid:
    """An output voxel grid over the BraTS field of view, centred on the origin (mm)."""

    shape: tuple[int, int, int]

    @property
    def spacing(self) -> np.ndarray:
        return FIELD_OF_VIEW_MM / np.asarray(self.shape)

    @property
    def axes(self) -> list[np.ndarray]:
        """Voxel-centre coordinates (mm) along each axis."""
        return [((np.arange(n) + 0.5) * s - f / 2.0).astype(np.float32) for n, s, f in zip(self.shape, self.spacing, FIELD_OF_VIEW_MM)]

    @property
    def affine(self) -> np.ndarray:
        """Voxel -> RAS mm in BraTS's orientation (axis 0 towards the left, 1 posterior, 2 superior)."""
        s = self.spacing
        affine = np.diag([-s[0], -s[1], s[2], 1.0])
        affine[1, 3] = (self.shape[1] - 1) * s[1]
        return affine


def open_grid(axes: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three axes as broadcastable (X,1,1), (1,Y,1), (1,1,Z) arrays."""
    x, y, z = axes
    return x[:, None, None], y[None, :, None], z[None, None, :]


def smooth_field(rng: np.random.Generator, axes: Sequence[np.ndarray], scale_mm: float) -> np.ndarray:
    """Smooth random field with zero mean and unit standard deviation on the grid ``axes`` (mm).

    A sum of Gaussian bumps on a lattice of spacing ``scale_mm`` with random weights, evaluated
    separably (cheap even at 240 x 240 x 155).
    """
    bases = []
    for ax in axes:
        centres = np.arange(ax.min() - scale_mm, ax.max() + 1.5 * scale_mm, scale_mm)
        bases.append(np.exp(-0.5 * ((ax[:, None] - centres[None, :]) / (0.7 * scale_mm)) ** 2).astype(np.float32))
    weights = rng.standard_normal(tuple(b.shape[1] for b in bases)).astype(np.float32)
    field = np.einsum("abc,ia,jb,kc->ijk", weights, *bases, optimize=True)
    sample = field[::3, ::3, ::3]
    field -= sample.mean()
    field /= max(float(sample.std()), 1e-6)
    return field


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def soft_inside(signed_mm: np.ndarray, edge_mm: float) -> np.ndarray:
    """Partial-volume fraction of a region given a signed distance (positive inside), edge width in mm."""
    return np.clip(0.5 + signed_mm / (2.0 * edge_mm), 0.0, 1.0).astype(np.float32)


def rotation(angles_deg: Sequence[float]) -> np.ndarray:
    """Rotation matrix from angles (degrees) about x, y and z, applied in that order."""
    ax, ay, az = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3-D rotation."""
    q = rng.standard_normal(4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def box_around(axes: Sequence[np.ndarray], centre: np.ndarray, reach: float) -> tuple[slice, slice, slice]:
    """Index box of the grid points within ``reach`` mm of ``centre`` along every axis."""
    return tuple(
        slice(int(np.searchsorted(ax, c - reach)), int(np.searchsorted(ax, c + reach))) for ax, c in zip(axes, centre)
    )
