"""Export the fused module to ONNX (torch.export-based exporter) and check the graph contract."""
from __future__ import annotations

import ast
import logging
import os
import warnings
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import onnx
from onnx import TensorProto, helper

from gpedge.errors import GpedgeError
from gpedge.graph.contract import BATCH, INPUTS, OUTPUTS, input_specs, output_specs

DEFAULT_OPSET = 18


def export_fused(
    fused,
    path: str | os.PathLike,
    *,
    channels: int,
    height: int,
    width: int,
    max_batch: int,
    opset: int = DEFAULT_OPSET,
    metadata: dict[str, str] | None = None,
) -> onnx.ModelProto:
    """Export ``fused`` (a ``FusedModel`` in eval mode) to ``path`` with a dynamic batch axis.

    The inputs ``image``, ``offset`` and ``mask_rule`` are true graph inputs
    (:mod:`gpedge.graph.contract`): every caller feeds the mask rule's parameter and code. Raises ``GpedgeError`` when the exported graph breaks the
    I/O contract.
    """
    import torch

    sample = torch.rand(2, channels, height, width, generator=torch.Generator().manual_seed(0)) * 1000.0
    offset_value = torch.tensor([0.5], dtype=torch.float32)
    rule_code = torch.tensor([1, 1, 1], dtype=torch.int32)
    batch = torch.export.Dim("batch", min=1, max=max(max_batch, 2))
    with _quiet_exporter(), torch.no_grad():
        program = torch.onnx.export(
            fused,
            (sample, offset_value, rule_code),
            dynamo=True,
            input_names=list(INPUTS),
            output_names=list(OUTPUTS),
            dynamic_shapes=({0: batch}, None, None),
            opset_version=opset,
            optimize=True,
            verbose=False,
        )
    model = program.model_proto
    for key, value in (metadata or {}).items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    onnx.save(model, str(path))
    onnx.checker.check_model(str(path), full_check=True)
    num_classes = int(fused.network.config["num_classes"])
    check_contract(model, channels, height, width, num_classes)
    return model


def check_contract(
    model: onnx.ModelProto, channels: int, height: int, width: int, num_classes: int, inputs: dict | None = None
) -> None:
    """Run strict shape inference and check input/output names, dtypes and shapes against the contract.

    ``inputs``: the input specs to hold the graph to (default :func:`~gpedge.graph.contract.input_specs`).
    """
    inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    inputs = input_specs(channels, height, width) if inputs is None else inputs
    expected = {**inputs, **output_specs(num_classes, height, width)}
    found = {v.name: v for v in list(inferred.graph.input) + list(inferred.graph.output)}
    problems = []
    initializers = {t.name for t in model.graph.initializer}
    extra = [v.name for v in model.graph.input if v.name not in expected or v.name in initializers]
    if extra:
        problems.append(f"graph inputs {extra} are not (or not only) inputs of the contract")
    for name, spec in expected.items():
        value = found.get(name)
        if value is None:
            problems.append(f"'{name}' missing")
            continue
        dtype, shape = _value_type(value)
        if dtype != spec["dtype"]:
            problems.append(f"'{name}' is {dtype}, expected {spec['dtype']}")
        want = [None if d == BATCH else d for d in spec["shape"]]
        got = [d if isinstance(d, int) else None for d in shape]
        if got != want:
            problems.append(f"'{name}' has shape {shape}, expected {spec['shape']}")
    if problems:
        raise GpedgeError(f"exported graph breaks the gpedge I/O contract: {'; '.join(problems)}; please report this")


def _value_type(value: onnx.ValueInfoProto) -> tuple[str, list]:
    tensor = value.type.tensor_type
    dtype = elem_type_name(tensor.elem_type)
    shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tensor.shape.dim]
    return dtype, shape


def module_scopes(node: onnx.NodeProto) -> list[str]:
    """The torch module path the exporter recorded for ``node``, outermost first (e.g. ``['', 'network',
    'network.head', ...]``); empty when the node carries none."""
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            return list(ast.literal_eval(prop.value))
    return []


def elem_type_name(elem_type: int) -> str:
    """numpy-style name of an ONNX element type (``float16``, ``float32``, ...)."""
    return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).name if elem_type != TensorProto.UNDEFINED else "undefined"


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's notes (optional torchvision ops, optimiser passes) unless something fails."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx._internal.exporter._registration", "onnxscript", "onnx_ir")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
