"""Re-export the bundled default model from its own weights with this gpedge's exporter (no training).

For changes of the graph contract or the package format: a run folder is rebuilt from the
bundled package's ``model.safetensors`` (checked against its manifest) and the model, data and
split its manifest records, exported with the same image size, max batch and mask offset, and
swapped in for ``gpedge/assets/default_model``. Needs the ``[export]`` extra.

    python scripts/reexport_default_model.py [--data DIR]

``--data``: where the training data set the manifest records lies on this machine (e.g. regenerated
with the ``gpedge synth`` command of ``scripts/build_default_model.sh``); with it the package
records the input statistics of its training slices (the runtime's out-of-distribution check)
and the parity checks run on its test patients.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

from gpedge.export import ExportOptions, export_package
from gpedge.graph.contract import DEFAULT_MASK_RULE
from gpedge.runs import WEIGHTS, RunConfig

ASSET = Path(__file__).resolve().parents[1] / "gpedge" / "assets" / "default_model"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="the training data set's folder on this machine")
    args = parser.parse_args()
    manifest = json.loads((ASSET / "manifest.json").read_text())
    dataset = dict(manifest["dataset"])
    if args.data is not None:
        dataset["path"] = str(args.data.resolve())
    weights = (ASSET / WEIGHTS).read_bytes()
    if hashlib.sha256(weights).hexdigest() != manifest["files"][WEIGHTS]["sha256"]:
        print(f"{ASSET / WEIGHTS} does not match its manifest; restore it from git first", file=sys.stderr)
        return 2
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
                                offset=float(manifest["mask_rule"]["offset"]))
        package = export_package(run, Path(tmp) / "package", options)
        shutil.rmtree(ASSET)
        shutil.copytree(package, ASSET)
    print(f"re-exported {ASSET} (mask rule {options.mask_rule}, offset {options.offset}, max batch {options.max_batch})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
