"""Normal anatomy: where brain, grey matter, white matter, CSF, skull and scalp are.

Two anatomy models, each giving a :class:`Source` (tissue fractions in its own mm space, RAS axes:
x right, y anterior, z superior) that :mod:`.patient` samples onto the output grid through a
per-patient pose, a smooth deformation and the tumours' mass effect:

- :func:`template_source` (training family): the MNI152 (ICBM 2009a) brain mask and grey/white-matter
  maps bundled with nilearn (no download), low-pass filtered for the output spacing;
- :func:`phantom_source` (held-out family): a procedural brain built from shapes and noise fields
  (envelope, interhemispheric and Sylvian fissures, gyri and sulci from the zero set of a random
  field, ventricles along random curves, deep grey nuclei, cerebellum with folia, brainstem), with
  random proportions (atrophy, cortical thickness, ventricle size). It shares no voxel with MNI152.

:func:`head_layers` wraps any brain in CSF, skull (cortical bone and fatty marrow) and scalp
(muscle, fat, skin) for the scans that are not skull-stripped; :func:`vessels` adds thin
contrast-enhancing vessels and choroid plexus, so that a bright spot on T1CE is not by itself a tumour.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from gpedge.data.synthetic.fields import Grid, open_grid, sigmoid, smooth_field, soft_inside
from gpedge.errors import DataError

MAX_SITES = 20000


@dataclass(frozen=True)
class Source:
    """Tissue fractions of one anatomy in its own mm space (RAS axes), ready to be sampled."""

    maps: np.ndarray  # (3, X, Y, Z) float32: brain (incl. CSF), grey matter, white matter
    origin: np.ndarray  # mm of voxel (0, 0, 0)
    spacing: np.ndarray  # mm per voxel
    centre: np.ndarray  # mm of the brain's bounding-box centre
    sites: np.ndarray  # (N, 3) mm of parenchyma points (candidate tumour centres)
    site_wm: np.ndarray  # (N,) white-matter fraction at each site
    site_depth: np.ndarray  # (N,) mm from each site to the brain's surface
    ventricles: np.ndarray  # (2, 3) mm of the lateral ventricles' centres


def _sites(maps: np.ndarray, origin: np.ndarray, spacing: np.ndarray, depth_mm: np.ndarray) -> tuple[np.ndarray, ...]:
    """Parenchyma points (mm), their white-matter share and their depth under the brain's surface (mm)."""
    parenchyma = maps[1] + maps[2]
    points = np.argwhere(parenchyma > 0.6)
    points = points[:: max(1, len(points) // MAX_SITES)]
    index = tuple(points.T)
    wm = maps[2][index] / np.maximum(parenchyma[index], 1e-6)
    return origin + points * spacing, wm.astype(np.float32), depth_mm[index].astype(np.float32)


@lru_cache(maxsize=1)
def _mni() -> Source:
    """The nilearn-bundled MNI152 maps at 1 mm, their lesion sites and ventricle centres."""
    from nilearn import datasets
    from scipy import ndimage

    brain_img = datasets.load_mni152_brain_mask(resolution=1)
    brain = np.asarray(brain_img.dataobj, dtype=np.float32)
    gm = np.asarray(datasets.load_mni152_gm_template(resolution=1).dataobj, dtype=np.float32) * brain
    wm = np.asarray(datasets.load_mni152_wm_template(resolution=1).dataobj, dtype=np.float32) * brain
    affine = brain_img.affine
    if not np.allclose(np.diag(affine)[:3], 1.0):
        raise DataError("the nilearn MNI152 templates are not at 1 mm RAS; reinstall nilearn")
    origin = affine[:3, 3].astype(np.float64)
    spacing = np.ones(3)
    voxels = np.argwhere(brain > 0.5)
    centre = origin + (voxels.min(0) + voxels.max(0)) / 2.0
    maps = np.stack([brain, gm, wm])
    depth = ndimage.distance_transform_edt(brain > 0.5)
    sites, site_wm, site_depth = _sites(maps, origin, spacing, depth)
    deep_csf = np.argwhere((brain - gm - wm > 0.6) & (depth > 15))
    mm = origin + deep_csf
    ventricles = np.stack([mm[mm[:, 0] < 0].mean(0), mm[mm[:, 0] >= 0].mean(0)])
    return Source(maps, origin, spacing, centre, sites, site_wm, site_depth, ventricles)


@lru_cache(maxsize=4)
def template_source(spacing: tuple[float, float, float]) -> Source:
    """MNI152 low-pass filtered for sampling at ``spacing`` mm (no aliasing on coarse grids)."""
    from scipy import ndimage

    mni = _mni()
    sigma = [0.42 * np.sqrt(max(s * s - 1.0, 0.0)) for s in spacing]
    if max(sigma) < 0.2:
        return mni
    maps = np.stack([ndimage.gaussian_filter(m, sigma) for m in mni.maps])
    return Source(maps, mni.origin, mni.spacing, mni.centre, mni.sites, mni.site_wm, mni.site_depth, mni.ventricles)


def _polyline_distance(points: np.ndarray, axes: list[np.ndarray], scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance (mm, axes scaled by ``scale``) from every grid point to a polyline, and where it is closest.

    The position is the segment index plus the fraction along that segment (0 .. len(points) - 1).
    """
    x, y, z = (c * k for c, k in zip(open_grid(axes), scale))
    p = points * scale
    best = np.full((x.size, y.size, z.size), np.inf, dtype=np.float32)
    where = np.zeros_like(best)
    for k in range(len(p) - 1):
        a, d = p[k], p[k + 1] - p[k]
        t = np.clip(((x - a[0]) * d[0] + (y - a[1]) * d[1] + (z - a[2]) * d[2]) / max(float(d @ d), 1e-6), 0.0, 1.0)
        dist = np.sqrt((x - a[0] - t * d[0]) ** 2 + (y - a[1] - t * d[1]) ** 2 + (z - a[2] - t * d[2]) ** 2)
        closer = dist < best
        best = np.where(closer, dist, best)
        where = np.where(closer, k + t, where)
    return best, where


def _ellipsoid(axes: list[np.ndarray], centre, radii) -> np.ndarray:
    """Normalised radius of an axis-aligned ellipsoid (1 on its surface)."""
    x, y, z = open_grid(axes)
    return np.sqrt(((x - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2 + ((z - centre[2]) / radii[2]) ** 2)


def _sub(axes: list[np.ndarray], lo, hi) -> tuple[tuple[slice, ...], list[np.ndarray]]:
    box = tuple(slice(int(np.searchsorted(ax, l)), int(np.searchsorted(ax, h))) for ax, l, h in zip(axes, lo, hi))
    return box, [ax[b] for ax, b in zip(axes, box)]


def _ventricles(rng: np.random.Generator, axes: list[np.ndarray], b: float, atrophy: float) -> tuple[np.ndarray, np.ndarray]:
    """Lateral ventricles along random curves plus the third ventricle: CSF fraction and the two centres."""
    shape = tuple(len(a) for a in axes)
    csf = np.zeros(shape, dtype=np.float32)
    box, local = _sub(axes, (-48.0, -0.62 * b, -34.0), (48.0, 0.52 * b, 34.0))
    u = rng.uniform
    centres = []
    for side in (-1.0, 1.0):
        points = np.array(
            [
                (side * u(7, 11), 0.38 * b, u(2, 10)),
                (side * u(9, 13), 0.14 * b, u(12, 19)),
                (side * u(12, 17), -0.18 * b, u(13, 20)),
                (side * u(19, 25), -0.42 * b, u(3, 10)),
                (side * u(27, 33), -0.30 * b, u(-15, -9)),
                (side * u(29, 35), -0.06 * b, u(-23, -17)),
            ]
        )
        radii = np.array([u(3, 6), u(2, 4.5), u(2, 4.5), u(4, 7.5), u(1.5, 3), u(1, 2)]) * atrophy
        dist, where = _polyline_distance(points, local, np.array([1.0, 1.0, 1.35]))
        radius = np.interp(where, np.arange(len(points)), radii).astype(np.float32)
        csf[box] = np.maximum(csf[box], soft_inside(radius - dist, 1.0))
        centres.append(points[:4].mean(axis=0))
    x, y, z = open_grid(axes)
    third = soft_inside(u(0.8, 2.5) * atrophy - np.abs(x), 0.8)
    third = third * soft_inside(np.minimum(y + 0.26 * b, 0.04 * b - y), 2.0) * soft_inside(np.minimum(z + 18.0, 2.0 - z), 2.0)
    return np.maximum(csf, third), np.stack(centres)


def _radial_noise(rng: np.random.Generator, axes: list[np.ndarray], depth: np.ndarray, scale_mm: float, straightness: float) -> np.ndarray:
    """A smooth random field stretched along rays from the centre over ``depth`` mm under the surface.

    ``straightness`` 1 makes it constant along each ray (sulci run straight inwards), 0 leaves it isotropic.
    """
    from scipy import ndimage

    noise = smooth_field(rng, axes, scale_mm)
    x, y, z = open_grid(axes)
    stretch = 1.0 + straightness * depth / np.maximum(np.sqrt(x * x + y * y + z * z), 5.0)
    spacing = float(axes[0][1] - axes[0][0])
    coords = np.stack(
        [np.clip((c * stretch - ax[0]) / spacing, 0, len(ax) - 1) for c, ax in zip((x, y, z), axes)]
    ).astype(np.float32)
    return ndimage.map_coordinates(noise, coords, order=1, output=np.float32)


def phantom_source(rng: np.random.Generator, spacing_mm: float) -> Source:
    """A random procedural brain (see the module docstring), at about ``spacing_mm`` (clipped to 1.2-2 mm)."""
    from scipy import ndimage

    u = rng.uniform
    sp = float(np.clip(spacing_mm, 1.2, 2.0))
    lo, hi = np.array([-86.0, -112.0, -92.0]), np.array([86.0, 100.0, 82.0])
    axes = [np.arange(l, h + sp / 2, sp, dtype=np.float32) for l, h in zip(lo, hi)]
    x, y, z = open_grid(axes)

    # Cerebrum: an egg (narrower in front) with lower temporal lobes and a flatter frontal base.
    a, b, top, base = u(60, 71), u(76, 90), u(56, 68), u(34, 44)
    half_x = a * (1.0 - u(0.06, 0.16) * np.clip(y / b, 0.0, 1.0))
    half_down = base * (0.7 + 0.45 * np.clip(np.abs(x) / a, 0.0, 1.0)) * (1.0 - 0.25 * sigmoid((y - 0.35 * b) / 6.0))
    rho = np.sqrt((x / half_x) ** 2 + (y / b) ** 2 + (z / np.where(z > 0, top, half_down)) ** 2)
    rho = rho * (1.0 + u(0.03, 0.07) * smooth_field(rng, axes, u(30, 45)))
    cerebellum_rho = _ellipsoid(axes, (0.0, -0.6 * b, -0.8 * base), (0.7 * a, 0.34 * b, 0.5 * base))
    cerebellum = cerebellum_rho < 1.0
    axis_y = -0.2 * b + 0.1 * b * (z + 92.0) / 87.0
    brainstem = (np.sqrt(x**2 + (y - axis_y) ** 2) < u(9, 12.5)) & (z < -4.0) & ~cerebellum
    cerebrum = (rho < 1.0) & (cerebellum_rho > 1.12)

    # Fissures: interhemispheric (above the corpus callosum, and in front of and behind it) and Sylvian.
    callosum_top = 0.2 * top + 6.0 * (y / b) ** 2
    fissure = (np.abs(x) < u(0.8, 2.0)) & ((z > callosum_top) | (np.abs(y) > 0.58 * b))
    # Sylvian fissure: the insular cistern (a sagittal sheet at the insula) and its stem out to the lateral surface.
    insula, z_sylvian, y_stem, width = u(0.45, 0.55) * a, u(-10, 0), u(-0.05, 0.15) * b, u(0.8, 1.8)
    lateral = np.abs(x) - insula
    sylvian = (np.abs(lateral) < width) & (np.abs(y - y_stem) < 0.28 * b) & (np.abs(z - z_sylvian) < 14.0)
    sylvian |= (lateral > 0) & (np.abs(y - y_stem - u(0.2, 0.6) * lateral) < width) & (np.abs(z - z_sylvian) < 8.0)
    inside = (cerebrum & ~fissure & ~sylvian) | cerebellum | brainstem
    depth = ndimage.distance_transform_edt(inside, sampling=sp).astype(np.float32)
    outside = ndimage.distance_transform_edt(~inside, sampling=sp).astype(np.float32)
    signed = np.where(inside, depth - sp / 2, sp / 2 - outside)

    # Cortex: a ribbon under the surface plus folds along the zero set of a random field, projected
    # radially so that sulci run inwards from the surface; sulci are CSF clefts lined by grey matter.
    gyri = np.abs(_radial_noise(rng, axes, depth, u(5.0, 7.0), u(0.5, 0.8)))
    fold_depth = u(8, 15) * (1.0 + 0.25 * smooth_field(rng, axes, 30.0))
    sulcus_width, thickness = u(0.06, 0.12), u(2.8, 4.0)
    sulcus = sigmoid((sulcus_width - gyri) / 0.03) * soft_inside(fold_depth - depth, 2.0)
    ribbon = np.maximum(
        soft_inside(thickness - depth, 1.0),
        sigmoid((sulcus_width + u(0.32, 0.48) - gyri) / 0.05) * soft_inside(fold_depth + thickness - depth, 2.0),
    )
    del gyri, fold_depth
    deep_grey = np.zeros_like(ribbon)
    for side in (-1.0, 1.0):
        for centre, radii in (
            ((side * u(9, 12), -0.12 * b, u(-4, 4)), (u(8, 10), u(13, 16), u(8, 10))),
            ((side * u(14, 17), 0.25 * b, u(6, 12)), (u(4, 6), u(8, 10), u(8, 10))),
            ((side * u(20, 26), 0.05 * b, u(-4, 2)), (u(4, 6), u(12, 16), u(8, 10))),
        ):
            deep_grey = np.maximum(deep_grey, soft_inside(1.0 - _ellipsoid(axes, centre, radii), 0.12))
    grey = np.maximum(ribbon, 0.7 * deep_grey)
    del ribbon, deep_grey

    # Cerebellum: grey folia around a white core; brainstem: mostly white.
    box, local = _sub(axes, (-0.75 * a, -0.98 * b, -0.8 * base - 0.55 * base), (0.75 * a, -0.22 * b, -0.8 * base + 0.55 * base))
    folia = np.abs(smooth_field(rng, local, u(3.0, 4.5)))
    core = sigmoid((cerebellum_rho[box] - 0.45) / 0.06)
    in_cerebellum = cerebellum[box]
    grey[box] = np.where(in_cerebellum, 0.85 * core, grey[box])
    sulcus[box] = np.where(in_cerebellum, sigmoid((0.1 - folia) / 0.03) * core, sulcus[box])
    grey = np.where(brainstem, 0.25, grey)

    ventricles, centres = _ventricles(rng, axes, b, u(0.8, 1.9))
    parenchyma = soft_inside(signed, 1.0) * (1.0 - sulcus) * (1.0 - ventricles)
    del sulcus, ventricles
    brain = soft_inside(signed + u(1.0, 4.0) * (1.0 + 0.3 * smooth_field(rng, axes, 20.0)), 1.0)
    gm = parenchyma * grey
    maps = np.stack([brain, gm, parenchyma - gm]).astype(np.float32)
    origin = np.array([ax[0] for ax in axes], dtype=np.float64)
    spacing = np.full(3, sp)
    voxels = np.argwhere(brain > 0.5)
    centre = origin + (voxels.min(0) + voxels.max(0)) / 2.0 * sp
    sites, site_wm, site_depth = _sites(maps, origin, spacing, depth)
    return Source(maps, origin, spacing, centre, sites, site_wm, site_depth, centres)


def head_layers(rng: np.random.Generator, brain: np.ndarray, grid: Grid) -> dict[str, np.ndarray]:
    """Fractions of extra-axial CSF, bone (inner and outer table), fat (marrow, scalp) and muscle/skin around ``brain``.

    Built slice by slice around the brain's envelope on that slice (its outline closed over 12 mm, so
    that separate lobes share one skull, the space between them filled with CSF). Layer thicknesses vary
    per patient and smoothly over the head; slices without brain stay empty.
    """
    from scipy import ndimage

    inside = brain > 0.5
    sx, sy = (float(v) for v in grid.spacing[:2])
    radius = int(np.ceil(12.0 / min(sx, sy)))
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    disk = (xx * sx) ** 2 + (yy * sy) ** 2 <= 144.0
    envelope = np.zeros_like(inside)
    distance = np.zeros(inside.shape, dtype=np.float32)
    for k in range(inside.shape[2]):
        if not inside[:, :, k].any():
            distance[:, :, k] = np.inf
            continue
        padded = np.pad(inside[:, :, k], radius)
        closed = ndimage.binary_fill_holes(ndimage.binary_closing(padded, disk))[radius:-radius, radius:-radius]
        envelope[:, :, k] = closed
        distance[:, :, k] = ndimage.distance_transform_edt(~closed, sampling=(sx, sy))
    wobble = 1.0 + 0.25 * smooth_field(rng, grid.axes, 40.0)
    u = rng.uniform
    layers = [("csf", u(0.5, 2.5)), ("bone", u(1.0, 2.0)), ("fat", u(1.5, 5.0)), ("bone", u(1.0, 2.0))]
    layers += [("muscle", u(1.0, 4.0)), ("fat", u(2.0, 6.0)), ("muscle", u(1.0, 2.0))]
    edge = 0.5 * min(sx, sy)
    out = {name: np.zeros_like(distance) for name, _ in layers}
    out["csf"] += envelope * np.clip(1.0 - brain, 0.0, 1.0)
    start = np.zeros_like(distance)
    beyond_start = soft_inside(distance, edge) * ~envelope
    for name, thickness in layers:
        end = start + thickness * wobble
        beyond_end = soft_inside(distance - end, edge) * ~envelope
        out[name] += beyond_start - beyond_end
        start, beyond_start = end, beyond_end
    return out


def vessels(rng: np.random.Generator, csf: np.ndarray, grid: Grid) -> np.ndarray:
    """Thin vessel / choroid-plexus fraction taken out of the CSF spaces (enhances on T1CE like a tumour rim)."""
    lines = np.abs(smooth_field(rng, grid.axes, rng.uniform(7.0, 14.0)))
    density = sigmoid((smooth_field(rng, grid.axes, 40.0) - rng.uniform(-0.5, 0.8)) / 0.3)
    strength = rng.uniform(0.3, 0.8)
    return (sigmoid((rng.uniform(0.03, 0.07) - lines) / 0.015) * density * np.clip(csf, 0.0, 1.0) * strength).astype(np.float32)
