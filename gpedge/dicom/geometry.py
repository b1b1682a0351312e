"""Slice-stack geometry in DICOM patient coordinates (LPS, millimetres) and the display orientation.

A stack is indexed ``(k, i, j)``: slice, row, column. Its voxel ``(k, i, j)`` lies at
``origin + k * slice_spacing * normal + i * row_spacing * column_cosine + j * column_spacing * row_cosine``
(DICOM PS3.3 C.7.6.2.1.1; the row cosine is the first triplet of ImageOrientationPatient, the
direction in which the column index grows).

The network sees axial slices in the orientation the NIfTI reader gives (``gpedge.runtime.io``):
slices from feet to head, anterior at the top, the patient's right on the left of the image. In
LPS terms the display axes ``(s, r, c)`` point to +z (head), +y (posterior) and +x (left).
:class:`Reorientation` maps a stack onto these axes by axis permutations and flips only (no
interpolation), choosing for each display axis the closest stored axis, as nibabel's
``io_orientation`` does for NIfTI.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: LPS unit vectors of the display axes (s, r, c): head, posterior, left.
DISPLAY_AXES = np.eye(3)[[2, 1, 0]]
#: Name of an acquisition by the patient axis closest to its slice normal (LPS x, y, z).
PLANES = ("sagittal", "coronal", "axial")


@dataclass(frozen=True)
class Grid:
    """The geometry of an ordered stack of ``shape = (slices, rows, columns)`` frames."""

    orientation: tuple[float, ...]
    """ImageOrientationPatient: row cosine then column cosine."""
    pixel_spacing: tuple[float, float]
    """PixelSpacing: (between rows, between columns) in mm."""
    slice_spacing: float
    """Distance between consecutive slice centres along the normal, in mm."""
    origin: tuple[float, float, float]
    """ImagePositionPatient of the first slice (the one lowest along the normal)."""
    shape: tuple[int, int, int]

    @property
    def row_cosine(self) -> np.ndarray:
        return np.asarray(self.orientation[:3], dtype=np.float64)

    @property
    def column_cosine(self) -> np.ndarray:
        return np.asarray(self.orientation[3:], dtype=np.float64)

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.row_cosine, self.column_cosine)

    @property
    def axes(self) -> np.ndarray:
        """(3, 3): LPS unit vector of the stored axes k, i, j (one per row)."""
        return np.stack([self.normal, self.column_cosine, self.row_cosine])

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel spacing along k, i, j in mm."""
        return (self.slice_spacing, *self.pixel_spacing)

    @property
    def affine(self) -> np.ndarray:
        """4x4 matrix mapping voxel indices ``(k, i, j, 1)`` to LPS millimetres."""
        out = np.eye(4)
        out[:3, :3] = (self.axes * np.asarray(self.spacing)[:, None]).T
        out[:3, 3] = self.origin
        return out

    @property
    def voxel_volume_ml(self) -> float:
        return float(np.prod(self.spacing)) / 1000.0

    @property
    def plane(self) -> str:
        """``axial``, ``coronal`` or ``sagittal``: the patient axis closest to the slice normal."""
        return PLANES[int(np.argmax(np.abs(self.normal)))]

    @property
    def display_affine(self) -> np.ndarray:
        """4x4 matrix mapping display indices ``(s, r, c, 1)`` to LPS millimetres."""
        return self.affine @ self.reorientation().index_matrix(self.shape)

    @property
    def display_shape(self) -> tuple[int, int, int]:
        return self.reorientation().display_shape(self.shape)

    def same_display_grid(self, other: "Grid", tol_mm: float = 0.01) -> bool:
        """Whether ``other`` puts the same voxel centres at the same display indices (storage order aside)."""
        if self.display_shape != other.display_shape:
            return False
        corners = np.array([[0, 0, 0], [s - 1 for s in self.display_shape]], dtype=np.float64)
        ours, theirs = self.display_affine, other.display_affine
        return bool(np.allclose(ours[:3, :3], theirs[:3, :3], atol=1e-3)
                    and np.abs(_apply(ours, corners) - _apply(theirs, corners)).max() <= tol_mm)

    def reorientation(self) -> "Reorientation":
        """How this stack maps onto the display axes."""
        return Reorientation.between(self.axes)


def _apply(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ affine[:3, :3].T + affine[:3, 3]


@dataclass(frozen=True)
class Reorientation:
    """Axis permutation and flips taking a stored ``(k, i, j)`` array to display ``(s, r, c)``.

    ``order[d]`` is the stored axis shown along display axis ``d``; ``flip[d]`` says whether
    it runs against that display axis.
    """

    order: tuple[int, int, int]
    flip: tuple[bool, bool, bool]

    @classmethod
    def between(cls, axes: np.ndarray) -> "Reorientation":
        """Closest permutation/flip from stored axes (rows of ``axes``, LPS unit vectors) to the display axes."""
        cosines = np.asarray(axes, dtype=np.float64) @ DISPLAY_AXES.T  # [stored, display]
        order = [-1, -1, -1]
        flip = [False, False, False]
        free = np.abs(cosines)
        for _ in range(3):
            stored, display = np.unravel_index(int(np.argmax(free)), free.shape)
            order[display] = int(stored)
            flip[display] = bool(cosines[stored, display] < 0)
            free[stored, :] = -1.0
            free[:, display] = -1.0
        return cls(tuple(order), tuple(flip))

    @property
    def reslices(self) -> bool:
        """Whether display slices cut across the stored slices (a sagittal or coronal acquisition)."""
        return self.order[0] != 0

    def to_display(self, stack: np.ndarray) -> np.ndarray:
        """(k, i, j, ...) stored -> (s, r, c, ...) display."""
        arr = np.moveaxis(stack, self.order, (0, 1, 2))
        flips = tuple(d for d in range(3) if self.flip[d])
        return np.ascontiguousarray(np.flip(arr, flips) if flips else arr)

    def from_display(self, stack: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`to_display`."""
        flips = tuple(d for d in range(3) if self.flip[d])
        arr = np.flip(stack, flips) if flips else stack
        return np.ascontiguousarray(np.moveaxis(arr, (0, 1, 2), self.order))

    def index_matrix(self, shape: tuple[int, int, int]) -> np.ndarray:
        """4x4 matrix mapping display indices ``(s, r, c, 1)`` to stored indices ``(k, i, j, 1)``."""
        out = np.zeros((4, 4))
        out[3, 3] = 1.0
        for display, stored in enumerate(self.order):
            out[stored, display] = -1.0 if self.flip[display] else 1.0
            out[stored, 3] = shape[stored] - 1 if self.flip[display] else 0.0
        return out

    def display_shape(self, shape: tuple[int, int, int]) -> tuple[int, int, int]:
        return tuple(shape[a] for a in self.order)  # type: ignore[return-value]

    def display_spacing(self, spacing: tuple[float, float, float]) -> tuple[float, float, float]:
        return tuple(spacing[a] for a in self.order)  # type: ignore[return-value]
