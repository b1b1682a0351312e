"""The interface every inference backend implements (a Polygraphy-style runner)."""
from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence

import numpy as np

from gpedge.errors import BackendUnavailable, PackageError
from gpedge.graph.contract import (
    BATCH, INPUT, INPUTS, MASK_RULE, OFFSET, OUTPUTS, input_specs, output_specs, parse_mask_rule,
)
from gpedge.package import ModelPackage

#: ``precision`` values a backend accepts; ``auto`` lets the backend choose (see :func:`gpedge.runtime.backends.create_backend`).
PRECISIONS = ("auto", "fp32", "fp16", "int8")


def check_precision(precision: str, supported: Sequence[str], backend: str) -> None:
    """Refuse a precision the backend cannot run, naming those it can."""
    if precision not in PRECISIONS:
        raise BackendUnavailable(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision != "auto" and precision not in supported:
        raise BackendUnavailable(f"{backend} backend runs {' or '.join(supported)}, not {precision}; "
                                 f"choose another --precision or --backend")


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


def check_graph(
    found: Mapping[str, tuple[str | None, Sequence[object] | None]], package: ModelPackage, where: str,
    fix: str = "re-export the package",
) -> None:
    """Refuse a graph or engine whose tensors do not fit the manifest: ``found`` maps each tensor name
    to its numpy dtype name and shape (``None`` where unknown; symbolic or -1 dimensions for the batch).

    Checks the channels, height and width of ``image``, the class count of ``logits``, ``probs`` and
    ``heatmaps``, the sizes of the maps and masks, and every dtype, against the manifest's
    ``input`` and ``classes`` (:mod:`gpedge.graph.contract`).
    """
    height, width = package.image_size
    expected = {**input_specs(len(package.channels), height, width), **output_specs(len(package.classes), height, width)}
    problems = []
    for name, spec in expected.items():
        dtype, shape = found.get(name, (None, None))
        if dtype is not None and dtype != spec["dtype"]:
            problems.append(f"'{name}' is {dtype}, the contract says {spec['dtype']}")
        if shape is None:
            continue
        fixed = [d if isinstance(d, int) and d >= 0 else None for d in shape]
        want = [None if d == BATCH else d for d in spec["shape"]]
        if len(fixed) != len(want) or any(w is not None and f is not None and f != w for f, w in zip(fixed, want)):
            problems.append(f"'{name}' has shape {list(shape)}, the manifest implies {spec['shape']}")
    batch = (found.get(INPUT, (None, None))[1] or [None])[0]
    max_batch = int(package.manifest["input"]["max_batch"])
    if isinstance(batch, int) and batch >= 0 and (batch != 1 or max_batch != 1):
        problems.append(f"'{INPUT}' has a fixed batch of {batch}, but input.max_batch is {max_batch} (batches of 1..max_batch are run)")
    if problems:
        raise PackageError(
            f"{where} does not fit {package.root / 'manifest.json'} (classes {package.classes}, channels "
            f"{package.channels}, {height}x{width}): {'; '.join(problems)}; {fix}"
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
    #: Precision of the network's compute (``fp32``, ``fp16``, ``int8``), stated in every result.
    precision: str = "fp32"

    def __init__(self, package: ModelPackage) -> None:
        self.package = package
        self.max_batch = int(package.manifest["input"].get("max_batch", 1))

    @property
    @abc.abstractmethod
    def description(self) -> str:
        """Where and how the graph runs (device, providers, precision), for logs and reports."""

    @property
    def provider(self) -> str:
        """The backend and the execution provider or device that runs the graph (reported in every result)."""
        return f"{self.name} {getattr(self, 'device', '')}".strip()

    @abc.abstractmethod
    def run(self, batch: np.ndarray, offset: float | None = None, rule: str | None = None) -> dict[str, np.ndarray]:
        """Run one batch and return the fused-graph outputs by name.

        ``offset`` and ``rule`` (a name of :data:`gpedge.graph.contract.MASK_RULES`) are fed to
        the graph's ``offset`` and ``mask_rule`` inputs (the package's when None).
        """

    def rule_inputs(self, offset: float | None, rule: str | None) -> dict[str, np.ndarray]:
        """The graph's mask-rule inputs: the caller's offset and rule, else the package manifest's
        (:meth:`~gpedge.package.ModelPackage.offset_for` the rule when only the rule is given)."""
        rule = self.package.mask_rule if rule is None else rule
        return rule_inputs(self.package.offset_for(rule) if offset is None else offset, rule)

    def close(self) -> None:
        """Release device memory and sessions; the backend is unusable afterwards."""

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
