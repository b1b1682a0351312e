"""What a training run is asked to do (``gpedge train`` flags, reference recipe as defaults)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gpedge.errors import GpedgeError

DEVICES = ("auto", "cpu", "cuda")
FORMATS = ("auto", "brats", "figshare", "folder")


@dataclass
class TrainOptions:
    """Options of one training run. Defaults follow the reference recipe (see docs)."""

    arch: str
    data: Path
    out: Path
    format: str = "auto"
    channels: list[str] | None = None
    image_size: int | None = None
    model_options: dict[str, Any] = field(default_factory=dict)
    epochs: int = 300
    max_steps: int | None = None
    batch_size: int = 8
    accumulate: int = 16
    lr: float = 1e-3
    weight_decay: float = 5e-4
    clip_value: float = 1.0
    rotation_degrees: float = 10.0
    seed: int = 1701
    device: str = "auto"
    amp: bool = False
    workers: int = 2
    resume: bool = False
    progress: bool = True

    def hyperparameters(self) -> dict[str, Any]:
        """The training settings recorded in ``config.json`` (``train`` field)."""
        skip = {"arch", "data", "out", "format", "channels", "image_size", "model_options", "resume", "progress"}
        return {key: value for key, value in asdict(self).items() if key not in skip}

    def validate(self) -> None:
        """Raise :class:`GpedgeError` for values no run can use, naming the flag to fix."""
        positive = {"--epochs": self.epochs, "--batch-size": self.batch_size, "--accumulate": self.accumulate}
        if self.max_steps is not None:
            positive["--max-steps"] = self.max_steps
        if self.image_size is not None:
            positive["--image-size"] = self.image_size
        for flag, value in positive.items():
            if value < 1:
                raise GpedgeError(f"{flag} must be a positive integer, got {value}")
        if self.workers < 0:
            raise GpedgeError(f"--workers must be 0 or more, got {self.workers}")
        if not self.lr > 0:
            raise GpedgeError(f"--lr must be positive, got {self.lr}")
        if not self.weight_decay >= 0:
            raise GpedgeError(f"--weight-decay must be 0 or more, got {self.weight_decay}")
        if self.device not in DEVICES:
            raise GpedgeError(f"--device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.format not in FORMATS:
            raise GpedgeError(f"--format must be one of {', '.join(FORMATS)}, got {self.format!r}")
