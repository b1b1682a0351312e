"""Shared fixtures: a genuinely trained tiny run folder, its exported package, synthetic slices.

``tiny_run_dir``: a GP-UNet (width 8, depth 2, sinc), one channel ``t1ce``, classes
Healthy/LGG/HGG at 64 x 64, trained for 200 Adam steps (accuracy about 0.9) on synthetic slices so that its
heatmaps are real model outputs. ``tiny_package``: that run exported with ``gpedge.export``
(FP32 + FP16 graphs; an engine only where TensorRT and a GPU exist). ``int8_run_dir``: the same
weights as a run of new slices of its training distribution (``tiny_folder``) with a patient split, so that
``int8_package`` can be calibrated on its training patients and gated on its validation patients.
"""
from __future__ import annotations

import json

from pathlib import Path

import numpy as np
import pytest

from gpedge.data.samples import SyntheticSlices, synthetic_slices

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
EXAMPLE_SCAN = EXAMPLES / "hgg_flair.png"
"""The README's example scan: one FLAIR slice with a high-grade glioma."""

TINY_SIZE = 64
TINY_CLASSES = ["Healthy", "LGG", "HGG"]
TINY_CHANNELS = ["t1ce"]
TINY_OPTIONS = {"width": 8, "depth": 2, "upsample": "sinc", "dropout": 0.1}
TINY_STEPS = 200


def make_slices(n: int, seed: int = 0, channels: int = 1, size: int = TINY_SIZE) -> SyntheticSlices:
    """Realistic synthetic slices (float32 (n, channels, size, size), raw intensities) with labels and masks."""
    return synthetic_slices(n, channels=channels, size=size, num_classes=len(TINY_CLASSES), seed=seed)


def train_tiny_run(run_dir: Path, arch: str = "gp-unet", options: dict | None = None, steps: int = TINY_STEPS) -> Path:
    """Train a tiny model on synthetic slices and write it as a run folder (config.json + model.safetensors)."""
    import torch

    from gpedge.models import create_model
    from gpedge.preprocess import normalise_slice_max
    from gpedge.runs import RunConfig, save_weights

    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the same weights whatever OMP_NUM_THREADS says (reductions split by thread count)
    torch.manual_seed(1701)
    options = dict(TINY_OPTIONS if options is None else options)
    model = create_model(arch, in_channels=len(TINY_CHANNELS), num_classes=len(TINY_CLASSES), **options)
    data = make_slices(64, seed=1)
    images = torch.from_numpy(normalise_slice_max(data.images))
    labels = torch.from_numpy(data.labels)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    try:
        for step in range(steps):
            index = torch.arange(step * 8, step * 8 + 8) % len(images)
            loss = torch.nn.functional.cross_entropy(model(images[index]).logits, labels[index])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    run_dir.mkdir(parents=True, exist_ok=True)
    RunConfig(
        arch=arch,
        model_options=options,
        channels=list(TINY_CHANNELS),
        class_names=list(TINY_CLASSES),
        image_size=TINY_SIZE,
        no_tumour_class=0,
        dataset={"format": "synthetic", "path": None, "seed": 1},
        split={"train": ["SYN_001", "SYN_002"], "val": ["SYN_003"], "test": ["SYN_004"]},
        train={"steps": steps, "optimiser": "adam", "lr": 3e-3},
    ).save(run_dir)
    save_weights(model, run_dir)
    return run_dir


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true", help="also run the tests marked slow (the README and CI run them)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The default selection is the fast one: tests marked ``slow`` run with ``--slow`` or an explicit ``-m``."""
    if config.getoption("--slow") or config.getoption("markexpr"):
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]


@pytest.fixture(scope="session")
def tiny_run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained tiny GP-UNet run folder (see module docstring)."""
    return train_tiny_run(tmp_path_factory.mktemp("tiny_run") / "run")


@pytest.fixture(scope="session")
def tiny_package(tiny_run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny_run_dir`` exported as a model package (model.onnx, model.fp16.onnx, safetensors, manifest)."""
    from gpedge.export import ExportOptions, export_package

    out = tmp_path_factory.mktemp("tiny_package") / "pkg"
    return export_package(tiny_run_dir, out, ExportOptions(max_batch=4, engine="auto", parity_samples=6))


@pytest.fixture(scope="session")
def small_brats(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six synthetic BraTS 2020 patients, 64 x 64 x 16 (real NIfTI files and name_mapping.csv)."""
    from gpedge.data import write_synthetic_brats

    root = tmp_path_factory.mktemp("small_brats") / "BraTS2020"
    write_synthetic_brats(root, 6, seed=11, size=TINY_SIZE, slices=16)
    return root


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """96 new slices of ``tiny_run_dir``'s training distribution as an image folder (16-bit PNGs with masks)."""
    from gpedge.runtime.io import write_png

    root = tmp_path_factory.mktemp("tiny_folder")
    data = make_slices(96, seed=2)
    for i, (image, label, mask) in enumerate(zip(data.images, data.labels, data.masks)):
        folder = root / TINY_CLASSES[int(label)]
        write_png(folder / f"slice_{i:03d}.png", np.clip(image[0], 0, 65535).astype(np.uint16))
        write_png(folder / f"slice_{i:03d}_mask.png", (np.asarray(mask) > 0).astype(np.uint8) * 255)
    return root


@pytest.fixture(scope="session")
def int8_run_dir(tiny_run_dir: Path, tiny_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny_run_dir``'s weights as a run of ``tiny_folder``, split by patient (each slice its own patient)."""
    import shutil

    from gpedge.data import open_dataset, split_patients
    from gpedge.runs import RunConfig

    run = tmp_path_factory.mktemp("int8_run") / "run"
    shutil.copytree(tiny_run_dir, run)
    config = RunConfig.load(run)
    dataset = open_dataset(tiny_folder, channels=TINY_CHANNELS, image_size=TINY_SIZE)
    config.dataset = {"format": "folder", "path": str(tiny_folder)}
    config.split = {name: list(patients) for name, patients in split_patients(dataset, seed=1).items()}
    config.save(run)
    return run


@pytest.fixture(scope="session")
def int8_package(int8_run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``int8_run_dir`` exported with ``--int8`` (FP32 + INT8 graphs, no FP16).

    On an x86 CPU without 8-bit dot-product instructions (VNNI) ONNX Runtime's INT8 kernels are less
    accurate, and the export's accuracy gate may refuse this tiny network's INT8 graph: the tests that
    need the package are then skipped with the gate's message; on a VNNI CPU a refusal fails them.
    """
    from gpedge.errors import Int8GateRefused
    from gpedge.export import ExportOptions, export_package
    from gpedge.export.int8 import cpu_has_vnni

    out = tmp_path_factory.mktemp("int8_package") / "pkg"
    options = ExportOptions(max_batch=4, fp16=False, engine=False, parity_samples=2, int8=True, calibration_slices=32,
                            gate_slices=64)
    try:
        return export_package(int8_run_dir, out, options)
    except Int8GateRefused as exc:
        if cpu_has_vnni():
            raise
        pytest.skip(f"this CPU has no VNNI and the INT8 accuracy gate refused the tiny network: {exc}")


@pytest.fixture(scope="session")
def every_class_package(tiny_run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny_run_dir`` exported without a no-tumour class: every slice gets a mask whichever class the tiny
    model predicts, so that mask rules and offsets change the masks of every slice."""
    import shutil

    from gpedge.export import ExportOptions, export_package

    run = Path(shutil.copytree(tiny_run_dir, tmp_path_factory.mktemp("every_class_run") / "run"))
    config = json.loads((run / "config.json").read_text())
    config["no_tumour_class"] = None
    (run / "config.json").write_text(json.dumps(config))
    return export_package(run, tmp_path_factory.mktemp("every_class_package") / "pkg", ExportOptions(max_batch=4, parity_samples=2))


@pytest.fixture()
def synthetic_batch() -> np.ndarray:
    """Four realistic synthetic slices, float32 (4, 1, 64, 64), raw intensities (labels 0, 1, 2, 0)."""
    return make_slices(4, seed=7).images


@pytest.fixture(scope="session")
def four_contrast_server(tmp_path_factory: pytest.TempPathFactory):
    """``gpedge serve --no-dicom --model gp-unet-synth``: the bundled four-contrast model on a free port."""
    from serve_process import ServeProcess

    folder = tmp_path_factory.mktemp("four_contrast_server")
    with ServeProcess(["--no-dicom", "--model", "gp-unet-synth", "--out", str(folder / "out")], folder / "serve.log") as server:
        yield server


@pytest.fixture(scope="session")
def http_server(tmp_path_factory: pytest.TempPathFactory):
    """``gpedge serve --no-dicom`` with the bundled model on a free port, upload limit 1 MiB."""
    from serve_process import ServeProcess

    folder = tmp_path_factory.mktemp("http_server")
    with ServeProcess(["--no-dicom", "--out", str(folder / "out"), "--max-upload-mb", "1"], folder / "serve.log") as server:
        yield server
