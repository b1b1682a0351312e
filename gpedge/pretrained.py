"""Networks pretrained on ``gpedge synth`` data, shipped to start a training run from or to teach it
(``--init-from NAME``, ``--distil-from NAME``; no torch).

Each is a run folder under ``gpedge/assets/pretrained/<name>`` (``config.json`` and
``model.safetensors``, as ``gpedge train`` writes them); its files are checked against the sha256
recorded here before they are parsed. Both flags take such a name or any run folder.
"""
from __future__ import annotations

from pathlib import Path

from gpedge.errors import GpedgeError
from gpedge.runs import CONFIG, WEIGHTS

PRETRAINED_ROOT = Path(__file__).resolve().parent / "assets" / "pretrained"

#: name -> sha256 of each file of its run folder.
#: ``gp-unet-synth``: GP-UNet, width 16, BatchNorm, sinc upsampling, channels t1,t2,t1ce,flair; 8 epochs of
#: ``--recipe cpu`` on 192 ``gpedge synth`` patients at 96 px (``scripts/train_eval_all.sh``, seed 1701).
PRETRAINED: dict[str, dict[str, str]] = {
    "gp-unet-synth": {
        CONFIG: "f741432ce48e139904491031756d3abc4b8c607267ae14cc594af9f23c3c261a",
        WEIGHTS: "32f5f68edaa65e704eea53f4a938b7f1e3698edffb5f5e1d4825cb61bc93b5ae",
    },
}


def resolve_init(value: str | Path, flag: str = "--init-from") -> Path:
    """The run folder ``flag value`` names: a bundled network of :data:`PRETRAINED` (its files verified),
    else ``value`` as a path."""
    name = str(value)
    if name not in PRETRAINED:
        return Path(value)
    from gpedge.package import sha256_file  # not at import: the CLI reads PRETRAINED for its help text

    folder = PRETRAINED_ROOT / name
    for file, digest in PRETRAINED[name].items():
        path = folder / file
        if not path.is_file() or sha256_file(path) != digest:
            raise GpedgeError(
                f"{flag} {name}: the bundled {path} is missing or does not match its recorded sha256; "
                "reinstall gpedge"
            )
    return folder
