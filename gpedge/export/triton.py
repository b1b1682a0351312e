"""A Triton Inference Server model repository from a model package (``gpedge triton PKG REPO``).

Written into ``REPO`` (other models there are left alone), each model folder staged and renamed
into place whole:

    REPO/<name>/config.pbtxt             onnxruntime backend, dynamic batching, instance group
    REPO/<name>/<version>/model.onnx     the package's fused graph with one offset per sample
    REPO/<name>/labels.txt               class names, for Triton's classification extension on ``probs``
    REPO/<name>/manifest.json            the package's manifest (classes, channels, mask rule, parity, split)
    REPO/<name>-tensorrt/...             where the package has engines: a ``tensorrt_plan`` model

The offset is a required input, one value per sample (:func:`gpedge.graph.contract.batched_input_specs`):
Triton's dynamic batcher concatenates every input of the requests it merges along the batch axis,
and its onnxruntime backend refuses optional inputs on models that batch, so an offset with a
default cannot exist there. The model config carries the package's offset as the parameter
``gpedge_mask_offset`` for clients to send. The mask rule is the package's, fixed in the served
graph (``gpedge_mask_rule``; the host-side step of a ``+clean``, ``+guided``, ... rule is the client's to apply).
The packaged engines were built with one offset per call (the package's own contract): their model
has ``max_batch_size: 0`` (the client sends whole batches and the rule's ``mask_rule`` input; Triton
does not merge requests for it).

Every ``config.pbtxt`` is built with Triton's own ``model_config`` protobuf (shipped in
``tritonclient``), parsed back and checked against the model file it describes before the folder
is renamed into place (:func:`verify_model`); the ONNX model is also run with ONNX Runtime and
compared with the package's graph.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gpedge.errors import GpedgeError
from gpedge.graph.contract import (
    BATCH, INPUT, MASK_RULE, OFFSET, batched_input_specs, input_specs, output_specs, parse_mask_rule,
)
from gpedge.package import GRAPHS, MANIFEST, ModelPackage

log = logging.getLogger(__name__)

CONFIG = "config.pbtxt"
LABELS = "labels.txt"
ONNX_FILE = "model.onnx"
PLAN_FILE = "model.plan"
DEFAULT_PREFERRED = (4, 8)
KINDS = {"auto": "KIND_AUTO", "cpu": "KIND_CPU", "gpu": "KIND_GPU"}
TRITON_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "int32": "TYPE_INT32", "uint8": "TYPE_UINT8",
                "int64": "TYPE_INT64", "bool": "TYPE_BOOL"}
_INSTALL = "pip install 'gpedge[triton]'"


@dataclass
class TritonOptions:
    """How the repository's models are served (the ``gpedge triton`` flags).

    ``name``: model name (default: the package folder's name). ``kind``: instance kind of the
    onnxruntime model (``auto``: GPU where Triton sees one, else CPU). ``precision``: graph of
    the onnxruntime model (``auto``: INT8 for CPU instances when the package has it, else FP32).
    """

    name: str | None = None
    version: int = 1
    instances: int = 1
    kind: str = "auto"
    precision: str = "auto"
    preferred_batch: list[int] | None = None
    queue_delay_us: int = 1000
    overwrite: bool = False

    def check(self, max_batch: int) -> None:
        """Raise ``GpedgeError`` naming the first option out of range."""
        if self.name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", self.name):
            raise GpedgeError(f"--name {self.name!r}: use letters, digits, '_', '-' and '.' (it names a folder)")
        if self.version < 1:
            raise GpedgeError(f"--version must be >= 1, got {self.version}")
        if self.instances < 1:
            raise GpedgeError(f"--instances must be >= 1, got {self.instances}")
        if self.kind not in KINDS:
            raise GpedgeError(f"--kind {self.kind!r}: choose one of {', '.join(KINDS)}")
        if self.precision not in ("auto", *GRAPHS):
            raise GpedgeError(f"--precision {self.precision!r}: choose auto, {', '.join(GRAPHS)}")
        if self.queue_delay_us < 0:
            raise GpedgeError(f"--queue-delay-us must be >= 0, got {self.queue_delay_us}")
        wrong = [b for b in self.preferred_batch or [] if not 1 <= b <= max_batch]
        if wrong or self.preferred_batch == []:
            raise GpedgeError(f"--preferred-batch {wrong}: give sizes in 1..{max_batch} (the package's max batch)")

    def preferred(self, max_batch: int) -> list[int]:
        """The dynamic batcher's preferred sizes: the option's, else 4 and 8 where the package allows them."""
        if self.preferred_batch:
            return sorted(set(self.preferred_batch))
        return [b for b in DEFAULT_PREFERRED if b <= max_batch] or [max_batch]


def write_repository(package_dir: str | os.PathLike, repo: str | os.PathLike, options: TritonOptions | None = None) -> list[Path]:
    """Write the Triton models of the package at ``package_dir`` into ``repo``; returns the model folders."""
    _schema()  # fail before any work when tritonclient is missing
    options = options or TritonOptions()
    package = ModelPackage.load(package_dir)
    options.check(_max_batch(package))
    repo = Path(repo)
    if repo.exists() and not repo.is_dir():
        raise GpedgeError(f"Triton repository {repo} is a file; pass a folder")
    name = options.name or _default_name(package.root)
    writers = {name: _onnx_model}
    if package.manifest.get("engines"):
        writers[f"{name}-tensorrt"] = _plan_model
    else:
        log.info("%s has no TensorRT engine: no tensorrt_plan model (export with --engine on the GPU target)", package.root)
    for model in writers:
        if (repo / model).exists() and not options.overwrite:
            raise GpedgeError(f"{repo / model} already exists; choose another --name or pass --overwrite")
    repo.mkdir(parents=True, exist_ok=True)
    return [_write_model(repo, model, lambda folder, m=model, w=write: w(package, folder, m, options), options.overwrite)
            for model, write in writers.items()]


def _schema() -> tuple[Any, Any]:
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError as exc:
        raise GpedgeError(f"writing a Triton repository needs tritonclient ({exc.name} is missing): {_INSTALL}") from exc
    return model_config_pb2, text_format


def _default_name(root: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", root.resolve().name).strip("-.")
    return name or "gpedge"


def _max_batch(package: ModelPackage) -> int:
    return int(package.manifest["input"].get("max_batch", 1))


def _write_model(repo: Path, name: str, fill, overwrite: bool) -> Path:
    """Stage a model folder with ``fill(folder)``, verify it, then rename it into ``repo/name``."""
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".partial", dir=repo))
    target = repo / name
    try:
        staging.chmod(0o755)
        fill(staging)
        verify_model(staging, name)
        if target.exists() and overwrite:
            old = repo / f".{name}.old-{os.getpid()}"
            os.replace(target, old)
            os.replace(staging, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _precision(package: ModelPackage, options: TritonOptions) -> str:
    if options.precision == "auto":
        return "int8" if options.kind == "cpu" and package.has_file(GRAPHS["int8"]) else "fp32"
    if not package.has_file(GRAPHS[options.precision]):
        raise GpedgeError(
            f"--precision {options.precision}: {package.root} has no {GRAPHS[options.precision]}; "
            f"re-export it{' with --int8' if options.precision == 'int8' else ''} or choose another precision"
        )
    return options.precision


def _onnx_model(package: ModelPackage, folder: Path, name: str, options: TritonOptions) -> None:
    import onnx

    from gpedge.export.onnx_export import check_contract

    precision = _precision(package, options)
    source = GRAPHS[precision]
    graph = per_sample_offset_graph(onnx.load(str(package.file(source))), parse_mask_rule(package.mask_rule).code)
    height, width = package.image_size
    channels, classes = len(package.channels), len(package.classes)
    check_contract(graph, channels, height, width, classes, inputs=batched_input_specs(channels, height, width))
    (folder / str(options.version)).mkdir()
    onnx.save(graph, str(folder / str(options.version) / ONNX_FILE))
    check_against_package(package, source, folder / str(options.version) / ONNX_FILE)
    mc, text_format = _schema()
    config = mc.ModelConfig(name=name, backend="onnxruntime", max_batch_size=_max_batch(package),
                            default_model_filename=ONNX_FILE)
    _add_tensors(config.input, batched_input_specs(channels, height, width), batched=True)
    _add_tensors(config.output, output_specs(classes, height, width), batched=True)
    _probs_labels(config)
    config.dynamic_batching.preferred_batch_size.extend(options.preferred(_max_batch(package)))
    config.dynamic_batching.max_queue_delay_microseconds = options.queue_delay_us
    config.instance_group.add(count=options.instances, kind=KINDS[options.kind])
    _parameters(config, package, {"gpedge_precision": precision, "gpedge_source_graph": source,
                                  "gpedge_source_sha256": package.manifest["files"][source]["sha256"]})
    _write_common(package, folder, config, text_format)


def _plan_model(package: ModelPackage, folder: Path, name: str, options: TritonOptions) -> None:
    """The packaged engines as one ``tensorrt_plan`` model, one plan per compute capability."""
    mc, text_format = _schema()
    version = folder / str(options.version)
    version.mkdir()
    config = mc.ModelConfig(name=name, backend="tensorrt", max_batch_size=0)
    by_capability: dict[str, dict[str, Any]] = {}
    for meta in package.manifest["engines"]:
        by_capability.setdefault(str(meta.get("compute_capability")), meta)
    for capability, meta in by_capability.items():
        file_name = Path(meta["file"]).name
        (version / file_name).write_bytes(package.read_bytes(meta["file"]))
        config.cc_model_filenames[capability] = file_name
    config.default_model_filename = Path(next(iter(by_capability.values()))["file"]).name
    height, width = package.image_size
    _add_tensors(config.input, input_specs(len(package.channels), height, width), batched=False)
    _add_tensors(config.output, output_specs(len(package.classes), height, width), batched=False)
    _probs_labels(config)
    config.instance_group.add(count=options.instances, kind="KIND_GPU")
    engines = "; ".join(f"{m['file']}: TensorRT {m.get('tensorrt_version')}, {m.get('gpu_name')}, "
                        f"batch {m.get('profile', {}).get('min')}..{m.get('profile', {}).get('max')}"
                        f"{', version compatible' if m.get('version_compatible') else ''}" for m in by_capability.values())
    _parameters(config, package, {"gpedge_precision": "fp16", "gpedge_engines": engines})
    _write_common(package, folder, config, text_format)


def _add_tensors(collection: Any, specs: dict[str, dict[str, Any]], batched: bool) -> None:
    """Inputs or outputs from contract specs: with ``batched``, Triton's batch axis is left out of ``dims``
    and a per-sample scalar becomes ``dims: [1]`` reshaped to ``[]``; otherwise the batch axis is ``-1``."""
    for tensor, spec in specs.items():
        shape = spec["shape"]
        entry = collection.add(name=tensor, data_type=TRITON_TYPES[spec["dtype"]])
        if batched:
            if shape[0] != BATCH:
                raise GpedgeError(f"'{tensor}' has no batch axis {shape}; Triton cannot batch it")
            dims = shape[1:]
            entry.dims.extend(dims or [1])
            if not dims:
                entry.reshape.SetInParent()  # an empty shape: the model sees (N,)
        else:
            entry.dims.extend(-1 if d == BATCH else int(d) for d in shape)


def _probs_labels(config: Any) -> None:
    next(o for o in config.output if o.name == "probs").label_filename = LABELS


def _parameters(config: Any, package: ModelPackage, extra: dict[str, str]) -> None:
    values = {
        "gpedge_mask_offset": repr(package.offset),
        "gpedge_mask_rule": package.mask_rule,
        "gpedge_mask_rule_code": ",".join(str(c) for c in parse_mask_rule(package.mask_rule).code),
        "gpedge_classes": ",".join(package.classes),
        "gpedge_channels": ",".join(package.channels),
        "gpedge_arch": str(package.manifest["model"].get("arch")),
        "gpedge_max_batch": str(_max_batch(package)),
        **extra,
    }
    for key, value in values.items():
        config.parameters[key].string_value = value


def _write_common(package: ModelPackage, folder: Path, config: Any, text_format: Any) -> None:
    header = "# Written by gpedge triton from a gpedge model package; the schema is Triton's model_config.proto.\n"
    (folder / CONFIG).write_text(header + text_format.MessageToString(config, use_short_repeated_primitives=True))
    (folder / LABELS).write_text("".join(f"{c}\n" for c in package.classes))
    shutil.copyfile(package.root / MANIFEST, folder / MANIFEST)


def per_sample_offset_graph(model: Any, rule: tuple[int, int, int]) -> Any:
    """The fused graph with ``offset`` as (N, 1), N the image's batch axis, and ``mask_rule`` fixed to the
    ``rule`` codes (an initializer; see the module docstring)."""
    import onnx
    from onnx import numpy_helper

    inputs = {value.name: value for value in model.graph.input}
    if set(inputs) != {INPUT, OFFSET, MASK_RULE}:
        raise GpedgeError(f"graph inputs {sorted(inputs)} are not the gpedge contract's {[INPUT, OFFSET, MASK_RULE]}; "
                          "re-export the package")
    batch = inputs[INPUT].type.tensor_type.shape.dim[0]
    if not batch.dim_param:
        raise GpedgeError("the graph's image input has a fixed batch size; re-export the package")
    converted = onnx.ModelProto()
    converted.CopyFrom(model)
    offset = next(v for v in converted.graph.input if v.name == OFFSET)
    offset.type.tensor_type.shape.ClearField("dim")
    offset.type.tensor_type.shape.dim.add().dim_param = batch.dim_param
    offset.type.tensor_type.shape.dim.add().dim_value = 1
    converted.graph.input.remove(next(v for v in converted.graph.input if v.name == MASK_RULE))
    converted.graph.initializer.append(numpy_helper.from_array(np.array(rule, dtype=np.int32), MASK_RULE))
    return converted


def check_against_package(package: ModelPackage, source: str, converted: Path, samples: int = 2) -> None:
    """Run the converted graph on ``samples`` slices, each with its own offset, against the package's
    graph run once per offset; ``GpedgeError`` unless labels and masks are identical."""
    import onnxruntime as ort

    from gpedge.data.samples import synthetic_slices

    height, width = package.image_size
    images = synthetic_slices(samples, channels=len(package.channels), size=max(height, width),
                              num_classes=len(package.classes), seed=0).images[:, :, :height, :width]
    offsets = np.linspace(0.0, 2.0 * max(package.offset, 0.5), samples, dtype=np.float32)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    served = ort.InferenceSession(str(converted), options, providers=["CPUExecutionProvider"])
    original = ort.InferenceSession(str(package.file(source)), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in original.get_outputs()]
    rule = np.array(parse_mask_rule(package.mask_rule).code, np.int32)
    batched = dict(zip(names, served.run(names, {INPUT: images, OFFSET: offsets[:, None]})))
    for i, offset in enumerate(offsets):
        feeds = {INPUT: images[i : i + 1], OFFSET: np.array([offset], np.float32), MASK_RULE: rule}
        single = dict(zip(names, original.run(names, feeds)))
        same = all(np.array_equal(single[k][0], batched[k][i]) for k in ("label", "mask"))
        close = np.allclose(single["probs"][0], batched["probs"][i], atol=1e-5)
        if not (same and close):
            raise GpedgeError(f"the Triton graph derived from {package.root / source} does not reproduce it "
                              f"(sample {i}, offset {offset:g}); please report this")


def verify_model(folder: str | os.PathLike, name: str | None = None) -> Any:
    """Parse ``folder/config.pbtxt`` with Triton's schema and check it against the model files beside it.

    Checks the model name, the version folder, the model file(s), the labels file and, for the
    onnxruntime backend, that the ONNX model's inputs and outputs are exactly the config's (names,
    Triton data types, shapes with the batch axis). Returns the parsed ``ModelConfig``.
    """
    import onnx
    from google.protobuf.text_format import ParseError

    mc, text_format = _schema()
    folder = Path(folder)
    try:
        config = text_format.Parse((folder / CONFIG).read_text(), mc.ModelConfig())
    except (OSError, ParseError) as exc:
        raise GpedgeError(f"{folder / CONFIG} is not a valid Triton model config: {exc}") from exc
    if name is not None and config.name != name:
        raise GpedgeError(f"{folder / CONFIG} names model {config.name!r}, its folder is {name!r}")
    versions = [p for p in folder.iterdir() if p.is_dir() and p.name.isdigit()]
    if len(versions) != 1:
        raise GpedgeError(f"{folder} must hold exactly one version folder, found {[p.name for p in versions]}")
    files = {config.default_model_filename, *config.cc_model_filenames.values()}
    missing = [f for f in files if not (versions[0] / f).is_file()]
    if missing:
        raise GpedgeError(f"{versions[0]} lacks the model file(s) {missing} its config names")
    for output in config.output:
        if output.label_filename and not (folder / output.label_filename).is_file():
            raise GpedgeError(f"{folder} lacks {output.label_filename}, the labels of '{output.name}'")
    if config.backend == "onnxruntime":
        model = onnx.load(str(versions[0] / config.default_model_filename), load_external_data=False)
        problems = _io_mismatches(config, model)
        if problems:
            raise GpedgeError(f"{folder / CONFIG} does not describe {config.default_model_filename}: {'; '.join(problems)}")
    return config


def model_io(model: Any) -> dict[str, dict[str, tuple[str, list[int]]]]:
    """``{"input"|"output": {name: (Triton data type, shape, -1 for symbolic axes)}}`` of an ONNX model."""
    from onnx import helper

    def describe(values: Any) -> dict[str, tuple[str, list[int]]]:
        found = {}
        for value in values:
            tensor = value.type.tensor_type
            dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.elem_type)).name
            found[value.name] = (TRITON_TYPES.get(dtype, dtype), [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim])
        return found

    initializers = {t.name for t in model.graph.initializer}
    return {"input": describe(v for v in model.graph.input if v.name not in initializers), "output": describe(model.graph.output)}


def config_io(config: Any) -> dict[str, dict[str, tuple[str, list[int]]]]:
    """``{"input"|"output": {name: (Triton data type, full shape the model sees)}}`` of a parsed config."""
    from tritonclient.grpc import model_config_pb2 as mc

    def describe(tensors: Any) -> dict[str, tuple[str, list[int]]]:
        batch = [-1] if config.max_batch_size > 0 else []
        return {t.name: (mc.DataType.Name(t.data_type), batch + list(t.reshape.shape if t.HasField("reshape") else t.dims))
                for t in tensors}

    return {"input": describe(config.input), "output": describe(config.output)}


def _io_mismatches(config: Any, model: Any) -> list[str]:
    problems = []
    configured, found = config_io(config), model_io(model)
    for kind in ("input", "output"):
        want, have = configured[kind], found[kind]
        problems += [f"{kind} '{n}' is in the config, not the model" for n in want if n not in have]
        problems += [f"{kind} '{n}' is in the model, not the config" for n in have if n not in want]
        problems += [f"{kind} '{n}': config {want[n]}, model {have[n]}" for n in want if n in have and want[n] != have[n]]
    return problems
