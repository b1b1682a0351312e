"""What the breakdown scripts share: the package and data folder they read, and how they print their result."""
from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from gpedge.data import open_dataset
from gpedge.evaluate.selection import SPLITS, select_split
from gpedge.graph.contract import parse_mask_rule
from gpedge.package import ModelPackage
from gpedge.preprocess import fit_image
from gpedge.runtime.predictor import Predictor


def package_parser(description: str, split: str) -> argparse.ArgumentParser:
    """The arguments every breakdown script takes: the package, ``--split`` (default ``split``), ``--data``, ``--json``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("package", type=Path, help="model package folder or a bundled model's name")
    parser.add_argument("--split", default=split, choices=SPLITS,
                        help=f"val or test patients of the package's run (default {split}), all or external (every slice of --data)")
    parser.add_argument("--data", type=Path, help="data set folder (default: the one the package's manifest names)")
    parser.add_argument("--json", type=Path, help="also write the result here")
    return parser


def package_and_data(package: Path, data: Path | None) -> tuple[ModelPackage, Path]:
    """The model package at ``package`` and ``data``, or the data folder its manifest names."""
    loaded = ModelPackage.load(package)
    return loaded, data or Path(loaded.manifest["dataset"]["path"])


def emit(found: dict, json_path: Path | None) -> int:
    """Print ``found`` as JSON, write it to ``json_path`` when given; the script's exit status."""
    text = json.dumps(found, indent=2)
    print(text)
    if json_path:
        json_path.write_text(text + "\n")
    return 0


def run_probe(
    doc: str, probe: Callable[[ModelPackage, Path, str], dict], argv: list[str] | None, split: str = "val",
) -> int:
    """A probe script's ``main``: the shared arguments (described by ``doc``'s first line), then ``probe(package, data,
    split)`` printed with the package, data and split it ran on."""
    args = package_parser(doc.splitlines()[0], split=split).parse_args(argv)
    package, data = package_and_data(args.package, args.data)
    return emit({"package": str(package.root), "data": str(data), "split": args.split, **probe(package, data, args.split)},
                args.json)


def tumour_slice_outputs(
    package: ModelPackage, data: Path, split: str,
) -> Iterator[tuple[np.ndarray, np.ndarray, dict]]:
    """Every tumour slice of ``split`` of the BraTS-layout ``data``: the image (C, H, W) float32, the bool tumour
    mask and the graph's outputs for it (a batch of one, through the ONNX Runtime backend) under the package's rule
    and offset without the rule's host-side step."""
    dataset, _ = select_split(open_dataset(data, format="brats", channels=package.channels), package, split)
    base = parse_mask_rule(package.mask_rule).base
    with Predictor(package, backend="onnxruntime") as predictor:
        for i in range(len(dataset)):
            sample = dataset[i]
            truth = np.asarray(sample["mask"]) > 0
            if truth.any():
                image = np.asarray(sample["image"], np.float32)
                model_input = fit_image(image, package.image_size)[None]
                yield image, truth, predictor.backend.run(model_input, package.offset, base)
