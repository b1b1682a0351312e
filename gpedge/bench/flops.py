"""FLOPs of a model from its ONNX graph: multiply-accumulates of every Conv, ConvTranspose, MatMul
and Gemm, with shapes from ONNX shape inference at batch 1, counted as 2 FLOPs per MAC.

Element-wise work (activations, normalisation, pooling, the mask head) is not counted: it is a
few per cent of the convolutions and runs far below the matrix units' rate anyway.
"""
from __future__ import annotations

import math
import os


def gflop_per_slice(onnx_path: str | os.PathLike) -> float:
    """GFLOP of one slice (batch 1) through the ONNX model at ``onnx_path``."""
    import onnx

    model = onnx.load(str(onnx_path))
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].ClearField("dim_param")
            dims[0].dim_value = 1
    model = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    shapes = _known_shapes(model)
    macs = sum(_node_macs(node, shapes) for node in model.graph.node)
    return 2.0 * macs / 1e9


def _known_shapes(model) -> dict[str, list[int]]:
    shapes: dict[str, list[int]] = {}
    graph = model.graph
    for value in [*graph.input, *graph.value_info, *graph.output]:
        dims = value.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = [d.dim_value for d in dims]
    for init in graph.initializer:
        shapes[init.name] = list(init.dims)
    return shapes


def _node_macs(node, shapes: dict[str, list[int]]) -> int:
    if node.op_type not in ("Conv", "ConvTranspose", "MatMul", "Gemm"):
        return 0
    ins = [shapes.get(name) for name in node.input[:2]]
    out = shapes.get(node.output[0])
    if any(shape is None for shape in ins) or out is None:
        raise ValueError(
            f"ONNX shape inference left node {node.name or node.op_type} without static shapes; "
            "cannot count its FLOPs"
        )
    x, w = ins
    if node.op_type == "Conv":
        # out (N, Cout, *spatial); weight (Cout, Cin/groups, *kernel)
        return math.prod(out) * math.prod(w[1:])
    if node.op_type == "ConvTranspose":
        # each input element scatters into Cout/groups * kernel outputs; weight (Cin, Cout/groups, *kernel)
        return math.prod(x) * math.prod(w[1:])
    if node.op_type == "Gemm":
        trans_a = next((a.i for a in node.attribute if a.name == "transA"), 0)
        inner = x[0] if trans_a else x[1]
        return math.prod(out) * inner
    inner = x[-1]
    return math.prod(out) * inner
