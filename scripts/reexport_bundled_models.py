"""Re-export the bundled model packages from their own weights with this gpedge's exporter (no training).

For changes of the graph contract or the package format: for each bundled package named (default:
every one of ``gpedge.package.BUNDLED``), a run folder is rebuilt from its ``model.safetensors``
(checked against its manifest) and the model, data and split its manifest records, exported with
the same image size, max batch, mask rule and offset, and swapped in for the bundled folder.
Needs the ``[export]`` extra.

    python scripts/reexport_bundled_models.py [--data DIR] [NAME ...]

``--data``: where the training data set the manifests record lies on this machine (both bundled
models were trained on ``gpedge synth DIR --patients 192 --seed 2027 --size 128 --slices 48``); with
it each package records the input statistics of its training slices (the runtime's
out-of-distribution check) and the parity checks run on its test patients.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from gpedge.errors import PackageError
from gpedge.export import ExportOptions, export_package
from gpedge.graph.contract import DEFAULT_MASK_RULE
from gpedge.package import BUNDLED, ModelPackage
from gpedge.runs import WEIGHTS, RunConfig


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"bundled packages: {', '.join(BUNDLED)} (default: all)")
    parser.add_argument("--data", type=Path, help="the training data set's folder on this machine")
    args = parser.parse_args()
    unknown = [name for name in args.names if name not in BUNDLED]
    if unknown:
        parser.error(f"no bundled package is called {', '.join(unknown)}; use {', '.join(BUNDLED)}")
    for name in args.names or BUNDLED:
        try:
            reexport(ModelPackage.load(name), args.data)
        except PackageError as exc:  # a damaged bundled package: restore it from git first
            print(exc, file=sys.stderr)
            return 2
    return 0


def reexport(package: ModelPackage, data: Path | None) -> None:
    """Re-export the bundled ``package`` in place from its weights (checked against its manifest)."""
    manifest, asset = package.manifest, package.root
    dataset = dict(manifest["dataset"])
    if data is not None:
        dataset["path"] = str(data.resolve())
    weights = package.read_bytes(WEIGHTS)
    with tempfile.TemporaryDirectory(prefix="gpedge-reexport-") as tmp:
        run = Path(tmp) / "run"
        run.mkdir()
        (run / WEIGHTS).write_bytes(weights)
        RunConfig(
            arch=manifest["model"]["arch"],
            model_options=manifest["model"]["options"],
            channels=manifest["input"]["channels"],
            class_names=manifest["classes"],
            image_size=int(manifest["input"]["height"]),
            no_tumour_class=manifest["mask_rule"]["empty_for_class"],
            normalisation=manifest["normalisation"]["type"],
            dataset=dataset,
            split=manifest["split"],
        ).save(run)
        options = ExportOptions(max_batch=int(manifest["input"]["max_batch"]), engine=False,
                                mask_rule=manifest["mask_rule"].get("rule", DEFAULT_MASK_RULE),
                                offset=float(manifest["mask_rule"]["offset"]),
                                flip_average=bool(manifest.get("flip_average", False)),
                                class_bias=tuple(manifest["class_bias"]["values"]) if manifest.get("class_bias") else False)
        exported = export_package(run, Path(tmp) / "package", options)
        shutil.rmtree(asset)
        shutil.copytree(exported, asset)
    print(f"re-exported {asset} (mask rule {options.mask_rule}, offset {options.offset}, max batch {options.max_batch})")


if __name__ == "__main__":
    sys.exit(main())
