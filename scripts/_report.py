"""What the breakdown scripts share: the package and data folder they read, and how they report."""
from __future__ import annotations

import json
from pathlib import Path

from gpedge.package import ModelPackage


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
