"""Static INT8 quantization of a fused model for ONNX Runtime on the CPU.

QDQ format, per-channel symmetric INT8 weights, UINT8 activations calibrated on realistic
slices. Only the network's Conv/ConvTranspose/MatMul/Gemm nodes are quantized (the sinc
upsampling's MatMuls included): the input normalisation, pooling, softmax, threshold and mask
math stay FP32, and so do the GP head's final 1x1 convs that produce ``heatmaps`` and
``logits`` (cheap, and the mask threshold is taken on their output). Results are cached by the
sha256 of the FP32 model and the settings.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from gpedge.atomic import atomic_write_bytes
from gpedge.graph.contract import DEFAULT_MASK_RULE, INPUT
from gpedge.package import sha256_file
from gpedge.paths import cache_root
from gpedge.runtime.backends.base import rule_inputs

QUANTIZED_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")
QUANT_FORMATS = ("qdq", "qoperator")
#: Outputs whose producing conv/matmul is kept in FP32.
FP32_HEAD_OUTPUTS = ("heatmaps", "logits")


def cpu_has_vnni() -> bool:
    """Whether this x86 CPU has 8-bit dot-product instructions (AVX-VNNI or AVX512-VNNI)."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = next((line for line in fh if line.startswith("flags")), "")
    except OSError:
        return False
    return bool({"avx_vnni", "avx512_vnni"} & set(flags.split()))


def quantizable_nodes(onnx_path: str | os.PathLike) -> tuple[list[str], list[str]]:
    """Split the network's Conv/ConvTranspose/MatMul/Gemm nodes into (to quantize, kept FP32).

    The network is every node upstream of the ``heatmaps`` and ``logits`` outputs; the mask
    rule's MatMuls (histogram, cumulative sums) are downstream and never quantized. Kept FP32:
    the last such node before each of those outputs (the GP head's 1x1 convs).
    """
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    producer = {out: node for node in graph.node for out in node.output}
    network: set[str] = set()
    head: list[str] = []
    for output in FP32_HEAD_OUTPUTS:
        frontier = [output]
        while frontier:
            node = producer.get(frontier.pop())
            if node is None or node.name in network:
                continue
            network.add(node.name)
            frontier.extend(name for name in node.input if name)
        head.extend(_last_compute_nodes(output, producer))
    order = [node.name for node in graph.node if node.name in network and node.op_type in QUANTIZED_OPS]
    return [name for name in order if name not in head], [name for name in order if name in head]


def _last_compute_nodes(output: str, producer: dict) -> list[str]:
    """Conv/MatMul/Gemm nodes reached first when walking up from ``output``."""
    found: list[str] = []
    frontier, seen = [output], set()
    while frontier:
        node = producer.get(frontier.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        if node.op_type in QUANTIZED_OPS:
            found.append(node.name)
        else:
            frontier.extend(name for name in node.input if name)
    return found


class _SliceReader:
    """ONNX Runtime calibration reader over (N, C, H, W) slices, in batches."""

    def __init__(self, slices: np.ndarray, batch: int) -> None:
        self._batches = [np.ascontiguousarray(slices[i : i + batch], dtype=np.float32) for i in range(0, len(slices), batch)]
        self._iter: Iterator[np.ndarray] = iter(self._batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._iter, None)
        # the rule inputs only feed the mask rule, which stays FP32: any value calibrates the same ranges
        return None if batch is None else {INPUT: batch, **rule_inputs(0.5, DEFAULT_MASK_RULE)}

    def rewind(self) -> None:
        self._iter = iter(self._batches)


def quantize_int8(
    onnx_path: str | os.PathLike,
    calibration: np.ndarray,
    cache_dir: str | os.PathLike | None = None,
    reduce_range: bool | None = None,
    per_channel: bool = True,
    quant_format: str = "qdq",
) -> Path:
    """Return the path of the INT8 model of ``onnx_path``, quantizing (and caching) it if needed.

    ``calibration`` are raw (N, C, H, W) slices like the ones the model will see.
    ``reduce_range`` (7-bit weights, against saturation on CPUs without VNNI) defaults to
    ``not cpu_has_vnni()``. ``per_channel=False`` gives one weight scale per tensor;
    ``quant_format`` ``"qoperator"`` writes QLinearConv-style operators instead of QDQ pairs.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if quant_format not in QUANT_FORMATS:
        raise ValueError(f"quant_format must be one of {', '.join(QUANT_FORMATS)}, got {quant_format!r}")
    reduce_range = (not cpu_has_vnni()) if reduce_range is None else reduce_range
    settings = {
        "format": quant_format,
        "per_channel": per_channel,
        "activations": "uint8",
        "weights": "int8",
        "reduce_range": reduce_range,
        "calibration": "minmax",
        "ops": list(QUANTIZED_OPS),
        "scope": "network upstream of heatmaps and logits, head convs FP32",
        "calibration_sha256": hashlib.sha256(np.ascontiguousarray(calibration, dtype=np.float32)).hexdigest(),
    }
    key = hashlib.sha256((sha256_file(onnx_path) + json.dumps(settings, sort_keys=True)).encode()).hexdigest()[:24]
    target = Path(cache_dir or cache_root()) / "int8" / f"{key}.onnx"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quantized = Path(tmp) / "int8.onnx"
        quant_pre_process(str(onnx_path), str(prepared), skip_optimization=False, skip_symbolic_shape=True)
        to_quantize, _ = quantizable_nodes(prepared)
        quantize_static(
            str(prepared),
            str(quantized),
            _SliceReader(calibration, batch=1),
            quant_format=QuantFormat.QDQ if quant_format == "qdq" else QuantFormat.QOperator,
            op_types_to_quantize=list(QUANTIZED_OPS),
            nodes_to_quantize=to_quantize,
            per_channel=per_channel,
            reduce_range=reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
        atomic_write_bytes(target, quantized.read_bytes())
    return target
