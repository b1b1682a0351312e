"""Tumours: how many, where, how large, what shape, which compartments.

Compartments map to BraTS labels through :data:`.contrast.LABELS`: necrosis, non-enhancing tumour and
cysts are label 1, oedema label 2, enhancing tumour label 4. HGG: enhancing rim or wall, necrotic
core, patches of non-enhancing tumour, oedema along white matter. LGG: non-enhancing tumour
(T2/FLAIR bright, T1 dark, no enhancement), sometimes a cyst, little or no oedema.

Two lesion models:

- ``irregular`` (training family): 1-3 lesions; whole-tumour radius of the main lesion uniform 15-45 mm
  (60 %) or log-uniform 3-50 mm (a few voxels to a lobe), satellites log-uniform 3-25 mm; randomly oriented ellipsoids whose surface is displaced by smooth noise;
  centres anywhere in the parenchyma (cortex, deep white matter, near the ventricles, posterior
  fossa) with the height in the head drawn uniformly, so tumour and healthy slices come from the
  same levels.
- ``lobulated`` (held-out family): 1-2 lesions; radius uniform 5-38 mm; a union of 2-6 overlapping
  ellipsoids with sharp margins, a thick eccentric enhancing wall, oedema confined to white matter;
  centres at a uniformly drawn height but, within it, drawn in proportion to white-matter content
  (a different location prior that gives the slice level away no more than the first).

Mass effect displaces the anatomy around a tumour within a sphere that stays inside the brain, so the
brain's outline (and its area on a slice) does not grow with a tumour.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gpedge.data.synthetic.contrast import LABELS, LESION
from gpedge.data.synthetic.fields import Grid, box_around, random_rotation, sigmoid, smooth_field, soft_inside

CORE = ("nonenhancing", "enhancing", "necrosis", "cyst")


@dataclass(frozen=True)
class Lesion:
    """One planned tumour in grid mm."""

    centre: np.ndarray
    radius: float  # whole tumour (oedema included), mm
    core: float  # tumour core, mm
    mass_effect: float  # 0-1 strength of the displacement of the surrounding anatomy
    support: float  # mm radius of the displaced region (inside the brain)


def plan(
    rng: np.random.Generator,
    grade: str,
    model: str,
    sites: np.ndarray,
    site_wm: np.ndarray,
    site_depth: np.ndarray,
    voxel_mm: float = 1.0,
    min_radius_mm: float = 0.0,
) -> list[Lesion]:
    """Draw the lesions of one patient.

    ``sites``: candidate centres (grid mm); ``site_wm``: their white-matter share; ``site_depth``: their
    distance to the brain's surface (mm). No lesion is smaller than 1.5 voxels of ``voxel_mm`` in radius
    (a lesion the grid cannot show would only add label noise), nor than ``min_radius_mm``.
    """
    z = sites[:, 2]
    smallest = max(1.5 * voxel_mm, 3.0, min_radius_mm)
    if model == "irregular":
        count = int(rng.choice([1, 2, 3], p=[0.5, 0.3, 0.2]))
        typical = rng.random() < 0.6  # a glioma of typical size, else any size down to a few voxels
        first = rng.uniform(15.0, 45.0) if typical else np.exp(rng.uniform(np.log(smallest), np.log(50.0)))
        satellites = [np.exp(rng.uniform(np.log(smallest), np.log(max(25.0, 2 * smallest)))) for _ in range(count - 1)]
        radii = [max(first, smallest), *satellites]
    else:
        count = int(rng.choice([1, 2], p=[0.75, 0.25]))
        radii = [rng.uniform(max(5.0, smallest), max(38.0, 2 * smallest)) for _ in range(count)]
    lesions = []
    for radius in radii:
        target = rng.uniform(z.min(), z.max())
        near = np.flatnonzero(np.abs(z - target) < 4.0)
        if not near.size:
            near = np.array([int(np.argmin(np.abs(z - target)))])
        weight = np.ones(near.size) if model == "irregular" else (0.15 + site_wm[near]) ** 2
        index = int(rng.choice(near, p=weight / weight.sum()))
        if grade == "HGG":
            core = radius / rng.uniform(1.1, 2.2) if model == "irregular" else radius / rng.uniform(1.3, 2.0)
            strength = rng.uniform(0.15, 0.45)
        else:
            core = radius / rng.uniform(1.0, 1.3) if model == "irregular" else radius / rng.uniform(1.0, 1.2)
            strength = rng.uniform(0.05, 0.2)
        strength *= min(1.0, core / 15.0)
        support = min(2.2 * radius, float(site_depth[index]))
        lesions.append(Lesion(sites[index].copy(), float(radius), float(max(core, 1.5)), float(strength), support))
    return lesions


def _local(grid: Grid, lesion: Lesion, reach: float):
    axes = grid.axes
    box = box_around(axes, lesion.centre, reach)
    local = [ax[b] for ax, b in zip(axes, box)]
    offsets = np.meshgrid(*[ax - np.float32(c) for ax, c in zip(local, lesion.centre)], indexing="ij")
    return box, local, offsets


def _irregular(rng: np.random.Generator, grade: str, lesion: Lesion, grid: Grid, wm: np.ndarray, parenchyma: np.ndarray):
    reach = 1.45 * lesion.radius + 3.0
    box, local, offsets = _local(grid, lesion, reach)
    rot = random_rotation(rng)
    ratios = np.exp(rng.normal(0.0, 0.18, 3))
    ratios /= np.prod(ratios) ** (1 / 3)
    q = [sum(float(rot[e, d]) * offsets[e] for e in range(3)) / np.float32(ratios[d]) for d in range(3)]
    dist = np.sqrt(q[0] ** 2 + q[1] ** 2 + q[2] ** 2)
    raw = np.sqrt(sum(o * o for o in offsets))
    core_r, whole_r = lesion.core, lesion.radius
    noise = [smooth_field(rng, local, s) for s in (max(0.5 * core_r, 2.5), max(0.35 * core_r, 2.0), max(0.5 * whole_r, 3.0))]
    rough = rng.uniform(0.12, 0.35)
    wm_box, par_box = wm[box], parenchyma[box]
    out: dict[str, np.ndarray] = {}
    if grade == "HGG":
        core = sigmoid((1 - dist / core_r + rough * noise[0]) * core_r / rng.uniform(0.6, 1.2))
        rim = rng.uniform(1.5, 5.0)
        necrotic = core_r > rim + 2.5 and rng.random() < 0.85
        inner = core_r - rim
        necrosis = (
            np.minimum(sigmoid((1 - dist / inner + 0.25 * noise[1]) * inner / 0.8), core) if necrotic else np.zeros_like(core)
        )
        enhancing = core - necrosis
        patches = sigmoid((noise[1] - rng.uniform(0.3, 2.5)) / 0.25)
        out["nonenhancing"] = enhancing * patches
        out["enhancing"] = enhancing * (1 - patches)
        out["necrosis"] = necrosis
        wm_bias = rng.uniform(0.3, 0.8)
        whole = sigmoid((1 - dist / whole_r + 0.3 * noise[2] + wm_bias * (wm_box - 0.5)) * whole_r / rng.uniform(2.0, 3.0))
        out["oedema"] = np.clip(whole - core, 0.0, 1.0) * par_box
    else:
        core = sigmoid((1 - dist / core_r + rough * noise[0]) * core_r / rng.uniform(1.5, 3.0))
        cyst = np.zeros_like(core)
        if rng.random() < 0.25 and core_r > 4.0:
            radius = core_r * rng.uniform(0.3, 0.6)
            cyst = np.minimum(sigmoid((1 - dist / radius + 0.2 * noise[1]) * radius / 1.0), core)
        out["cyst"] = cyst
        out["nonenhancing"] = core - cyst
        if rng.random() < 0.6:
            whole_r = max(whole_r, core_r * rng.uniform(1.05, 1.35))
            whole = sigmoid((1 - dist / whole_r + 0.3 * noise[2] + 0.5 * (wm_box - 0.5)) * whole_r / 3.0)
            out["oedema"] = np.clip(whole - core, 0.0, 1.0) * par_box
    taper = np.clip((reach - raw) / (0.25 * reach), 0.0, 1.0)
    return box, {k: v * taper for k, v in out.items()}


def _lobulated(rng: np.random.Generator, grade: str, lesion: Lesion, grid: Grid, wm: np.ndarray, parenchyma: np.ndarray):
    core_r, factor = lesion.core, lesion.radius / lesion.core
    reach = lesion.radius + core_r + 3.0
    box, local, offsets = _local(grid, lesion, reach)
    lobes = []
    for _ in range(int(rng.integers(2, 7))):
        centre = np.clip(rng.normal(0.0, 0.35 * core_r, 3), -0.6 * core_r, 0.6 * core_r)
        lobes.append((centre, core_r * rng.uniform(0.45, 0.8), np.exp(rng.normal(0.0, 0.15, 3))))

    def union(grow: float, shrink: float, edge: float) -> np.ndarray:
        out = np.zeros(offsets[0].shape, dtype=np.float32)
        for centre, radius, axes_ratio in lobes:
            dist = np.sqrt(sum(((o - np.float32(c)) / np.float32(k)) ** 2 for o, c, k in zip(offsets, centre, axes_ratio)))
            out = np.maximum(out, soft_inside(radius * grow - shrink - dist, edge))
        return out

    core = union(1.0, 0.0, 0.5)
    out: dict[str, np.ndarray] = {}
    if grade == "HGG":
        wall = rng.uniform(2.5, 7.0)
        necrosis = np.minimum(union(1.0, wall, 0.7), core)
        out["necrosis"] = necrosis
        out["enhancing"] = core - necrosis
        whole = union(factor, 0.0, 2.0)
        out["oedema"] = np.clip(whole - core, 0.0, 1.0) * np.clip((wm[box] - 0.2) / 0.4, 0.0, 1.0) * parenchyma[box]
    else:
        out["nonenhancing"] = core
        if rng.random() < 0.3:
            whole = union(rng.uniform(1.1, 1.3), 0.0, 1.5)
            out["oedema"] = np.clip(whole - core, 0.0, 1.0) * parenchyma[box]
    return box, out


def paint(
    rng: np.random.Generator, grade: str, model: str, lesions: list[Lesion], grid: Grid, tissue: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Fractions (0-1, summing to at most 1) of every lesion compartment on the grid, inside the brain."""
    shape = grid.shape
    fractions = {name: np.zeros(shape, dtype=np.float32) for name in LESION}
    parenchyma = np.clip(tissue["gm"] + tissue["wm"], 0.0, 1.0)
    draw = _irregular if model == "irregular" else _lobulated
    for lesion in lesions:
        box, parts = draw(rng, grade, lesion, grid, tissue["wm"], parenchyma)
        for name, values in parts.items():
            np.maximum(fractions[name][box], values, out=fractions[name][box])
    brain = np.clip(tissue["brain"], 0.0, 1.0)
    core_total = sum(fractions[name] for name in CORE)
    excess = np.maximum(core_total, 1.0)
    for name in CORE:
        fractions[name] *= brain / excess
    fractions["oedema"] = np.minimum(fractions["oedema"] * brain, np.clip(brain - core_total / excess * brain, 0.0, 1.0))
    return fractions


def segmentation(fractions: dict[str, np.ndarray], brain: np.ndarray) -> np.ndarray:
    """BraTS labels: the dominant compartment wherever lesions fill at least half a voxel of the brain."""
    names = list(fractions)
    stack = np.stack([fractions[n] for n in names])
    labels = np.array([LABELS[n] for n in names], dtype=np.uint8)
    seg = labels[np.argmax(stack, axis=0)]
    seg[(stack.sum(axis=0) < 0.5) | ~brain] = 0
    return seg
