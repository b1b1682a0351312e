"""Acquisition: what the scanner does to the ideal image of each contrast.

Per contrast, independently of the patient's class: slice profile (a slice 1-6 mm thick), in-plane
resolution (0.9-2.4 mm, by k-space truncation with a random apodisation: blur and Gibbs ringing where
the grid is finer than the acquisition), a bias field (smooth random field plus a coil-like radial
term), thermal noise at a random SNR (8-40 for white matter in 1 mm pixels, higher in larger pixels) with magnitude
reconstruction (Rician for one coil, non-central chi for a sum of squares over several), then
either skull stripping (zero outside the brain, as BraTS ships) or the noisy air kept, and a random
intensity scale quantised to int16 (white matter at 150-2000 per patient, times 0.4-2.5 per contrast,
so that no contrast is crushed by the joint slice maximum more than real scans are).
"""
from __future__ import annotations

import numpy as np

from gpedge.data.synthetic.fields import Grid, open_grid, smooth_field


def _kspace_window(n: int, keep: float, taper: float) -> np.ndarray:
    """1-D window over the rfft/fft frequencies of length ``n``: pass ``keep`` of the band, cosine taper."""
    freq = np.abs(np.fft.fftfreq(n)) * 2.0  # 0 .. 1 (Nyquist)
    cut = keep
    start = cut * (1.0 - taper)
    window = np.ones(n, dtype=np.float32)
    ramp = (freq > start) & (freq < cut)
    window[ramp] = 0.5 * (1 + np.cos(np.pi * (freq[ramp] - start) / max(cut - start, 1e-6)))
    window[freq >= cut] = 0.0
    return window


def acquire(
    rng: np.random.Generator,
    images: dict[str, np.ndarray],
    white_matter: dict[str, float],
    grid: Grid,
    brain: np.ndarray,
    stripped: bool,
) -> tuple[dict[str, np.ndarray], dict[str, dict[str, float]]]:
    """int16 volumes of every contrast and the acquisition parameters drawn for each.

    Noise and intensity scale are set relative to the white-matter signal ``white_matter[contrast]``
    (not measured on the image), so that they cannot depend on whether or where there is a tumour.
    """
    from scipy import fft, ndimage

    axes = grid.axes
    x, y, _ = open_grid(axes)
    radial = (x * x + y * y) / (90.0 * 90.0) - 0.5
    coil = smooth_field(rng, axes, rng.uniform(80.0, 140.0))
    base_level = float(np.exp(rng.uniform(np.log(150.0), np.log(2000.0))))
    volumes, params = {}, {}
    outside = brain <= 0.5
    spacing = grid.spacing
    for name, ideal in images.items():
        p = {
            "resolution_x_mm": rng.uniform(0.9, 2.4),
            "resolution_y_mm": rng.uniform(0.9, 2.4),
            "thickness_mm": rng.uniform(1.0, 6.0),
            "taper": rng.uniform(0.0, 0.8),
            "bias": rng.uniform(0.04, 0.3),
            "radial": rng.uniform(-0.3, 0.3),
            "snr_1mm": float(np.exp(rng.uniform(np.log(8.0), np.log(40.0)))),
            "coils": int(rng.choice([1, 1, 2, 4, 8])),
            "level": base_level * float(np.exp(rng.uniform(np.log(0.4), np.log(2.5)))),
        }
        image = ideal
        profile = np.sqrt(max(p["thickness_mm"] ** 2 - spacing[2] ** 2, 0.0)) / 2.355 / spacing[2]
        if profile > 0.05:
            image = ndimage.gaussian_filter1d(image, profile, axis=2, mode="nearest")
        keep = [min(1.0, spacing[d] / p[f"resolution_{axis}_mm"]) for d, axis in enumerate("xy")]
        window = _kspace_window(image.shape[0], keep[0], p["taper"])[:, None, None]
        window = window * _kspace_window(image.shape[1], keep[1], p["taper"])[None, :, None]
        image = fft.ifft2(fft.fft2(image, axes=(0, 1)) * window, axes=(0, 1)).real.astype(np.float32)
        own = smooth_field(rng, axes, rng.uniform(60.0, 120.0))
        image *= np.exp(p["bias"] * (0.7 * coil + 0.7 * own) + p["radial"] * radial).astype(np.float32)
        ref = max(float(white_matter[name]), 1e-6)
        p["snr"] = p["snr_1mm"] * float(np.sqrt(spacing[0] * spacing[1]))  # larger pixels average the noise
        sigma = ref / p["snr"]
        real = image + sigma * rng.standard_normal(image.shape, dtype=np.float32)
        power = real * real + (sigma * rng.standard_normal(image.shape, dtype=np.float32)) ** 2
        if p["coils"] > 1:
            power += sigma * sigma * rng.chisquare(2 * p["coils"] - 2, image.shape).astype(np.float32)
        image = np.sqrt(power)
        if stripped:
            image[outside] = 0.0
        image *= np.float32(p["level"] / ref)
        volumes[name] = np.clip(np.rint(image), 0, np.iinfo(np.int16).max).astype(np.int16)
        params[name] = p
    return volumes, params
