"""Untrained paper networks as model packages, so that ``gpedge bench --arch`` can time any
configuration without training (weights do not change the speed)."""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from gpedge.data.samples import synthetic_slices
from gpedge.errors import GpedgeError
from gpedge.export.int8 import Int8Settings

CLASS_NAMES = ["Healthy", "LGG", "HGG"]
_CHANNELS = {1: ["t1ce"], 2: ["t1ce", "flair"], 3: ["t1", "t1ce", "flair"], 4: ["t1", "t2", "t1ce", "flair"]}


#: Parity slices the export stage checks (its own FP32 check; the benchmark measures accuracy itself).
PARITY_SAMPLES = 2
#: Synthetic slices the INT8 graph of an untrained network is calibrated and gated on.
CALIBRATION_SLICES = 16
GATE_SLICES = 16
#: Seed of the calibration slices (the benchmark's accuracy slices use seed 0, the export's gate seed 1).
CALIBRATION_SEED = 2


def untrained_package(
    arch: str,
    channels: int,
    image_size: int,
    options: dict[str, Any],
    max_batch: int,
    out_dir: str | os.PathLike,
    fp16: bool = False,
    int8: Int8Settings | None = None,
) -> Path:
    """Export an untrained ``arch`` (seeded initialisation) through the export stage into ``out_dir``.

    ``options`` are ``create_model`` options (``width``, ``upsample``, ...): the paper configuration where absent.
    The graph is single-pass (no ``flip_average``): benchmarks time the paper's network.
    ``fp16`` also writes ``model.fp16.onnx`` (what the TensorRT backend builds its engine from);
    no engine is built here: the runtime's TensorRT backend builds and caches one on first use.
    ``int8`` also writes ``model.int8.onnx`` with these settings, calibrated on realistic synthetic
    slices; its agreement gate is measured on other synthetic slices and recorded, not enforced
    (untrained weights: the figures show numerical drift, not what a trained model would give).
    """
    import torch

    from gpedge.export.exporter import export_package
    from gpedge.export.options import ExportOptions
    from gpedge.models import create_model, list_models
    from gpedge.runs import RunConfig, save_weights

    if arch not in list_models():
        raise GpedgeError(f"--arch {arch!r} is not a known network; choose one of {', '.join(list_models())}")
    if channels not in _CHANNELS:
        raise GpedgeError(f"--channels {channels}: choose 1 to 4 (the BraTS contrasts t1, t2, t1ce, flair)")
    out_dir = Path(out_dir)
    run_dir = out_dir.with_name(out_dir.name + "-run")
    run_dir.mkdir(parents=True, exist_ok=True)
    config = RunConfig(
        arch=arch, model_options=options, channels=_CHANNELS[channels], class_names=CLASS_NAMES, image_size=image_size
    )
    torch.manual_seed(0)
    try:
        model = create_model(arch, in_channels=channels, num_classes=len(CLASS_NAMES), **options)
    except ValueError as exc:
        raise GpedgeError(f"--arch {arch}: {exc}") from exc
    if image_size % model.input_multiple:
        raise GpedgeError(
            f"--image-size {image_size}: {arch} needs a size divisible by {model.input_multiple}; "
            f"use e.g. {image_size - image_size % model.input_multiple + model.input_multiple}"
        )
    config.save(run_dir)
    save_weights(model, run_dir)
    options = ExportOptions(max_batch=max_batch, fp16=fp16, engine=False, parity_samples=PARITY_SAMPLES, flip_average=False)
    if int8 is not None:
        calibration = run_dir / "calibration.npy"
        np.save(calibration, synthetic_slices(CALIBRATION_SLICES, channels=channels, size=image_size,
                                              num_classes=len(CLASS_NAMES), seed=CALIBRATION_SEED).images)
        options = replace(options, int8=True, calibration=calibration, calibration_slices=CALIBRATION_SLICES,
                          gate_slices=GATE_SLICES, enforce_int8_gate=False, int8_settings=int8)
    return export_package(run_dir, out_dir, options)
