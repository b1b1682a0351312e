"""What a built engine really computes: I/O dtypes and layer precisions (TensorRT 10.x and 11.x).

An engine that came out all FP32, or whose I/O dtypes break the graph contract, is refused.
The engine inspector's JSON changed in TensorRT 11: a layer tensor's ``"Format/Datatype"``
(10.x, e.g. ``"Half"`` or ``"Row major linear FP16 format"``) became separate ``"DataType"``
and ``"Format"`` fields, and ``"Bindings"`` became ``"I/O Tensors"``; both layouts are read.
"""
from __future__ import annotations

import json
import os
from typing import Any

from gpedge.errors import GpedgeError
from gpedge.graph.contract import io_dtypes

#: numpy dtype name -> TensorRT ``DataType`` name.
TRT_DTYPES = {"float32": "FLOAT", "float16": "HALF", "int32": "INT32", "uint8": "UINT8", "int64": "INT64",
              "int8": "INT8", "bool": "BOOL"}
#: TensorRT dtype of every graph input and output, from the graph contract.
EXPECTED_IO = {name: TRT_DTYPES[dtype] for name, dtype in io_dtypes().items()}

#: (substring, precision) in match order: 10.x writes "Half" without an execution context and e.g.
#: "Row major linear FP16 format" with one; 11.x writes "DataType": "Half".
_PRECISION_WORDS = (("bfloat16", "BF16"), ("bf16", "BF16"), ("half", "FP16"), ("fp16", "FP16"),
                    ("fp32", "FP32"), ("float", "FP32"), ("uint8", "UINT8"), ("int8", "INT8"),
                    ("int32", "INT32"), ("int64", "INT64"), ("bool", "BOOL"), ("fp8", "FP8"))


def precision_of(datatype: str) -> str:
    """``FP16``, ``FP32``, ... from an inspector data type or format text."""
    text = datatype.lower()
    for word, name in _PRECISION_WORDS:
        if word in text:
            return name
    return datatype.split(" ")[0] or "unknown"


def tensor_datatype(tensor: dict[str, Any]) -> str:
    """A layer tensor's data type text in either inspector layout (11.x ``DataType``, 10.x ``Format/Datatype``)."""
    return str(tensor.get("DataType") or tensor.get("Format/Datatype") or tensor.get("Format") or "")


def layer_precisions(information: dict[str, Any]) -> dict[str, int]:
    """Layers counted by the precision of their first output, from ``get_engine_information(JSON)``."""
    counts: dict[str, int] = {}
    for layer in information.get("Layers", []):
        outputs = layer.get("Outputs", []) if isinstance(layer, dict) else []
        for tensor in outputs[:1]:
            precision = precision_of(tensor_datatype(tensor))
            counts[precision] = counts.get(precision, 0) + 1
    return counts


def inspect_engine(engine: Any, context: Any | None = None) -> dict[str, Any]:
    """I/O tensor dtypes and layer output precisions of a deserialized engine.

    ``{"io": {name: {"mode", "dtype"}}, "layer_precisions": {"FP16": n, "FP32": m, ...}}``. With
    ``context`` (input shapes set), the inspector reports the formats of dynamic-shape tensors too.
    """
    import tensorrt as trt

    io = {}
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        mode = "input" if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else "output"
        io[name] = {"mode": mode, "dtype": engine.get_tensor_dtype(name).name}
    inspector = engine.create_engine_inspector()
    if context is not None:
        inspector.execution_context = context
    information = json.loads(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
    return {"io": io, "layer_precisions": layer_precisions(information)}


def check_engine(report: dict[str, Any], source: str | os.PathLike, precision: str = "FP16") -> None:
    """Refuse an engine whose I/O dtypes break the contract or that has no layer of ``precision``
    (``FP16`` for the FP16 graph, ``INT8`` for the Q/DQ graph)."""
    io = {name: entry["dtype"] for name, entry in report["io"].items()}
    wrong = {name: io.get(name) for name, dtype in EXPECTED_IO.items() if io.get(name) != dtype}
    if wrong:
        raise GpedgeError(f"engine built from {source} has unexpected I/O dtypes {wrong} (expected {EXPECTED_IO})")
    if not report["layer_precisions"].get(precision):
        raise GpedgeError(
            f"engine built from {source} has no {precision} layers ({report['layer_precisions']}): it would run in FP32; "
            "build it from model.fp16.onnx (FP16) or model.int8.onnx (INT8)"
        )
