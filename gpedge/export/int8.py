"""The static INT8 graph of a package (``model.int8.onnx``): ONNX Runtime quantisation, QDQ format.

Per-channel symmetric INT8 weights, symmetric INT8 activations (zero point 0) and float biases:
the encoding TensorRT's explicit quantization requires, so that the same Q/DQ graph runs on ONNX
Runtime on the CPU and becomes a TensorRT INT8 engine (:mod:`gpedge.tensorrt.builder`). MinMax
ranges are calibrated on slices like the ones the model will see. Only the network's
Conv/ConvTranspose/MatMul/Gemm nodes are quantized (found by the module scope the exporter records
on every node), minus those kept in FP32: the layer that reads the normalised image (quantizing
the image itself cost up to 7 points of mask Dice in our measurements) and the GP head
(:data:`FP32_SCOPES`). The input normalisation, pooling, softmax and the whole mask rule stay FP32.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from gpedge.errors import GpedgeError
from gpedge.graph.contract import DEFAULT_MASK_RULE, INPUT
from gpedge.runtime.backends.base import rule_inputs

QUANTIZED_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")
QUANT_FORMATS = ("qdq", "qoperator")
NETWORK_SCOPE = "network"
#: Module scopes whose compute nodes stay FP32: the GP head (its two 1x1 convs produce ``heatmaps``
#: and ``logits``; the mask threshold is taken on their output).
FP32_SCOPES = ("network.head",)


#: Activation encodings: ``int8`` signed with zero point 0 (symmetric, what TensorRT's explicit
#: quantization requires), ``uint8`` asymmetric (ONNX Runtime's CPU default).
ACTIVATIONS = ("int8", "uint8")


@dataclass(frozen=True)
class Int8Settings:
    """How the INT8 graph is made. ``reduce_range`` (7-bit weights, against saturation on CPUs
    without VNNI) defaults to ``not cpu_has_vnni()``; ``fp32_scopes``: module scopes kept in FP32;
    ``activations``: one of :data:`ACTIVATIONS`."""

    per_channel: bool = True
    quant_format: str = "qdq"
    reduce_range: bool | None = None
    fp32_scopes: tuple[str, ...] = FP32_SCOPES
    activations: str = "int8"
    fp32_input_layer: bool = True

    def resolved(self) -> "Int8Settings":
        """These settings with ``reduce_range`` decided for this CPU; ``ValueError`` for an unknown format."""
        if self.quant_format not in QUANT_FORMATS:
            raise ValueError(f"quant_format must be one of {', '.join(QUANT_FORMATS)}, got {self.quant_format!r}")
        if self.activations not in ACTIVATIONS:
            raise ValueError(f"activations must be one of {', '.join(ACTIVATIONS)}, got {self.activations!r}")
        reduce_range = (not cpu_has_vnni()) if self.reduce_range is None else self.reduce_range
        return replace(self, reduce_range=reduce_range, fp32_scopes=tuple(self.fp32_scopes))

    def describe(self) -> str:
        """One line for benchmark rows and reports, e.g. ``qdq, per-channel weights``."""
        return f"{self.quant_format}, {'per-channel' if self.per_channel else 'per-tensor'} weights"


def cpu_has_vnni() -> bool:
    """Whether this x86 CPU has 8-bit dot-product instructions (AVX-VNNI or AVX512-VNNI)."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = next((line for line in fh if line.startswith("flags")), "")
    except OSError:
        return False
    return bool({"avx_vnni", "avx512_vnni"} & set(flags.split()))


def network_nodes(model: Any) -> list[tuple[str, str, bool]]:
    """``(node name, module path, reads the image)`` of the network's compute nodes, in graph order.

    A compute node reads the image when one of its inputs comes from outside the network (the
    graph's normalisation) through no other compute node (padding, for instance, may lie between).
    """
    from gpedge.export.onnx_export import module_scopes

    constants = {t.name for t in model.graph.initializer}
    constants |= {out for node in model.graph.node if node.op_type == "Constant" for out in node.output}
    image_derived: set[str] = set()  # tensors computed from the normalised image by no compute node
    inside: set[str] = set()
    found = []
    for node in model.graph.node:  # ONNX graphs are topologically sorted
        scopes = module_scopes(node)
        if not _in_network(scopes):
            continue
        data = [name for name in node.input if name and name not in constants]
        reads_image = any(name not in inside or name in image_derived for name in data)
        inside.update(node.output)
        if node.op_type in QUANTIZED_OPS:
            found.append((node.name, _module_path(scopes), reads_image))
        elif reads_image:
            image_derived.update(node.output)
    return found


def _in_network(scopes: Sequence[str]) -> bool:
    return len(scopes) > 1 and scopes[1] == NETWORK_SCOPE


def _module_path(scopes: Sequence[str]) -> str:
    """The innermost module of a scope list (its last entry names the op itself)."""
    modules = [s for s in scopes[:-1] if s]
    return modules[-1] if modules else ""


def split_nodes(model: Any, settings: Int8Settings, present: set[str] | None = None) -> tuple[list[str], list[str]]:
    """The network's compute nodes split into (quantized, kept FP32 by ``settings``); with ``present``,
    only nodes of those names (ONNX Runtime's pre-processing may fuse some away)."""
    nodes = [node for node in network_nodes(model) if present is None or node[0] in present]
    kept = [name for name, path, reads_image in nodes
            if (reads_image and settings.fp32_input_layer)
            or any(path == s or path.startswith(s + ".") for s in settings.fp32_scopes)]
    return [name for name, _, _ in nodes if name not in kept], kept


class _SliceReader:
    """ONNX Runtime calibration reader over (N, C, H, W) slices, one at a time."""

    def __init__(self, slices: np.ndarray) -> None:
        self._slices = np.ascontiguousarray(slices, dtype=np.float32)
        self._iter: Iterator[int] = iter(range(len(self._slices)))

    def get_next(self) -> dict[str, np.ndarray] | None:
        index = next(self._iter, None)
        # the rule inputs only feed the mask rule, which stays FP32: any value calibrates the same ranges
        return None if index is None else {INPUT: self._slices[index : index + 1], **rule_inputs(0.5, DEFAULT_MASK_RULE)}

    def rewind(self) -> None:
        self._iter = iter(range(len(self._slices)))


def quantize_int8(
    fp32_path: str | os.PathLike, out_path: str | os.PathLike, calibration: np.ndarray, settings: Int8Settings | None = None
) -> dict[str, Any]:
    """Write the INT8 graph of the FP32 fused graph ``fp32_path`` to ``out_path``.

    ``calibration``: raw (N, C, H, W) slices like the ones the model will see (the graph
    normalises them first, so any scanner scale calibrates alike). Returns the record stored in
    the manifest: settings, calibration count, and which network nodes were quantized or kept FP32.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    settings = (settings or Int8Settings()).resolved()
    symmetric = settings.activations == "int8"
    with tempfile.TemporaryDirectory(dir=Path(out_path).parent) as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_optimization=False, skip_symbolic_shape=True)
        # module scopes are read from the exported graph: pre-processing keeps node names, not always their metadata
        present = {node.name for node in onnx.load(str(prepared), load_external_data=False).graph.node}
        quantized, kept = split_nodes(onnx.load(str(fp32_path), load_external_data=False), settings, present)
        if not quantized:  # ONNX Runtime reads an empty list as "quantize every node"
            raise GpedgeError(f"{fp32_path}: no network Conv/MatMul node to quantize (module scopes missing?); "
                              "re-export the package with this gpedge")
        quantize_static(
            str(prepared),
            str(out_path),
            _SliceReader(calibration),
            quant_format=QuantFormat.QDQ if settings.quant_format == "qdq" else QuantFormat.QOperator,
            op_types_to_quantize=list(QUANTIZED_OPS),
            nodes_to_quantize=quantized,
            per_channel=settings.per_channel,
            reduce_range=settings.reduce_range,
            activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            # float biases: TensorRT's Q/DQ import takes INT8 only (ONNX Runtime still fuses QLinearConv)
            extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True, "QuantizeBias": not symmetric},
        )
    return {
        "format": settings.quant_format,
        "weights": "int8, per-channel" if settings.per_channel else "int8, per-tensor",
        "activations": "int8, symmetric" if symmetric else "uint8, asymmetric",
        "bias": "float" if symmetric else "int32",
        "reduce_range": settings.reduce_range,
        "calibration": {"method": "minmax", "slices": int(len(calibration))},
        "fp32_scopes": list(settings.fp32_scopes),
        "fp32_input_layer": settings.fp32_input_layer,
        "quantized_nodes": len(quantized),
        "fp32_nodes": kept,
    }


#: The INT8 graph is packaged only if, on the run's validation slices, it agrees with the FP32 graph on
#: at least this share of labels and this mean mask Dice (over slices where either mask is non-empty).
GATE_LABEL_AGREEMENT = 0.99
GATE_MASK_DICE = 0.95


def calibration_slices(config: Any, source: str | os.PathLike | None, n: int, seed: int = 0) -> tuple[np.ndarray, str]:
    """Up to ``n`` raw (N, C, H, W) calibration slices and where they came from.

    ``source``: a data-set folder (any format ``gpedge train`` reads, at the run's channels and size)
    or a ``.npy`` array of such slices; ``None``: the run's own training patients.
    """
    from gpedge.export.parity import dataset_slices, run_slices

    rng = np.random.default_rng(seed)
    if source is None:
        slices = run_slices(config, "train", n, rng)
        if slices is None:
            raise GpedgeError(
                f"--int8: the run's data set ({(config.dataset or {}).get('path')}) is not reachable here to calibrate on "
                "its training slices; pass --calibration DATA (a data-set folder or a .npy of (N, C, H, W) slices)"
            )
        return slices, f"training patients of {config.dataset['path']}"
    path = Path(source)
    if path.suffix == ".npy" and path.is_file():
        slices = _npy_slices(path, config)
        return slices[rng.permutation(len(slices))[:n]], str(path)
    if not path.is_dir():
        raise GpedgeError(f"--calibration {path}: not a data-set folder or a .npy file")
    slices = dataset_slices(path, config, n, rng)
    if slices is None:
        raise GpedgeError(f"--calibration {path}: no slices found for channels {', '.join(config.channels)}")
    return slices, str(path)


def _npy_slices(path: Path, config: Any) -> np.ndarray:
    try:
        slices = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise GpedgeError(f"--calibration {path}: cannot be read as a numpy array ({exc})") from exc
    expected = (len(config.channels), config.image_size, config.image_size)
    if slices.ndim != 4 or tuple(slices.shape[1:]) != expected or not np.issubdtype(slices.dtype, np.floating):
        raise GpedgeError(f"--calibration {path}: expected float slices of shape (N, {', '.join(map(str, expected))}), "
                          f"got {slices.dtype} {slices.shape}")
    if len(slices) == 0 or not np.isfinite(slices).all():
        raise GpedgeError(f"--calibration {path}: the array is empty or holds NaN/inf")
    return slices.astype(np.float32)


def gate_failures(agreement: dict[str, float]) -> list[str]:
    """The gate's failed criteria, as text with the figures (empty when the INT8 graph passes)."""
    failures = []
    if agreement["label_agreement"] < GATE_LABEL_AGREEMENT:
        failures.append(f"labels agree on {agreement['label_agreement']:.1%} of slices (gate >= {GATE_LABEL_AGREEMENT:.0%})")
    if agreement["mask_dice"] < GATE_MASK_DICE:
        failures.append(f"mean mask Dice {agreement['mask_dice']:.3f} over {agreement['mask_slices']} tumour-mask slices "
                        f"(gate >= {GATE_MASK_DICE})")
    return failures
