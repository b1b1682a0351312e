"""FP16 copy of the fused graph for strongly typed TensorRT (10.12+ / 11).

The network's nodes (those the exporter attributes to the ``network`` submodule) compute in
FP16 with FP16 weights; inputs, outputs, normalisation, global max pooling, normalisation
layers, softmax and the mask rule stay FP32, with explicit Cast nodes at every boundary.
A small dedicated pass rather than ``onnxconverter_common.float16``: that converter also
casts initializers of blocked nodes to FP16 (clipping the mask rule's constants), which a
strongly typed engine would then execute as written.
"""
from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from gpedge.errors import GpedgeError
from gpedge.export.onnx_export import elem_type_name, module_scopes

NETWORK_SCOPE = "network"
#: Ops kept in FP32 even inside the network (range or precision of reductions, float side inputs).
FP32_OPS = frozenset(
    {"ReduceMax", "GlobalMaxPool", "InstanceNormalization", "ReduceMean", "ReduceSum", "Softmax",
     "Pow", "Sqrt", "Resize", "Upsample", "Range", "TopK", "CumSum"}
)
#: Ops whose FP16 compute is the point of the FP16 graph.
COMPUTE_OPS = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm"})
FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """Convert an FP32 fused graph exported by ``gpedge.export.onnx_export`` to the FP16 graph.

    The result is checked (ONNX checker, :func:`precision_summary`): ``GpedgeError`` if a network
    convolution stayed FP32, a head MatMul became FP16, or a graph input/output changed type.
    """
    converted = _Fp16Pass(model).run()
    onnx.checker.check_model(converted, full_check=True)
    summary = precision_summary(converted)
    problems = []
    if set(summary["network_compute"]) != {"float16"}:
        problems.append(f"network convolutions/MatMuls compute in {summary['network_compute']}, expected float16 only")
    if set(summary["head_compute"]) - {"float32"}:
        problems.append(f"mask-rule MatMuls compute in {summary['head_compute']}, expected float32 only")
    if _io_types(converted) != _io_types(model):
        problems.append("graph inputs/outputs changed type")
    if problems:
        raise GpedgeError(f"FP16 conversion failed: {'; '.join(problems)}; please report this with the model architecture")
    return converted


def precision_summary(model: onnx.ModelProto) -> dict:
    """Compute nodes (Conv, MatMul, ...) counted by the dtype of their first input, and I/O dtypes.

    ``{"network_compute": {"float16": n}, "head_compute": {"float32": m}, "inputs": {name: dtype},
    "outputs": {name: dtype}, "nodes_by_dtype": {dtype: count}}``; the head is everything outside
    the network (normalisation, softmax, label, mask rule).
    """
    types = _value_types(onnx.shape_inference.infer_shapes(model))
    network: Counter[str] = Counter()
    head: Counter[str] = Counter()
    by_dtype: Counter[str] = Counter()
    for node in model.graph.node:
        dtype = elem_type_name(types.get(node.input[0], 0)) if node.input and node.input[0] else "none"
        by_dtype[dtype] += 1
        if node.op_type in COMPUTE_OPS:
            (network if _in_network(node) else head)[dtype] += 1
    return {
        "network_compute": dict(network),
        "head_compute": dict(head),
        "inputs": {v.name: elem_type_name(v.type.tensor_type.elem_type) for v in model.graph.input},
        "outputs": {v.name: elem_type_name(v.type.tensor_type.elem_type) for v in model.graph.output},
        "nodes_by_dtype": dict(by_dtype),
    }


class _Fp16Pass:
    """One pass over the (topologically sorted) nodes, tracking the dtype of every float tensor."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = onnx.ModelProto()
        self.model.CopyFrom(model)
        self.types = _value_types(onnx.shape_inference.infer_shapes(model))
        self.initializers = {t.name: t for t in self.model.graph.initializer}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for node in self.model.graph.node:
            for name in node.input:
                self.consumers[name].append(node)
        self.half_nodes = {id(n) for n in self.model.graph.node if _in_network(n) and n.op_type not in FP32_OPS}
        self.casts: dict[tuple[str, int], str] = {}
        self.nodes: list[onnx.NodeProto] = []

    def run(self) -> onnx.ModelProto:
        graph = self.model.graph
        for node in graph.node:
            half = id(node) in self.half_nodes
            for i, name in enumerate(node.input):
                if name and self.types.get(name) in (FLOAT, HALF):
                    node.input[i] = self._as(name, HALF if half else FLOAT)
            if half:
                self._convert_node(node)
            self.nodes.append(node)
        for value in graph.output:
            if self.types.get(value.name) == HALF:
                self._rename_to_cast(value.name)
        del graph.node[:]
        graph.node.extend(self.nodes)
        del graph.value_info[:]
        return self.model

    def _convert_node(self, node: onnx.NodeProto) -> None:
        """Make a network node compute in FP16: float outputs, Constant values and Cast targets."""
        if node.op_type == "Cast":
            for attr in node.attribute:
                if attr.name == "to" and attr.i == FLOAT:
                    attr.i = HALF
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == FLOAT:
                attr.t.CopyFrom(_half_tensor(attr.t))
        for name in node.output:
            if self.types.get(name) == FLOAT:
                self.types[name] = HALF

    def _as(self, name: str, dtype: int) -> str:
        """Name of tensor ``name`` in ``dtype``: converted in place when it is an initializer used
        only by FP16 nodes, else through a Cast node inserted once."""
        if self.types[name] == dtype:
            return name
        init = self.initializers.get(name)
        if dtype == HALF and init is not None and all(id(n) in self.half_nodes for n in self.consumers[name]):
            init.CopyFrom(_half_tensor(init))
            self.types[name] = HALF
            return name
        key = (name, dtype)
        if key not in self.casts:
            cast = f"{name}__{'fp16' if dtype == HALF else 'fp32'}"
            self.nodes.append(helper.make_node("Cast", [name], [cast], name=f"{cast}_cast", to=dtype))
            self.casts[key] = cast
        return self.casts[key]

    def _rename_to_cast(self, output: str) -> None:
        """Keep a graph output FP32 when an FP16 node produces it: rename, then Cast back."""
        inner = f"{output}__fp16"
        for node in self.nodes:
            node.output[:] = [inner if o == output else o for o in node.output]
            node.input[:] = [inner if i == output else i for i in node.input]
        self.nodes.append(helper.make_node("Cast", [inner], [output], name=f"{output}_cast", to=FLOAT))


def _half_tensor(tensor: onnx.TensorProto) -> onnx.TensorProto:
    values = numpy_helper.to_array(tensor)
    half = values.astype(np.float16)
    if not np.isfinite(half[np.isfinite(values)]).all():
        raise GpedgeError(
            f"weight '{tensor.name}' exceeds the FP16 range (max |w| = {np.abs(values).max():.3g}); "
            "export with --no-fp16 or retrain with weight decay"
        )
    return numpy_helper.from_array(half, tensor.name)


def _value_types(model: onnx.ModelProto) -> dict[str, int]:
    graph = model.graph
    types = {v.name: v.type.tensor_type.elem_type for v in list(graph.value_info) + list(graph.input) + list(graph.output)}
    types.update({t.name: t.data_type for t in graph.initializer})
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.TENSOR:
                    types[node.output[0]] = attr.t.data_type
    return types


def _io_types(model: onnx.ModelProto) -> dict[str, int]:
    return {v.name: v.type.tensor_type.elem_type for v in list(model.graph.input) + list(model.graph.output)}


def _in_network(node: onnx.NodeProto) -> bool:
    """Whether the exporter's scope metadata places ``node`` inside the ``network`` submodule."""
    scopes = module_scopes(node)
    return len(scopes) > 1 and scopes[1] == NETWORK_SCOPE
