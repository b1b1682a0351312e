"""Synthetic brain MRI with gliomas, written in the BraTS 2020 layout.

Anatomy comes from the MNI152 (ICBM 2009a) template bundled with nilearn: brain mask and
grey/white-matter probability maps, CSF = brain - GM - WM. Every patient gets its own
smooth deformation, size, slight rotation and shift; a tumour (HGG or LGG) displaces the
tissue around it (mass effect). Four contrasts are simulated from the tissue fractions with
textbook relative intensities (T1: WM > GM > CSF; T2: CSF bright; FLAIR: CSF dark, oedema
bright; T1CE: T1 plus an enhancing tumour rim), then a bias field, a per-contrast intensity
scale and Rician noise are applied and the volume is skull-stripped, like BraTS.

- HGG: irregular mass with an enhancing rim (label 4) around a necrotic core (label 1, dark
  on T1, bright on T2), inside oedema that spreads along white matter (label 2).
- LGG: diffuse non-enhancing tumour (label 1, bright on T2/FLAIR, slightly dark on T1),
  sometimes with a cyst, and a thin rim of oedema (label 2).

Volumes cover the BraTS field of view (240 x 240 x 155 mm); a smaller grid (e.g. 64 x 64 x 24)
has proportionally larger voxels, recorded in the affine (1 mm at the default size, with
BraTS's orientation).
"""
from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from gpedge.errors import DataError
from gpedge.package import atomic_write_bytes

FIELD_OF_VIEW_MM = np.array([240.0, 240.0, 155.0])
CONTRASTS = ("t1", "t2", "t1ce", "flair")
MAPPING_COLUMNS = (
    "Grade",
    "BraTS_2017_subject_ID",
    "BraTS_2018_subject_ID",
    "TCGA_TCIA_subject_ID",
    "BraTS_2019_subject_ID",
    "BraTS_2020_subject_ID",
)

# Relative signal per tissue and contrast (columns: t1, t2, t1ce, flair).
_SIGNAL = {
    "csf": (0.28, 1.00, 0.28, 0.10),
    "gm": (0.60, 0.58, 0.62, 0.62),
    "wm": (0.85, 0.40, 0.86, 0.45),
    "oedema": (0.48, 0.85, 0.50, 0.92),
    "enhancing": (0.55, 0.62, 1.30, 0.75),
    "necrosis": (0.26, 0.95, 0.26, 0.48),
    "solid": (0.47, 0.80, 0.48, 0.88),
    "cyst": (0.22, 1.05, 0.22, 0.18),
}


@dataclass(frozen=True)
class Atlas:
    """Tissue maps in MNI 1 mm voxel space."""

    maps: np.ndarray  # (3, X, Y, Z) float32: brain, gm, wm fractions (CSF = brain - gm - wm)
    origin: np.ndarray  # MNI mm of voxel (0, 0, 0)
    centre: np.ndarray  # MNI mm of the brain's bounding-box centre
    seeds: np.ndarray  # (N, 3) MNI mm of candidate tumour centres (deep supratentorial white matter)


@lru_cache(maxsize=1)
def _mni_atlas() -> Atlas:
    """Load the nilearn-bundled MNI152 maps (no download) and derive CSF and tumour seeds."""
    from nilearn import datasets
    from scipy import ndimage

    brain_img = datasets.load_mni152_brain_mask(resolution=1)
    brain = np.asarray(brain_img.dataobj, dtype=np.float32)
    gm = np.asarray(datasets.load_mni152_gm_template(resolution=1).dataobj, dtype=np.float32) * brain
    wm = np.asarray(datasets.load_mni152_wm_template(resolution=1).dataobj, dtype=np.float32) * brain
    affine = brain_img.affine
    if not np.allclose(np.abs(np.diag(affine)[:3]), 1.0):
        raise DataError("the nilearn MNI152 templates are not at 1 mm; reinstall nilearn")
    origin = affine[:3, 3].astype(np.float64)
    voxels = np.argwhere(brain > 0.5)
    centre = origin + (voxels.min(0) + voxels.max(0)) / 2.0
    depth = ndimage.distance_transform_edt(brain > 0.5)
    candidates = np.argwhere((depth > 16) & (wm > 0.4))
    candidates = candidates[origin[2] + candidates[:, 2] > -12.0]
    seeds = origin + candidates[:: max(1, len(candidates) // 4000)].astype(np.float64)
    return Atlas(np.stack([brain, gm, wm]), origin, centre, seeds)


@lru_cache(maxsize=4)
def _atlas_for(spacing: tuple[float, float, float]) -> Atlas:
    """The atlas low-pass filtered for sampling at ``spacing`` mm (avoids aliasing on coarse grids)."""
    from scipy import ndimage

    atlas = _mni_atlas()
    sigma = [0.42 * np.sqrt(max(s * s - 1.0, 0.0)) for s in spacing]
    if max(sigma) < 0.2:
        return atlas
    maps = np.stack([ndimage.gaussian_filter(m, sigma) for m in atlas.maps])
    return Atlas(maps, atlas.origin, atlas.centre, atlas.seeds)


def _rotation(angles_deg: np.ndarray) -> np.ndarray:
    ax, ay, az = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def smooth_field(rng: np.random.Generator, axes: Sequence[np.ndarray], scale_mm: float) -> np.ndarray:
    """Smooth random field with unit standard deviation on the grid ``axes`` (mm, one array per axis).

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


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


@dataclass
class _Tumour:
    """Tumour compartments as fractions (0-1) inside a bounding box of the volume."""

    box: tuple[slice, slice, slice]
    fractions: dict[str, np.ndarray]  # oedema, enhancing, necrosis, solid, cyst


def _axes_mm(shape: Sequence[int], spacing: np.ndarray) -> list[np.ndarray]:
    return [((np.arange(n) + 0.5) * s - fov / 2.0).astype(np.float32) for n, s, fov in zip(shape, spacing, FIELD_OF_VIEW_MM)]


def _mass_effect(
    mni: np.ndarray, linear: np.ndarray, axes: list[np.ndarray], centre: np.ndarray, support: float, strength: float
) -> None:
    """Push tissue away from ``centre`` (grid mm) within ``support`` mm, in place on the sampling map.

    A grid point p samples the anatomy at c + (p - c)(1 - strength * w(|p - c|)) with the compact,
    smooth weight w(r) = (1 - r^2/support^2)^2; the map stays one-to-one for strength < 1.
    """
    box = tuple(
        slice(int(np.searchsorted(ax, c - support)), int(np.searchsorted(ax, c + support))) for ax, c in zip(axes, centre)
    )
    offset = np.meshgrid(*[ax[b] - np.float32(c) for ax, b, c in zip(axes, box, centre)], indexing="ij")
    u = np.minimum(sum(o * o for o in offset) / np.float32(support * support), 1.0)
    weight = np.float32(strength) * (1.0 - u) ** 2
    for d in range(3):
        mni[(d, *box)] -= weight * sum(linear[d, e] * offset[e] for e in range(3))


def _tumour_geometry(rng: np.random.Generator, grade: str) -> dict[str, float]:
    if grade == "HGG":
        core = rng.uniform(10.0, 24.0)
        return {
            "core": core,
            "necrosis": core * (rng.uniform(0.35, 0.75) if rng.random() > 0.12 else 0.0),
            "extent": core * rng.uniform(1.4, 2.3),
            "mass_effect": rng.uniform(0.25, 0.5),
            "cyst": 0.0,
        }
    core = rng.uniform(12.0, 28.0)
    return {
        "core": core,
        "necrosis": 0.0,
        "extent": core * rng.uniform(1.08, 1.35),
        "mass_effect": rng.uniform(0.08, 0.25),
        "cyst": core * rng.uniform(0.3, 0.55) if rng.random() < 0.3 else 0.0,
    }


def _tumour(
    rng: np.random.Generator,
    grade: str,
    geometry: dict[str, float],
    centre: np.ndarray,
    axes: list[np.ndarray],
    tissue: np.ndarray,
) -> _Tumour:
    """Compartment fractions around ``centre`` (grid mm); ``tissue`` is (brain, gm, wm, csf)."""
    reach = geometry["extent"] * 2.0
    box = tuple(
        slice(int(np.searchsorted(ax, c - reach)), int(np.searchsorted(ax, c + reach)) + 1) for ax, c in zip(axes, centre)
    )
    local = [ax[b] for ax, b in zip(axes, box)]
    grids = np.meshgrid(*[ax - c for ax, c in zip(local, centre)], indexing="ij")
    dist = np.sqrt(sum(g * g for g in grids))
    scale = max(geometry["core"] * 0.6, 6.0)
    shape_noise = [smooth_field(rng, local, scale) for _ in range(3)]
    brain, _, wm, csf = (t[box] for t in tissue)
    parenchyma = np.clip(brain - csf, 0.0, 1.0)

    def region(radius: float, noise: np.ndarray, roughness: float, edge_mm: float) -> np.ndarray:
        if radius <= 0:
            return np.zeros_like(dist)
        return _sigmoid((1.0 - dist / radius + roughness * noise) * radius / edge_mm)

    if grade == "HGG":
        core = region(geometry["core"], shape_noise[0], 0.22, 1.0)
        necrosis = np.minimum(region(geometry["necrosis"], 0.6 * shape_noise[0] + 0.4 * shape_noise[1], 0.25, 1.2), core)
        whole = region(geometry["extent"], shape_noise[2] + 1.2 * (wm - 0.5), 0.3, 2.5)
        oedema = np.clip(whole - core, 0.0, 1.0) * parenchyma
        fractions = {"enhancing": core - necrosis, "necrosis": necrosis, "oedema": oedema}
    else:
        core = region(geometry["core"], shape_noise[0], 0.32, 2.5)
        cyst = np.minimum(region(geometry["cyst"], shape_noise[1], 0.2, 1.0), core)
        whole = region(geometry["extent"], shape_noise[2] + 1.0 * (wm - 0.5), 0.3, 3.0)
        oedema = np.clip(whole - core, 0.0, 1.0) * parenchyma
        fractions = {"solid": core - cyst, "cyst": cyst, "oedema": oedema}
    taper = np.clip((reach - dist) / (0.3 * reach), 0.0, 1.0) * brain
    return _Tumour(box, {k: (v * taper).astype(np.float32) for k, v in fractions.items()})


def _segmentation(tumour: _Tumour, shape: tuple[int, ...]) -> np.ndarray:
    seg = np.zeros(shape, dtype=np.uint8)
    f = tumour.fractions
    labels = {"oedema": 2, "enhancing": 4, "necrosis": 1, "solid": 1, "cyst": 1}
    names = list(f)
    stack = np.stack([f[n] for n in names])
    winner = np.argmax(stack, axis=0)
    total = stack.sum(axis=0)
    box_seg = np.zeros(total.shape, dtype=np.uint8)
    for i, name in enumerate(names):
        box_seg[(winner == i) & (total >= 0.5)] = labels[name]
    seg[tumour.box] = box_seg
    return seg


@dataclass
class SyntheticPatient:
    """One synthetic patient in BraTS voxel order (axis 0 towards the left, 1 posterior, 2 superior)."""

    volumes: dict[str, np.ndarray]  # contrast -> int16 volume
    seg: np.ndarray  # uint8 BraTS labels 0, 1, 2, 4
    tissue: np.ndarray  # uint8 normal tissue >= 60 %: 1 CSF, 2 GM, 3 WM; 4 mixed; 0 background
    affine: np.ndarray  # 4 x 4 voxel -> RAS mm


def synthesise_patient(rng: np.random.Generator, grade: str | None, shape: tuple[int, int, int]) -> SyntheticPatient:
    """Simulate one patient on a grid of ``shape`` voxels; ``grade`` is ``"HGG"``, ``"LGG"`` or None (no tumour)."""
    from scipy import ndimage

    if grade not in ("HGG", "LGG", None):
        raise DataError(f"synthetic tumour grade {grade!r} is unknown; use 'HGG', 'LGG' or None")
    spacing = FIELD_OF_VIEW_MM / np.asarray(shape)
    atlas = _atlas_for(tuple(float(s) for s in spacing))
    axes = _axes_mm(shape, spacing)

    # Grid mm -> MNI mm: flips to BraTS orientation, per-patient size, rotation and shift.
    scale = rng.uniform(0.92, 1.07) * rng.uniform(0.97, 1.03, size=3)
    rotation = _rotation(rng.normal(0.0, [3.0, 2.5, 5.0]))
    linear = np.diag([-1.0, -1.0, 1.0]) @ rotation @ np.diag(1.0 / scale)
    shift = atlas.centre + rng.normal(0.0, [2.0, 3.0, 2.0])

    lin = linear.astype(np.float32)
    mni = np.empty((3, *shape), dtype=np.float32)
    x, y, z = axes
    for d in range(3):
        mni[d] = lin[d, 0] * x[:, None, None] + lin[d, 1] * y[None, :, None] + lin[d, 2] * z[None, None, :]
        mni[d] += float(shift[d] - atlas.origin[d])
        mni[d] += rng.uniform(1.5, 3.5) * smooth_field(rng, axes, 45.0)
    geometry = _tumour_geometry(rng, grade) if grade else None
    if geometry is not None:
        centre = np.linalg.solve(linear, atlas.seeds[rng.integers(len(atlas.seeds))] - shift)
        _mass_effect(mni, lin, axes, centre, geometry["extent"] * 2.4, geometry["mass_effect"])
    brain_map, gm, wm = (ndimage.map_coordinates(m, mni, order=1, output=np.float32) for m in atlas.maps[:3])
    del mni
    tissue = (brain_map, gm, wm, np.clip(brain_map - gm - wm, 0.0, 1.0))
    brain = tissue[0] > 0.5

    tumour = _tumour(rng, grade, geometry, centre, axes, tissue) if geometry is not None else None
    seg = _segmentation(tumour, shape) if tumour is not None else np.zeros(shape, dtype=np.uint8)
    seg[~brain] = 0

    # Fine detail and noise average out in larger voxels.
    detail = float(np.prod(spacing)) ** (-1.0 / 3.0)
    grain = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), 1.2 / spacing)
    texture = 1.0 + 0.03 * detail * grain / max(float(grain.std()), 1e-6)
    volumes: dict[str, np.ndarray] = {}
    for c, contrast in enumerate(CONTRASTS):
        signal = {name: values[c] * rng.uniform(0.93, 1.07) for name, values in _SIGNAL.items()}
        image = (tissue[1] * signal["gm"] + tissue[2] * signal["wm"] + tissue[3] * signal["csf"]) * texture
        if tumour is not None:
            _add_tumour(rng, image, tumour, signal, tissue[0], axes)
        bias = np.exp(rng.uniform(0.05, 0.2) * smooth_field(rng, axes, 90.0))
        level = float(np.exp(rng.uniform(np.log(250.0), np.log(2500.0))))
        image *= bias * level
        sigma_noise = rng.uniform(0.012, 0.035) * detail * level
        real = image + sigma_noise * rng.standard_normal(shape, dtype=np.float32)
        imag = sigma_noise * rng.standard_normal(shape, dtype=np.float32)
        image = np.sqrt(real * real + imag * imag)
        image[~brain] = 0.0
        volumes[contrast] = np.clip(np.rint(image), 0, np.iinfo(np.int16).max).astype(np.int16)
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    affine[1, 3] = (shape[1] - 1) * spacing[1]
    fractions = np.stack([tissue[3], tissue[1], tissue[2]])
    dominant = np.where(fractions.max(axis=0) >= 0.6, np.argmax(fractions, axis=0) + 1, 4)
    tissue_map = np.where(brain, dominant, 0).astype(np.uint8)
    return SyntheticPatient(volumes, seg, tissue_map, affine)


def _add_tumour(
    rng: np.random.Generator,
    image: np.ndarray,
    tumour: _Tumour,
    signal: dict[str, float],
    brain: np.ndarray,
    axes: list[np.ndarray],
) -> None:
    """Replace the tissue signal inside ``tumour.box`` by the tumour compartments' (in place)."""
    box = tumour.box
    local = [ax[b] for ax, b in zip(axes, box)]
    region = image[box]
    occupied = np.zeros_like(region)
    added = np.zeros_like(region)
    for name, fraction in tumour.fractions.items():
        heterogeneity = 1.0 + rng.uniform(0.06, 0.14) * smooth_field(rng, local, 4.0)
        if name == "oedema":
            strength = rng.uniform(0.55, 0.8)
            added += fraction * strength * (signal["oedema"] * heterogeneity * brain[box] - region)
        else:
            occupied += fraction
            added += fraction * signal[name] * heterogeneity
    region *= 1.0 - np.clip(occupied, 0.0, 1.0)
    region += added


def _nifti_bytes(data: np.ndarray, affine: np.ndarray) -> bytes:
    import gzip

    import nibabel as nib

    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_qform(affine, code=1)
    img.header.set_sform(affine, code=1)
    return gzip.compress(img.to_bytes(), compresslevel=1, mtime=0)


def patient_id(number: int) -> str:
    """The BraTS 2020 id of training patient ``number`` (1-based)."""
    return f"BraTS20_Training_{number:03d}"


def write_synthetic_brats(
    out: str | os.PathLike,
    patients: int,
    seed: int,
    size: int | tuple[int, int] = 240,
    slices: int = 155,
    *,
    shape: tuple[int, int, int] | None = None,
    lgg_fraction: float = 0.5,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> list[str]:
    """Write ``patients`` synthetic patients into ``out`` in the BraTS 2020 training layout.

    ``out/BraTS20_Training_001/BraTS20_Training_001_{t1,t2,t1ce,flair,seg}.nii.gz`` and
    ``out/name_mapping.csv``. The grid is ``size`` x ``size`` x ``slices`` (or ``shape``)
    over the BraTS field of view. A share ``lgg_fraction`` of patients is LGG, the rest HGG.
    Deterministic for a given ``seed`` (each patient depends only on the seed and its number);
    ``progress`` may wrap the patient loop (e.g. ``rich.progress.track``). Returns the patient ids.
    """
    grid = tuple(shape) if shape is not None else ((size, size) if isinstance(size, int) else tuple(size)) + (slices,)
    if len(grid) != 3 or any(int(n) != n or n < 8 for n in grid):
        raise DataError(f"synthetic volume shape {grid} is invalid; every dimension must be an integer >= 8")
    if patients < 1:
        raise DataError(f"--patients must be at least 1 (got {patients})")
    if not 0.0 <= lgg_fraction <= 1.0:
        raise DataError(f"lgg_fraction must be between 0 and 1 (got {lgg_fraction})")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out} already exists and is not an empty folder; choose a new output folder")
    n_lgg = int(round(patients * lgg_fraction))
    grades = np.array(["LGG"] * n_lgg + ["HGG"] * (patients - n_lgg))
    np.random.default_rng([seed, 0]).shuffle(grades)
    ids = []
    numbered = list(enumerate(grades, start=1))
    for number, grade in progress(numbered) if progress else numbered:
        pid = patient_id(number)
        patient = synthesise_patient(np.random.default_rng([seed, number]), str(grade), grid)
        for name, data in [*patient.volumes.items(), ("seg", patient.seg)]:
            atomic_write_bytes(out / pid / f"{pid}_{name}.nii.gz", _nifti_bytes(data, patient.affine))
        ids.append(pid)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(MAPPING_COLUMNS)
    for pid, grade in zip(ids, grades):
        writer.writerow([grade, "NA", "NA", "NA", "NA", pid])
    atomic_write_bytes(out / "name_mapping.csv", text.getvalue().encode())
    return ids
