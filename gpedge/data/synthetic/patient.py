"""One synthetic patient: anatomy -> pose and deformation -> tumours -> tissue signal -> acquisition.

Each patient draws from three independent random streams (anatomy and pose, lesions, scanner), so
the anatomy and the scanner of a patient do not depend on its grade: a healthy and a tumour patient
with the same seed share anatomy, pose and scanner and differ only by the tumours and their mass effect.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gpedge.data.synthetic import anatomy, contrast, lesions, scanner
from gpedge.data.synthetic.fields import Grid, box_around, open_grid, rotation, smooth_field
from gpedge.errors import DataError

GRADES = ("HGG", "LGG", None)


@dataclass(frozen=True)
class Family:
    """A generator configuration: anatomy model, lesion model, intensity model."""

    name: str
    anatomy: str  # "template" (MNI152) or "phantom" (procedural)
    lesions: str  # "irregular" or "lobulated"
    contrast: str  # "physics" or "table"
    description: str


FAMILIES = {
    "train": Family(
        "train", "template", "irregular", "physics",
        "MNI152 anatomy, deformed per patient; noise-shaped tumours anywhere; MR signal equations",
    ),
    "heldout": Family(
        "heldout", "phantom", "lobulated", "table",
        "procedural brain phantom; lobulated tumours, white-matter location prior; intensity table",
    ),
}


def get_family(name: str) -> Family:
    """The generator family called ``name`` (see :data:`FAMILIES`)."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise DataError(f"synthetic family {name!r} is unknown; use one of {', '.join(FAMILIES)}") from None


@dataclass
class SyntheticPatient:
    """One synthetic patient in BraTS voxel order (axis 0 towards the left, 1 posterior, 2 superior)."""

    volumes: dict[str, np.ndarray]  # contrast -> int16 volume
    seg: np.ndarray  # uint8 BraTS labels 0, 1, 2, 4
    tissue: np.ndarray  # uint8 normal tissue >= 60 %: 1 CSF, 2 GM, 3 WM; 4 mixed; 0 outside the brain
    affine: np.ndarray  # 4 x 4 voxel -> RAS mm
    params: dict[str, Any] = field(default_factory=dict)  # what was drawn (pose, lesions, scanner)


def _displace(coords: np.ndarray, to_source: np.ndarray, spacing: np.ndarray, grid: Grid, centre: np.ndarray, support: float, strength: float) -> None:
    """Expand the anatomy around ``centre`` (grid mm) within ``support`` mm, in place on the sampling coordinates.

    A grid point p samples the source at c + (p - c)(1 - strength * w(|p - c|)) with the smooth, compact
    weight w(r) = (1 - r^2/support^2)^2: positive strength pushes tissue outwards (tumour mass effect,
    ventricle enlargement), negative pulls it in. One-to-one for |strength| < 1.
    """
    axes = grid.axes
    box = box_around(axes, centre, support)
    offset = np.meshgrid(*[ax[b] - np.float32(c) for ax, b, c in zip(axes, box, centre)], indexing="ij")
    u = np.minimum(sum(o * o for o in offset) / np.float32(support * support), 1.0)
    weight = np.float32(strength) * (1.0 - u) ** 2
    for d in range(3):
        coords[(d, *box)] -= weight * sum(np.float32(to_source[d, e] / spacing[d]) * offset[e] for e in range(3))


def synthesise_patient(
    rng: np.random.Generator,
    grade: str | None,
    shape: tuple[int, int, int],
    family_name: str = "train",
    skull_fraction: float = 0.3,
    skull: bool | None = None,
    min_lesion_mm: float = 0.0,
) -> SyntheticPatient:
    """Simulate one patient on a grid of ``shape`` voxels over the BraTS field of view.

    ``grade`` is ``"HGG"``, ``"LGG"`` or None (no tumour); ``family_name`` picks the generator family;
    ``skull`` keeps skull and scalp (True) or strips them as BraTS does (False); None draws it with
    probability ``skull_fraction``; ``min_lesion_mm`` raises the smallest tumour radius (a data set
    whose lesions stay visible at a coarse training size; 0 keeps the family's sizes). BLAS runs on
    one thread here: its sums depend on the thread count, and the same seed must give the same volumes
    on any machine.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return _synthesise(rng, grade, shape, family_name, skull_fraction, skull, min_lesion_mm)


def _synthesise(
    rng: np.random.Generator, grade: str | None, shape: tuple[int, int, int], family_name: str, skull_fraction: float,
    skull: bool | None, min_lesion_mm: float,
) -> SyntheticPatient:
    from scipy import ndimage

    if grade not in GRADES:
        raise DataError(f"synthetic tumour grade {grade!r} is unknown; use 'HGG', 'LGG' or None")
    fam = get_family(family_name)
    grid = Grid(tuple(int(n) for n in shape))
    axes, spacing = grid.axes, grid.spacing
    anatomy_rng, lesion_rng, scanner_rng, head_rng = rng.spawn(4)

    source = (
        anatomy.template_source(tuple(float(s) for s in spacing))
        if fam.anatomy == "template"
        else anatomy.phantom_source(anatomy_rng, float(spacing.min()))
    )
    # Pose: grid mm -> source mm (BraTS LPS -> RAS flip, left-right mirror, head size, rotation, position).
    scale = anatomy_rng.uniform(0.87, 1.13) * anatomy_rng.uniform(0.95, 1.05, 3)
    mirror = -1.0 if anatomy_rng.random() < 0.5 else 1.0
    angles = anatomy_rng.normal(0.0, [5.0, 4.0, 8.0])
    to_source = np.diag([-1.0, -1.0, 1.0]) @ np.diag([mirror, 1.0, 1.0]) @ rotation(angles) @ np.diag(1.0 / scale)
    shift = source.centre + anatomy_rng.normal(0.0, [6.0, 8.0, 5.0])
    to_grid = np.linalg.inv(to_source)

    lin = (to_source / source.spacing[:, None]).astype(np.float32)
    coords = np.empty((3, *grid.shape), dtype=np.float32)
    x, y, z = open_grid(axes)
    warp_scale, warp_amplitude = anatomy_rng.uniform(30.0, 60.0), anatomy_rng.uniform(1.5, 5.0)
    for d in range(3):
        coords[d] = lin[d, 0] * x + lin[d, 1] * y + lin[d, 2] * z
        coords[d] += float((shift[d] - source.origin[d]) / source.spacing[d])
        coords[d] += warp_amplitude / float(source.spacing[d]) * smooth_field(anatomy_rng, axes, warp_scale)
    ventricle_growth = anatomy_rng.uniform(-0.1, 0.35)
    for centre in source.ventricles:
        _displace(coords, to_source, source.spacing, grid, to_grid @ (centre - shift), 28.0 * float(scale.mean()), ventricle_growth)

    planned: list[lesions.Lesion] = []
    if grade is not None:
        sites = (source.sites - shift) @ to_grid.T
        half = grid.spacing * np.asarray(grid.shape) / 2.0
        inside = np.all(np.abs(sites) < half - 4.0, axis=1)
        depth = source.site_depth * float(scale.min())
        planned = lesions.plan(
            lesion_rng, grade, fam.lesions, sites[inside], source.site_wm[inside], depth[inside], float(spacing[:2].max()),
            min_lesion_mm,
        )
        for lesion in planned:
            if lesion.support > 2.0 * float(spacing.min()):
                _displace(coords, to_source, source.spacing, grid, lesion.centre, lesion.support, lesion.mass_effect)

    brain, gm, wm = (ndimage.map_coordinates(m, coords, order=1, output=np.float32) for m in source.maps)
    del coords
    parenchyma = gm + wm
    wm_share = np.clip(wm / np.maximum(parenchyma, 1e-6), 0.0, 1.0) ** anatomy_rng.uniform(0.75, 1.35)
    wm = parenchyma * wm_share
    gm = parenchyma - wm
    csf = np.clip(brain - parenchyma, 0.0, 1.0)
    vessel = anatomy.vessels(anatomy_rng, csf, grid)
    csf -= vessel
    tissue = {"brain": brain, "gm": gm, "wm": wm, "csf": csf}
    brain_mask = brain > 0.5

    fractions: dict[str, np.ndarray] = {}
    if planned:
        fractions = lesions.paint(lesion_rng, grade, fam.lesions, planned, grid, tissue)
        seg = lesions.segmentation(fractions, brain_mask)
    else:
        seg = np.zeros(grid.shape, dtype=np.uint8)
    lesion_total = sum(fractions.values()) if fractions else np.float32(0.0)
    keep = 1.0 - np.clip(lesion_total, 0.0, 1.0)
    fractions.update({"csf": csf * keep, "gm": gm * keep, "wm": wm * keep, "vessel": vessel * keep})
    drawn = head_rng.random() < skull_fraction
    skull = drawn if skull is None else bool(skull)
    if skull:
        for name, layer in anatomy.head_layers(head_rng, brain, grid).items():
            fractions[name] = fractions.get(name, 0.0) + layer

    signals = (contrast.physics_signals if fam.contrast == "physics" else contrast.table_signals)(scanner_rng, lesion_rng)
    grain = 1.0 + anatomy_rng.uniform(0.02, 0.06) * smooth_field(anatomy_rng, axes, anatomy_rng.uniform(2.5, 5.0))
    mottle = 1.0 + lesion_rng.uniform(0.04, 0.12) * smooth_field(lesion_rng, axes, 4.0) if planned else None
    images = {}
    for c, name in enumerate(contrast.CONTRASTS):
        image = np.zeros(grid.shape, dtype=np.float32)
        for tissue_name, fraction in fractions.items():
            term = fraction * signals[tissue_name][c]
            if mottle is not None and tissue_name in contrast.LESION:
                term = term * mottle
            image += term
        images[name] = image * grain
    white_matter = {name: float(signals["wm"][c]) for c, name in enumerate(contrast.CONTRASTS)}
    volumes, acquisition = scanner.acquire(scanner_rng, images, white_matter, grid, brain, stripped=not skull)

    composition = np.stack([csf, gm, wm])
    dominant = np.where(composition.max(axis=0) >= 0.6, np.argmax(composition, axis=0) + 1, 4)
    tissue_map = np.where(brain_mask, dominant, 0).astype(np.uint8)
    params = {
        "family": fam.name,
        "grade": grade,
        "skull": bool(skull),
        "head_scale": float(scale.mean()),
        "mirror": bool(mirror < 0),
        "angles": [float(a) for a in angles],
        "warp_mm": float(warp_amplitude),
        "ventricle_growth": float(ventricle_growth),
        "lesions": [{"centre": l.centre.tolist(), "radius": l.radius, "core": l.core} for l in planned],
        "signals": {k: v.tolist() for k, v in signals.items()},
        "acquisition": acquisition,
    }
    return SyntheticPatient(volumes, seg, tissue_map, grid.affine, params)
