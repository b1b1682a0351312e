"""The interface every inference backend implements (a Polygraphy-style runner)."""
from __future__ import annotations

import abc

import numpy as np

from gpedge.package import ModelPackage

#: Output names of the fused graph, in the order of the package contract.
OUTPUT_NAMES = ("logits", "probs", "label", "heatmaps", "threshold", "mask")


class Backend(abc.ABC):
    """Runs the fused graph of a model package on one batch at a time.

    ``run`` takes a float32 (N, C, H, W) batch of raw intensities at the model size, with
    1 <= N <= ``max_batch``, and returns every fused-graph output by name. Implementations
    must be safe to call from several threads at once.
    """

    #: Registry name (``onnxruntime``, ``tensorrt``, ``torch``).
    name: str = ""
    #: Whether ``run`` feeds ``offset`` to the graph's ``offset`` input (else the caller
    #: recomputes the threshold on the host with ``gpedge.postprocess``).
    accepts_offset: bool = False

    def __init__(self, package: ModelPackage) -> None:
        self.package = package
        self.max_batch = int(package.manifest["input"].get("max_batch", 1))

    @property
    @abc.abstractmethod
    def description(self) -> str:
        """Where and how the graph runs (device, providers, precision), for logs and reports."""

    @abc.abstractmethod
    def run(self, batch: np.ndarray, offset: float | None = None) -> dict[str, np.ndarray]:
        """Run one batch and return the fused-graph outputs by name.

        ``offset`` overrides the mask-rule offset stored in the graph when ``accepts_offset``.
        """

    def close(self) -> None:
        """Release device memory and sessions; the backend is unusable afterwards."""

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
