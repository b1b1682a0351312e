"""``Result``: one image's (or one slice's) prediction at the input's own resolution."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np


#: Stages reported in ``Result.speed`` (milliseconds per image).
STAGES = ("load", "preprocess", "inference", "postprocess")


class Source(NamedTuple):
    """Where an image came from: file or folder (``None`` for arrays), slice or frame, output stem."""

    path: str | None
    slice: int | None
    name: str

    @property
    def stem(self) -> str:
        """File-name stem for this image's outputs (``<name>`` or ``<name>_slice<NNN>``)."""
        return self.name if self.slice is None else f"{self.name}_slice{self.slice:03d}"


@dataclass
class Result:
    """Prediction for one image or slice.

    ``heatmap`` is the predicted class's map and ``heatmaps`` all classes' maps (float32, at
    the input's resolution); ``mask`` is bool at the input's resolution (empty for the
    no-tumour class and for an input flagged out of distribution); ``threshold`` is the mask
    threshold on ``heatmap``; ``precision`` the
    precision of the network's compute that made it (``fp32``, ``fp16``, ``int8``); ``speed`` holds
    milliseconds per image for each stage of :data:`STAGES`.
    """

    label: str
    class_index: int
    probabilities: dict[str, float]
    heatmap: np.ndarray
    heatmaps: np.ndarray
    mask: np.ndarray
    threshold: float
    precision: str
    source: Source
    speed: dict[str, float]
    image: np.ndarray = field(repr=False)
    """(H, W) raw intensities of the channel shown in overlays."""
    is_tumour: bool = field(default=True, repr=False)
    """Whether the predicted class is a tumour class (False for the no-tumour class, whose map localises nothing)."""
    ood_reasons: tuple[str, ...] = ()
    """Why the input lies outside what the model was trained on (see ``gpedge.runtime.ood``); empty when it does not."""
    provider: str = ""
    """Where the graph ran: the backend and its execution provider (e.g. ``onnxruntime CPUExecutionProvider``)."""

    @property
    def out_of_distribution(self) -> bool:
        """Whether the input is far from the training data: its label must not be shown as a diagnosis."""
        return bool(self.ood_reasons)

    @property
    def mask_area_px(self) -> int:
        return int(self.mask.sum())

    @property
    def probability(self) -> float:
        """Probability of the predicted class."""
        return self.probabilities[self.label]

    def plot(self) -> np.ndarray:
        """RGB uint8 overlay of scan, heatmap, mask outline and label (see ``gpedge.runtime.visualize``)."""
        from gpedge.runtime.visualize import overlay

        title = "NO RESULT: out of distribution" if self.out_of_distribution else f"{self.label}  p={self.probability:.2f}"
        if self.source.slice is not None:
            title += f"   slice {self.source.slice}"
        if self.out_of_distribution:
            return overlay(self.image, None, np.zeros_like(self.mask), title, {}, "; ".join(self.ood_reasons))
        heat = self.heatmap if self.is_tumour else None
        return overlay(self.image, heat, self.mask, title, self.probabilities)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no arrays)."""
        out: dict[str, Any] = {"file": self.source.path}
        if self.source.slice is not None:
            out["slice"] = self.source.slice
        out.update(
            label=self.label,
            class_index=self.class_index,
            probabilities={k: round(float(v), 6) for k, v in self.probabilities.items()},
            threshold=float(self.threshold),
            precision=self.precision,
            mask_area_px=self.mask_area_px,
            height=int(self.mask.shape[0]),
            width=int(self.mask.shape[1]),
            speed_ms={k: round(float(v), 3) for k, v in self.speed.items()},
            out_of_distribution=self.out_of_distribution,
            ood_reasons=list(self.ood_reasons),
            provider=self.provider,
        )
        return out

    def save(self, directory: str | Path, stem: str | None = None, overwrite: bool = False) -> dict[str, str]:
        """Write ``<stem>_mask.png``, ``<stem>_heatmap.png``, ``<stem>_overlay.png`` and ``<stem>.json``
        into ``directory`` (all or none) and return their paths by kind.

        An existing file is replaced only with ``overwrite`` (otherwise :class:`~gpedge.errors.OutputError`).
        """
        from gpedge.atomic import OutputFiles
        from gpedge.runtime.save import save_result

        with OutputFiles(overwrite) as files:
            return save_result(self, directory, stem or self.source.stem, files)
