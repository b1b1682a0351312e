"""What a training run is asked to do (``gpedge train`` flags; unset settings come from a recipe)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from gpedge.errors import GpedgeError
from gpedge.pretrained import PRETRAINED
from gpedge.train.augment import AUGMENTATIONS
from gpedge.train.recipes import OPTIMIZERS, RECIPES, SCHEDULES, Recipe

DEVICES = ("auto", "cpu", "cuda")
FORMATS = ("auto", "brats", "figshare", "folder")


@dataclass
class TrainOptions:
    """Options of one training run. Settings left at None are taken from ``recipe``."""

    arch: str
    data: Path
    out: Path
    format: str = "auto"
    channels: list[str] | None = None
    image_size: int | None = None
    model_options: dict[str, Any] = field(default_factory=dict)
    recipe: str = "paper"
    epochs: int | None = None
    max_steps: int | None = None
    batch_size: int | None = None
    accumulate: int | None = None
    optimizer: str | None = None
    lr: float | None = None
    weight_decay: float | None = None
    clip_value: float | None = None
    warmup_steps: int | None = None
    schedule: str | None = None
    map_loss: float | None = None
    map_top: float | None = None
    augment: str | None = None
    min_tumour_px: int | None = None
    rotation_degrees: float = 10.0
    seed: int = 1701
    device: str = "auto"
    amp: bool = False
    compile: bool = False
    workers: int = 2
    resume: bool = False
    init_from: str | None = None
    distil_from: str | None = None
    distil_weight: float = 1.0
    progress: bool = True

    def resolved(self) -> "TrainOptions":
        """A copy with every unset recipe setting filled in from ``recipe``."""
        if self.recipe not in RECIPES:
            raise GpedgeError(f"unknown --recipe {self.recipe!r}; choose one of {', '.join(RECIPES)}")
        defaults = RECIPES[self.recipe].settings()
        return replace(self, **{key: value for key, value in defaults.items() if getattr(self, key) is None})

    def hyperparameters(self) -> dict[str, Any]:
        """The training settings recorded in ``config.json`` (``train`` field)."""
        skip = {"arch", "data", "out", "format", "channels", "image_size", "model_options", "resume", "progress"}
        settings = {key: value for key, value in asdict(self).items() if key not in skip}
        for key in ("init_from", "distil_from"):
            value = settings[key]
            settings[key] = None if value is None else (value if value in PRETRAINED else str(Path(value).resolve()))
        return settings

    def validate(self) -> None:
        """Raise :class:`GpedgeError` for values no run can use, naming the flag to fix (on resolved options)."""
        unset = [f.name for f in fields(Recipe) if getattr(self, f.name) is None]
        if unset:
            raise GpedgeError(f"settings {', '.join(unset)} are unset; call resolved() first")
        positive = {"--epochs": self.epochs, "--batch-size": self.batch_size, "--accumulate": self.accumulate}
        if self.max_steps is not None:
            positive["--max-steps"] = self.max_steps
        if self.image_size is not None:
            positive["--image-size"] = self.image_size
        for flag, value in positive.items():
            if value < 1:
                raise GpedgeError(f"{flag} must be a positive integer, got {value}")
        non_negative = {"--workers": self.workers, "--warmup-steps": self.warmup_steps, "--min-tumour-px": self.min_tumour_px}
        for flag, value in non_negative.items():
            if value < 0:
                raise GpedgeError(f"{flag} must be 0 or more, got {value}")
        if not self.lr > 0:
            raise GpedgeError(f"--lr must be positive, got {self.lr}")
        if not self.weight_decay >= 0:
            raise GpedgeError(f"--weight-decay must be 0 or more, got {self.weight_decay}")
        if not self.map_loss >= 0:
            raise GpedgeError(f"--map-loss must be 0 (off) or more, got {self.map_loss}")
        if not 0 < self.map_top <= 1:
            raise GpedgeError(f"--map-top must be a share of the map's pixels in (0, 1], got {self.map_top}")
        if not self.distil_weight >= 0:
            raise GpedgeError(f"--distil-weight must be 0 (off) or more, got {self.distil_weight}")
        if not self.clip_value >= 0:
            raise GpedgeError(f"--clip-value must be 0 (off) or more, got {self.clip_value}")
        choices = {
            "--optimizer": (self.optimizer, OPTIMIZERS),
            "--schedule": (self.schedule, SCHEDULES),
            "--device": (self.device, DEVICES),
            "--format": (self.format, FORMATS),
            "--augment": (self.augment, tuple(AUGMENTATIONS)),
        }
        for flag, (value, valid) in choices.items():
            if value not in valid:
                raise GpedgeError(f"{flag} must be one of {', '.join(valid)}, got {value!r}")
