"""Parity between backends on realistic inputs, measured at export time and stored in the manifest.

Every exported graph is run through the runtime backend that will run it in deployment.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from gpedge.data.samples import synthetic_slices
from gpedge.errors import GpedgeError
from gpedge.graph.agreement import mask_dice

FP32_PROB_TOLERANCE = 1e-4


def reference_images(config: Any, n: int, seed: int = 0) -> tuple[np.ndarray, str]:
    """``n`` float32 (N, C, H, W) slices in scanner-like units and where they came from.

    The run's test (else val) patients when its data set is reachable, with a random per-slice
    gain so the graph's normalisation is exercised; otherwise realistic synthetic slices.
    """
    rng = np.random.default_rng(seed)
    size = int(config.image_size)
    split = "test" if config.split.get("test") else "val"
    images = run_slices(config, split, n, rng)
    if images is not None:
        gains = rng.uniform(200.0, 3000.0, size=(len(images), 1, 1, 1)).astype(np.float32)
        return images * gains, f"run data set {config.dataset.get('path')}"
    data = synthetic_slices(n, channels=config.in_channels, size=size, num_classes=config.num_classes, seed=seed)
    return data.images, "synthetic slices (gpedge.data.samples)"


def open_run_data(config: Any, splits: tuple[str, ...], image_size: int | None = None) -> Any | None:
    """The run's data set at ``image_size`` (default: the run's) restricted to the patients of the first
    non-empty split of ``splits`` (all of it if the run records none), or None when it is not reachable here."""
    path = (config.dataset or {}).get("path")
    if not path or not Path(path).exists():
        return None
    try:
        from gpedge.data import open_dataset
    except ImportError:
        return None
    dataset = open_dataset(path, format=config.dataset.get("format", "auto"), channels=config.channels,
                           image_size=image_size or config.image_size)
    patients = next((config.split.get(name) for name in splits if config.split.get(name)), [])
    if patients:
        dataset = dataset.subset(patients)
    return dataset if len(dataset) else None


def run_slices(config: Any, split: str, n: int, rng: np.random.Generator) -> np.ndarray | None:
    """Up to ``n`` slices of the run's ``split`` patients (``train``, ``val``, ``test``), classes taken in
    turn so that tumour slices are represented; None when the run's data set or split is not reachable."""
    if not config.split.get(split):
        return None
    dataset = open_run_data(config, (split,))
    return None if dataset is None else _pick(dataset, n, rng)


def dataset_slices(
    path: str | Path, config: Any, n: int, rng: np.random.Generator, patients: list[str] | None = None, format: str = "auto"
) -> np.ndarray | None:
    """Up to ``n`` slices of a data set folder at the run's channels and size, classes taken in turn."""
    from gpedge.data import open_dataset

    dataset = open_dataset(path, format=format, channels=config.channels, image_size=config.image_size)
    if patients:
        dataset = dataset.subset(patients)
    return _pick(dataset, n, rng) if len(dataset) else None


def _pick(dataset: Any, n: int, rng: np.random.Generator) -> np.ndarray:
    labels = np.asarray(dataset.labels)
    order = rng.permutation(len(dataset))
    # round-robin over classes, then the rest, so that every class is represented
    by_class = [order[labels[order] == c] for c in np.unique(labels)]
    picked = [int(i) for group in _interleave(by_class) for i in group][:n]
    return np.stack([np.asarray(dataset[i]["image"], np.float32) for i in picked])


def _interleave(groups: list[np.ndarray]) -> list[list[int]]:
    """Rows of one index per group while the groups last (shorter groups drop out)."""
    longest = max(len(g) for g in groups)
    return [[int(g[k]) for g in groups if k < len(g)] for k in range(longest)]


def compare(reference: dict[str, np.ndarray], other: dict[str, np.ndarray]) -> dict[str, float]:
    """Agreement of ``other`` with ``reference`` (both dicts of fused-graph outputs).

    ``mask_dice_mean``/``mask_dice_min``: +1-smoothed Dice over every slice (1 where both masks are
    empty); ``mask_dice``: mean Dice over the slices where either mask is non-empty
    (:func:`gpedge.graph.agreement.mask_dice`, what the benchmarks and the INT8 gate judge by), and
    ``mask_slices`` the reference's non-empty masks.
    """
    ref_mask, mask = reference["mask"].astype(bool), other["mask"].astype(bool)
    intersection = (ref_mask & mask).sum(axis=(1, 2))
    sizes = ref_mask.sum(axis=(1, 2)) + mask.sum(axis=(1, 2))
    dice = (2.0 * intersection + 1.0) / (sizes + 1.0)
    return {
        "samples": int(len(ref_mask)),
        "max_abs_diff_probs": float(np.abs(reference["probs"] - other["probs"]).max()),
        "max_abs_diff_heatmaps": float(np.abs(reference["heatmaps"] - other["heatmaps"]).max()),
        "label_agreement": float((reference["label"] == other["label"]).mean()),
        "mask_pixel_agreement": float((ref_mask == mask).mean()),
        "mask_dice_mean": float(dice.mean()),
        "mask_dice_min": float(dice.min()),
        "mask_dice": mask_dice(mask, ref_mask),
        "mask_slices": int(ref_mask.reshape(len(ref_mask), -1).any(axis=1).sum()),
    }


def backend_outputs(backend: Any, images: np.ndarray, offset: float | None = None, rule: str | None = None) -> dict[str, np.ndarray]:
    """Run a runtime backend (:class:`gpedge.runtime.backends.Backend`) over ``images``, ``max_batch`` at a
    time, with the mask rule ``rule`` and parameter ``offset`` (the package's when None)."""
    parts = [backend.run(images[i : i + backend.max_batch], offset, rule) for i in range(0, len(images), backend.max_batch)]
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def torch_outputs(fused: Any, images: np.ndarray, offset: float, rule: str) -> dict[str, np.ndarray]:
    """Run the fused torch module (the reference) with mask rule ``rule`` and parameter ``offset``."""
    import torch

    from gpedge.runtime.backends.base import rule_inputs

    inputs = [torch.from_numpy(v) for v in rule_inputs(offset, rule).values()]
    with torch.no_grad():
        out = fused(torch.from_numpy(np.ascontiguousarray(images, np.float32)), *inputs)
    return {name: value.numpy() for name, value in out._asdict().items()}


def check_fp32(result: dict[str, float], where: str) -> None:
    """Fail loudly when the FP32 graph does not reproduce PyTorch."""
    if result["max_abs_diff_probs"] > FP32_PROB_TOLERANCE or result["label_agreement"] < 1.0:
        raise GpedgeError(
            f"FP32 parity failed for {where}: max |probs difference| {result['max_abs_diff_probs']:.2e} "
            f"(limit {FP32_PROB_TOLERANCE:g}), label agreement {result['label_agreement']:.3f} (must be 1); "
            "the exported graph does not reproduce the model; please report this with the run folder"
        )
