"""The interface every inference backend implements (a Polygraphy-style runner)."""
from __future__ import annotations

import abc
from collections.abc import Sequence

import numpy as np

from gpedge.errors import PackageError
from gpedge.graph.contract import INPUTS, MASK_RULE, OFFSET, OUTPUTS, parse_mask_rule
from gpedge.package import ModelPackage


def rule_inputs(offset: float, rule: str) -> dict[str, np.ndarray]:
    """The graph's mask-rule inputs for parameter ``offset`` of the named ``rule``."""
    return {OFFSET: np.array([offset], dtype=np.float32), MASK_RULE: np.array(parse_mask_rule(rule).code, dtype=np.int32)}


def check_io(inputs: Sequence[str], outputs: Sequence[str], where: str, fix: str = "re-export the package") -> None:
    """Refuse a graph or engine whose inputs and outputs are not those of the graph contract."""
    missing_outputs = [name for name in OUTPUTS if name not in outputs]
    if set(inputs) != set(INPUTS) or missing_outputs:
        raise PackageError(
            f"{where}: inputs {sorted(inputs)} and outputs {sorted(outputs)} do not follow the gpedge graph contract "
            f"(inputs {list(INPUTS)}, outputs {list(OUTPUTS)}); {fix}"
        )


class Backend(abc.ABC):
    """Runs the fused graph of a model package on one batch at a time.

    ``run`` takes a float32 (N, C, H, W) batch of raw intensities at the model size, with
    1 <= N <= ``max_batch``, and the mask rule's parameter and name, and returns every fused-graph output by name
    (:data:`gpedge.graph.contract.OUTPUTS`). Implementations must be safe to call from several
    threads at once.
    """

    #: Registry name (``onnxruntime``, ``tensorrt``, ``torch``).
    name: str = ""

    def __init__(self, package: ModelPackage) -> None:
        self.package = package
        self.max_batch = int(package.manifest["input"].get("max_batch", 1))

    @property
    @abc.abstractmethod
    def description(self) -> str:
        """Where and how the graph runs (device, providers, precision), for logs and reports."""

    @abc.abstractmethod
    def run(self, batch: np.ndarray, offset: float | None = None, rule: str | None = None) -> dict[str, np.ndarray]:
        """Run one batch and return the fused-graph outputs by name.

        ``offset`` and ``rule`` (a name of :data:`gpedge.graph.contract.MASK_RULES`) are fed to
        the graph's ``offset`` and ``mask_rule`` inputs (the package's when None).
        """

    def rule_inputs(self, offset: float | None, rule: str | None) -> dict[str, np.ndarray]:
        """The graph's mask-rule inputs: the caller's offset and rule, else the package manifest's."""
        return rule_inputs(self.package.offset if offset is None else offset, self.package.mask_rule if rule is None else rule)

    def close(self) -> None:
        """Release device memory and sessions; the backend is unusable afterwards."""

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
