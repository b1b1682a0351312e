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
    #: Whether the graph has an ``offset`` input that ``run`` feeds (else ``run`` recomputes the
    #: threshold and mask on the host when the offset differs from the one baked into the graph).
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

        ``threshold`` and ``mask`` follow ``offset``, or the package's offset when it is None.
        """

    def effective_offset(self, offset: float | None) -> float:
        """The offset a call uses: the caller's, else the package manifest's."""
        return self.package.offset if offset is None else float(offset)

    def apply_host_offset(self, outputs: dict[str, np.ndarray], offset: float | None) -> dict[str, np.ndarray]:
        """For graphs without an ``offset`` input: redo ``threshold`` and ``mask`` on the host when the
        offset wanted differs from the default baked into the graph (``gpedge.postprocess`` rule)."""
        wanted = self.effective_offset(offset)
        if self.accepts_offset or wanted == self.package.graph_offset:
            return outputs
        from gpedge.postprocess import masks_from_outputs, multiotsu_threshold

        heatmaps, labels = outputs["heatmaps"], outputs["label"].astype(np.int64)
        outputs["threshold"] = np.array(
            [multiotsu_threshold(heatmaps[i, labels[i]], wanted) for i in range(len(labels))], dtype=np.float32
        )
        outputs["mask"] = masks_from_outputs(heatmaps, labels, wanted, self.package.no_tumour_class)
        return outputs

    def close(self) -> None:
        """Release device memory and sessions; the backend is unusable afterwards."""

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
