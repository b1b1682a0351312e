"""Training run folders: ``config.json`` + ``model.safetensors`` + ``metrics.json``.

``config.json`` holds everything needed to rebuild the model and its preprocessing.
Reading the config needs no torch; loading the weights does (``[train]`` extra).
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gpedge.atomic import atomic_write_bytes, atomic_write_json
from gpedge.errors import GpedgeError

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
METRICS = "metrics.json"


@dataclass
class RunConfig:
    """What a run folder records about its model, data and split."""

    arch: str
    model_options: dict[str, Any]
    channels: list[str]
    class_names: list[str]
    image_size: int
    no_tumour_class: int | None = 0
    normalisation: str = "slice_max"
    dataset: dict[str, Any] = field(default_factory=dict)
    split: dict[str, list[str]] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    gpedge_version: str = ""

    @property
    def in_channels(self) -> int:
        return len(self.channels)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def save(self, run_dir: str | os.PathLike) -> None:
        """Write ``config.json`` atomically."""
        atomic_write_json(Path(run_dir) / CONFIG, asdict(self))

    @classmethod
    def load(cls, run_dir: str | os.PathLike) -> "RunConfig":
        """Read ``config.json`` of a run folder, with a clear error when it is missing or malformed."""
        path = Path(run_dir) / CONFIG
        if not path.is_file():
            raise GpedgeError(f"{path} not found: {run_dir} is not a training run folder (made by 'gpedge train')")
        try:
            config = cls(**json.loads(path.read_text()))
        except (json.JSONDecodeError, TypeError) as exc:
            raise GpedgeError(f"{path} is malformed ({exc}); re-run 'gpedge train'") from exc
        config.model_options = _with_defaults(config.arch, config.model_options)
        return config


def _with_defaults(arch: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` completed with the network's defaults for the options a run predates (e.g. ``norm``),
    so that an older run compares equal to the same network built today."""
    from gpedge.models import default_options

    try:
        return {**default_options(arch), **options}
    except ValueError:
        return options


def build_model(config: RunConfig):
    """Create the (untrained) network a run config describes."""
    from gpedge.models import create_model

    return create_model(config.arch, in_channels=config.in_channels, num_classes=config.num_classes, **config.model_options)


def load_weights(model, run_dir: str | os.PathLike, arch: str) -> None:
    """Load a run folder's ``model.safetensors`` into ``model`` (a network ``arch`` of the run's config)."""
    from safetensors.torch import load_file

    weights = Path(run_dir) / WEIGHTS
    if not weights.is_file():
        raise GpedgeError(f"{weights} not found: the run has no saved model yet (train it first)")
    try:
        model.load_state_dict(load_file(str(weights)))
    except Exception as exc:  # safetensors raises several types for damaged files
        raise GpedgeError(f"{weights} cannot be loaded into {arch} ({exc}); the run folder is inconsistent") from exc


def load_run(run_dir: str | os.PathLike):
    """Return ``(model, config)`` for a run folder, weights loaded with safetensors, model in eval mode."""
    config = RunConfig.load(run_dir)
    model = build_model(config)
    load_weights(model, run_dir, config.arch)
    model.eval()
    return model, config


def save_weights(model, run_dir: str | os.PathLike) -> None:
    """Save a model's state dict as safetensors atomically."""
    from safetensors.torch import save

    atomic_write_bytes(Path(run_dir) / WEIGHTS, save({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}))
