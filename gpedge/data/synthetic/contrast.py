"""Tissue signal per contrast: what each tissue looks like on T1, T2, T1CE and FLAIR for one patient.

Two intensity models, each returning ``{tissue: (t1, t2, t1ce, flair) signal}``:

- :func:`physics_signals` (training family): every tissue has a proton density, T1 and T2 (and a
  gadolinium concentration); every patient gets a field strength (1.5 or 3 T) and random sequence
  parameters (T1 and T1CE as spin echo, spoiled gradient echo or MPRAGE-like inversion recovery;
  T2 fast spin echo; FLAIR with a jittered CSF-nulling inversion time; contrast dose), and the
  signal follows the textbook signal equations. Contrast between tissues therefore varies the way
  it varies between scanners and protocols, not by a fixed table.
- :func:`table_signals` (held-out family): a fixed table of relative intensities with per-patient
  jitter, and lesion intensities drawn as ratios to the patient's white matter. A different model,
  so that a network trained on the first is tested on intensities it has not seen generated.
"""
from __future__ import annotations

import numpy as np

CONTRASTS = ("t1", "t2", "t1ce", "flair")
NORMAL = ("csf", "gm", "wm", "fat", "bone", "muscle", "vessel")
LESION = ("oedema", "nonenhancing", "enhancing", "necrosis", "cyst")
TISSUES = NORMAL + LESION
LABELS = {"oedema": 2, "nonenhancing": 1, "necrosis": 1, "cyst": 1, "enhancing": 4}

# Proton density, T1 (ms, 1.5 T), T2 (ms), gadolinium concentration after a standard dose (mM).
PROPERTIES = {
    "csf": (1.00, 4000.0, 1800.0, 0.0),
    "gm": (0.82, 1200.0, 100.0, 0.0),
    "wm": (0.70, 720.0, 80.0, 0.0),
    "fat": (0.95, 290.0, 90.0, 0.0),
    "bone": (0.08, 400.0, 8.0, 0.0),
    "muscle": (0.75, 950.0, 45.0, 0.05),
    "vessel": (0.45, 1400.0, 60.0, 3.0),
    "oedema": (0.86, 1150.0, 170.0, 0.0),
    "nonenhancing": (0.85, 1400.0, 140.0, 0.0),
    "enhancing": (0.80, 1350.0, 110.0, 0.8),
    "necrosis": (0.93, 2400.0, 500.0, 0.02),
    "cyst": (0.98, 3400.0, 1400.0, 0.0),
}


def _t1_sequence(rng: np.random.Generator) -> dict[str, float | str]:
    kind = str(rng.choice(["se", "gre", "ir"]))
    if kind == "se":
        return {"kind": kind, "tr": rng.uniform(400, 650), "te": rng.uniform(8, 15)}
    if kind == "gre":
        return {"kind": kind, "tr": rng.uniform(8, 25), "te": rng.uniform(2, 5), "flip": np.deg2rad(rng.uniform(12, 30))}
    return {"kind": kind, "tr": rng.uniform(1800, 2400), "ti": rng.uniform(800, 1100), "te": rng.uniform(2.5, 4.5)}


def _signal(seq: dict, pd: np.ndarray, t1: np.ndarray, t2: np.ndarray) -> np.ndarray:
    e1, decay = np.exp(-seq["tr"] / t1), np.exp(-seq["te"] / t2)
    kind = seq["kind"]
    if kind == "gre":
        flip = seq["flip"]
        return pd * np.sin(flip) * (1 - e1) / (1 - np.cos(flip) * e1) * decay
    if kind == "ir":
        return pd * np.maximum(1 - 2 * np.exp(-seq["ti"] / t1) + e1, 0.02) * decay
    if kind == "flair":
        return pd * np.abs(1 - 2 * np.exp(-seq["ti"] / t1) + e1) * decay
    return pd * (1 - e1) * decay


def physics_signals(rng: np.random.Generator, lesion_rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Signal of every tissue in each contrast for one patient (normalised so that white matter on T1 is 1)."""
    three_tesla = rng.random() < 0.5
    t1_factor = rng.uniform(1.2, 1.35) if three_tesla else 1.0
    t2_factor = rng.uniform(0.85, 0.95) if three_tesla else 1.0
    relaxivity = (3.9 if three_tesla else 4.3) * rng.uniform(0.7, 1.3)  # per mM per s, times the dose
    names = list(TISSUES)
    base = np.array([PROPERTIES[n] for n in names])
    jitter = np.ones_like(base)
    normal = len(NORMAL)
    jitter[:normal, :3] = rng.uniform(0.93, 1.07, size=(normal, 3))
    jitter[normal:, :3] = lesion_rng.uniform(0.88, 1.12, size=(len(LESION), 3))
    jitter[:, 3] = np.concatenate([rng.uniform(0.8, 1.2, normal), lesion_rng.uniform(0.6, 1.6, len(LESION))])
    pd, t1, t2, gd = (base * jitter).T
    soft = np.array([n not in ("bone", "fat") for n in names])
    t1 = np.where(soft, t1 * t1_factor, t1)
    t2 = t2 * t2_factor
    t1_seq = _t1_sequence(rng)
    t1ce_seq = t1_seq if rng.random() < 0.7 else _t1_sequence(rng)
    tr_flair = rng.uniform(8000, 11000)
    csf_t1 = t1[names.index("csf")]
    null = csf_t1 * np.log(2.0 / (1.0 + np.exp(-tr_flair / csf_t1)))
    sequences = {
        "t1": t1_seq,
        "t2": {"kind": "se", "tr": rng.uniform(3000, 6000), "te": rng.uniform(80, 120)},
        "flair": {"kind": "flair", "tr": tr_flair, "ti": null * rng.uniform(0.95, 1.05), "te": rng.uniform(100, 140)},
    }
    t1_enhanced = 1.0 / (1.0 / t1 + relaxivity * gd / 1000.0)
    columns = [
        _signal(sequences["t1"], pd, t1, t2),
        _signal(sequences["t2"], pd, t1, t2),
        _signal(t1ce_seq, pd, t1_enhanced, t2),
        _signal(sequences["flair"], pd, t1, t2),
    ]
    table = np.stack(columns, axis=1)
    table /= table[names.index("wm")]
    return {n: table[i].astype(np.float32) for i, n in enumerate(names)}


# Held-out model: relative intensities (t1, t2, t1ce, flair) of normal tissue ...
TABLE = {
    "csf": (0.28, 1.00, 0.28, 0.10),
    "gm": (0.62, 0.60, 0.64, 0.62),
    "wm": (0.85, 0.40, 0.86, 0.45),
    "fat": (1.05, 0.75, 1.05, 0.70),
    "bone": (0.05, 0.05, 0.05, 0.05),
    "muscle": (0.50, 0.30, 0.55, 0.35),
    "vessel": (0.30, 0.15, 1.30, 0.20),
}
# ... and lesion intensities as ranges of ratios to white matter.
LESION_RATIOS = {
    "oedema": ((0.60, 0.80), (1.8, 2.5), (0.60, 0.80), (1.7, 2.3)),
    "nonenhancing": ((0.50, 0.75), (1.6, 2.4), (0.50, 0.75), (1.6, 2.3)),
    "enhancing": ((0.55, 0.80), (1.3, 2.0), (1.35, 2.2), (1.4, 2.0)),
    "necrosis": ((0.25, 0.45), (2.0, 3.0), (0.25, 0.45), (0.5, 1.2)),
    "cyst": ((0.20, 0.35), (2.4, 3.0), (0.20, 0.35), (0.2, 0.5)),
}


def table_signals(rng: np.random.Generator, lesion_rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Held-out intensity model: jittered table for normal tissue, ratios to white matter for lesions."""
    out = {n: np.asarray(v, dtype=np.float32) * rng.uniform(0.9, 1.1, 4).astype(np.float32) for n, v in TABLE.items()}
    wm = out["wm"]
    for name, ranges in LESION_RATIOS.items():
        out[name] = (wm * np.array([lesion_rng.uniform(lo, hi) for lo, hi in ranges])).astype(np.float32)
    return {n: v / wm[0] for n, v in out.items()}
