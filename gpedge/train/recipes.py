"""Named training recipes: the paper's settings and a CPU-budget one (``gpedge train --recipe``).

A recipe fills every training setting the command line leaves unset. Why the CPU recipe
differs from the paper's is measured in docs/quality.md ("Training: why the networks
collapsed and what fixed it").
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from gpedge.train.losses import TOP_FRACTION

OPTIMIZERS = ("adam", "adamw")


@dataclass(frozen=True)
class Recipe:
    """Settings of one training recipe."""

    epochs: int
    batch_size: int
    accumulate: int
    optimizer: str
    """``adam``: Adam with L2 decay added to the gradient of every parameter (the paper's);
    ``adamw``: decoupled decay (AdamW), applied to convolution weights only."""
    lr: float
    weight_decay: float
    clip_value: float
    """Gradient clipping by value; 0: no clipping."""
    warmup_steps: int
    """Optimizer steps of linear learning-rate warm-up from 0."""
    schedule: str
    """``constant`` or ``cosine`` (decay to 0 over the run's optimizer steps after the warm-up)."""
    map_loss: float
    """Weight of the heatmap cross-entropy (:mod:`gpedge.train.losses`); 0: logits only (the paper's)."""
    map_top: float
    """Share of each class map's pixels whose mean scores the class in the heatmap term."""
    augment: str
    """Augmentation (:data:`gpedge.train.augment.AUGMENTATIONS`): ``paper`` rotation and flips; ``scanner`` adds
    zoom and per-channel gamma and gain; ``gain`` adds a per-channel gain only."""
    min_tumour_px: int
    """Training slices only: a tumour slice whose tumour covers fewer pixels (at the training size) is left out;
    0 keeps every slice. Validation and test slices are never left out."""

    def settings(self) -> dict[str, object]:
        return asdict(self)


RECIPES: dict[str, Recipe] = {
    # The reference recipe: Adam 1e-3 with L2 5e-4, value clipping 1, batch 8 x 16, 300 epochs.
    "paper": Recipe(
        epochs=300, batch_size=8, accumulate=16, optimizer="adam", lr=1e-3, weight_decay=5e-4,
        clip_value=1.0, warmup_steps=0, schedule="constant", map_loss=0.0, map_top=TOP_FRACTION,
        augment="paper", min_tumour_px=0,
    ),
    # Eight epochs on two CPU cores: one optimizer step per batch of 8; decoupled decay that
    # cannot shrink a layer faster than lr * weight_decay per step; 300 steps of warm-up (at full
    # rate from the first step, Adam's sign-like updates switch off a third of GP-ShuffleUNet's
    # first decoder ReLUs within 60 steps); cosine decay to the end; the heatmap term, so that the
    # maps and not only the pooled features separate the classes (gpedge.train.losses).
    "cpu": Recipe(
        epochs=8, batch_size=8, accumulate=1, optimizer="adamw", lr=1e-3, weight_decay=0.05,
        clip_value=1.0, warmup_steps=300, schedule="cosine", map_loss=1.0, map_top=TOP_FRACTION,
        augment="paper", min_tumour_px=0,
    ),
}
SCHEDULES = ("constant", "cosine")
