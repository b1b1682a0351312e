"""``export_package``: a training run folder -> a verified model package, written atomically.

Files are written into a staging folder beside the target; each exported graph is then opened
as part of the staged package by the runtime backend that will run it in deployment and
compared with the fused torch module (the FP32 graph must reproduce it: the parity gate);
the manifest is written last and the folder renamed into place. A failed export leaves nothing.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from gpedge.atomic import atomic_write_json
from gpedge.data.samples import synthetic_slices
from gpedge.errors import GpedgeError, Int8GateRefused
from gpedge.export import parity
from gpedge.export.manifest import build_manifest, file_entry
from gpedge.export.options import ExportOptions
from gpedge.export.statistics import flush_denormal_weights, training_statistics
from gpedge.graph.contract import INPUT
from gpedge.package import GRAPHS, MANIFEST, ModelPackage, adopted_class_bias
from gpedge.tensorrt.cuda import INSTALL_HINT, unavailable_reason

log = logging.getLogger(__name__)

FP32_ONNX = GRAPHS["fp32"]
FP16_ONNX = GRAPHS["fp16"]
INT8_ONNX = GRAPHS["int8"]
WEIGHTS = "model.safetensors"


def export_package(run_dir: str | os.PathLike, out_dir: str | os.PathLike, options: ExportOptions | None = None) -> Path:
    """Export run ``run_dir`` to the package folder ``out_dir`` and return its path.

    Writes ``model.onnx`` (FP32 fused graph), ``model.fp16.onnx`` (unless ``options.fp16`` is
    False), ``model.int8.onnx`` (with ``options.int8``), ``model.safetensors``, ``manifest.json`` and,
    when TensorRT and a GPU are present (or ``options.engine`` is True, which fails without them),
    ``engines/<gpu>-sm<cc>-trt<ver>.engine``. Raises ``GpedgeError`` on bad options, missing runs,
    FP32 parity failures, or an INT8 graph that misses its agreement gate.
    """
    options = options or ExportOptions()
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    _check(run_dir, out_dir, options)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    try:
        staging.chmod(0o755)
        _write_package(run_dir, staging, options)
        _replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def _check(run_dir: Path, out_dir: Path, options: ExportOptions) -> None:
    if not run_dir.is_dir():
        raise GpedgeError(f"run folder {run_dir} does not exist; pass the --out folder of 'gpedge train'")
    if out_dir.exists() and not options.overwrite and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise GpedgeError(f"{out_dir} already exists; choose another --out or pass --overwrite")
    options.check()
    if options.engine is True:
        reason = unavailable_reason()
        if reason:
            raise GpedgeError(f"--engine: cannot build a TensorRT engine here ({reason}); {INSTALL_HINT}, "
                              "or export without --engine and build the engine on the target")


def _write_package(run_dir: Path, root: Path, options: ExportOptions) -> None:
    from safetensors.torch import save_file

    from gpedge.export.onnx_export import export_fused
    from gpedge.graph.fused import FusedModel
    from gpedge.runs import load_run
    from gpedge.runtime.backends.onnxruntime import OnnxRuntimeBackend

    network, config = load_run(run_dir)
    flushed = flush_denormal_weights(network)
    if flushed:
        log.info("flushed %d denormal weights to zero", flushed)
    size = int(options.image_size or config.image_size)
    multiple = int(getattr(network, "input_multiple", 1))
    if size % multiple:
        raise GpedgeError(f"--image-size {size} must be a multiple of {multiple} for {config.arch}")
    fused = FusedModel(network, config.no_tumour_class, (size, size), options.flip_average).eval()
    bias = _class_bias(fused, config, size, options)
    values = adopted_class_bias(bias)
    if values is not None:
        fused = FusedModel(network, config.no_tumour_class, (size, size), options.flip_average, values).eval()
    metadata = {"gpedge.classes": ",".join(config.class_names), "gpedge.channels": ",".join(config.channels)}
    log.info("exporting %s (%s) at %dx%d", run_dir, config.arch, size, size)
    fp32_model = export_fused(fused, root / FP32_ONNX, channels=config.in_channels, height=size, width=size,
                              max_batch=options.max_batch, opset=options.opset, metadata=metadata)
    save_file({k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}, str(root / WEIGHTS))
    manifest = build_manifest(
        config=config, model_config=network.config, num_params=sum(p.numel() for p in network.parameters()),
        height=size, width=size, max_batch=options.max_batch, rule=options.rule, offset=options.rule_offset(), opset=options.opset,
        files={name: file_entry(root / name, "float32") for name in (FP32_ONNX, WEIGHTS)},
        engines=[], engine_build={"status": "not requested"}, parity={},
    )
    manifest["model"]["denormal_weights_flushed"] = flushed
    manifest["flip_average"] = options.flip_average
    if bias is not None:
        manifest["class_bias"] = bias
    statistics = training_statistics(config)
    if statistics is not None:
        manifest["input_statistics"] = statistics
    package = ModelPackage(root=root, manifest=manifest)

    images, source = parity.reference_images(config, options.parity_samples)
    reference = parity.torch_outputs(fused, images, options.rule_offset(), options.rule)
    fp32_outputs = parity.backend_outputs(OnnxRuntimeBackend(package, "cpu"), images)
    results: dict[str, Any] = {"inputs": {"samples": len(images), "source": source}}
    results["onnxruntime_fp32_vs_torch"] = parity.compare(reference, fp32_outputs)
    parity.check_fp32(results["onnxruntime_fp32_vs_torch"], str(run_dir))

    if options.fp16:
        import onnx

        from gpedge.export.fp16 import precision_summary, to_fp16

        half = to_fp16(fp32_model)
        onnx.save(half, str(root / FP16_ONNX))
        manifest["files"][FP16_ONNX] = file_entry(root / FP16_ONNX, "float16")
        fp16_outputs, runner = _run_fp16(package, images)
        count = len(fp16_outputs["label"])
        results["fp16_vs_fp32"] = {**parity.compare({k: v[:count] for k, v in fp32_outputs.items()}, fp16_outputs),
                                   "runner": runner}
        results["fp16_graph"] = precision_summary(half)
        manifest["engine_build"] = _maybe_engine(package, options, images, fp32_outputs, results)
    manifest["parity"] = results
    atomic_write_json(root / MANIFEST, manifest)
    _choose_mask_rule(package, config, options)
    if options.int8:
        package.manifest["int8"] = _write_int8(package, config, options, package.manifest["parity"])
        atomic_write_json(root / MANIFEST, package.manifest)


def _class_bias(fused: Any, config: Any, size: int, options: ExportOptions) -> dict[str, Any] | None:
    """The manifest's ``class_bias`` record: ``options.class_bias``'s values, or chosen on the run's validation
    patients (None when they are not reachable here, or with ``class_bias=False``)."""
    if options.class_bias is False:
        return None
    if options.class_bias is not True:
        values = [float(v) for v in options.class_bias]
        if len(values) != len(config.class_names) or not all(np.isfinite(values)):
            raise GpedgeError(f"the class bias must be {len(config.class_names)} finite numbers, one per class of "
                              f"{config.class_names}; got {list(options.class_bias)}")
        return {"values": values, "source": "given"}
    from gpedge.export.class_bias import choose_class_bias

    record = choose_class_bias(fused, config, size, options.max_healthy_fp, options.max_sensitivity_loss)
    if record is None:
        log.info("no class bias: the run's validation patients are not reachable here")
    return record


def _choose_mask_rule(package: ModelPackage, config: Any, options: ExportOptions) -> None:
    """Choose the package's mask rule on the run's validation patients when ``options`` asks for it."""
    if options.tunes is False:
        return
    from gpedge.export.tuning import tune_package

    record = tune_package(package, config, options.tune_slices)
    if record is not None:
        log.info("mask rule %s, offset %g: chosen on %d validation slices", record["best_rule"], record["best_offset"], record["slices"])
        return
    unreachable = (
        f"the run's validation patients ({(config.dataset or {}).get('path')}) are not reachable here or have no tumour "
        "masks; export where the data set is, or choose the rule later with 'gpedge evaluate --mask-rules'"
    )
    if options.tunes:
        raise GpedgeError(f"--tune-mask: {unreachable}")
    log.warning("%s (the package keeps mask rule %s, offset %g)", unreachable, package.mask_rule, package.offset)


def _write_int8(package: ModelPackage, config: Any, options: ExportOptions, results: dict) -> dict[str, Any]:
    """Quantize, then gate the INT8 graph against the FP32 graph on the run's validation slices.

    Returns the manifest's ``int8`` record; ``GpedgeError`` with the figures when the gate fails
    (unless ``options.enforce_int8_gate`` is False).
    """
    from gpedge.export.int8 import GATE_LABEL_AGREEMENT, GATE_MASK_DICE, calibration_slices, gate_failures, quantize_int8
    from gpedge.runtime.backends.onnxruntime import OnnxRuntimeBackend

    calibration, calibration_source = calibration_slices(config, options.calibration, options.calibration_slices)
    log.info("INT8: calibrating on %d slices of %s", len(calibration), calibration_source)
    record = quantize_int8(package.root / FP32_ONNX, package.root / INT8_ONNX, calibration, options.int8_settings)
    record["calibration"]["source"] = calibration_source
    package.manifest["files"][INT8_ONNX] = file_entry(package.root / INT8_ONNX, "int8")
    images, source = _gate_slices(config, options)
    outputs = {precision: parity.backend_outputs(OnnxRuntimeBackend(package, "cpu", precision=precision), images)
               for precision in ("fp32", "int8")}
    agreement = parity.compare(outputs["fp32"], outputs["int8"])
    results["int8_vs_fp32"] = agreement
    failures = gate_failures(agreement)
    record["gate"] = {"label_agreement_min": GATE_LABEL_AGREEMENT, "mask_dice_min": GATE_MASK_DICE,
                      "slices": len(images), "source": source, "mask_rule": package.mask_rule, "offset": package.offset,
                      "label_agreement": agreement["label_agreement"], "mask_dice": agreement["mask_dice"],
                      "mask_slices": agreement["mask_slices"], "passed": not failures,
                      "enforced": options.enforce_int8_gate}
    if failures and options.enforce_int8_gate:
        raise Int8GateRefused(
            f"--int8 refused: against the FP32 graph on {len(images)} slices of {source}, {'; '.join(failures)}. "
            f"Nothing was written; export without --int8 (the FP32 graph is the CPU path for this model)"
        )
    return record


def _gate_slices(config: Any, options: ExportOptions) -> tuple[np.ndarray, str]:
    """The slices the INT8 gate is measured on: the run's validation patients (synthetic slices only when
    the gate is not enforced)."""
    images = parity.run_slices(config, "val", options.gate_slices, np.random.default_rng(1))
    if images is not None:
        return images, f"the validation patients of {config.dataset['path']}"
    if options.enforce_int8_gate:
        raise GpedgeError(
            f"--int8: the run's data set ({(config.dataset or {}).get('path')}) is not reachable here, so the INT8 graph "
            "cannot be gated on its validation patients; export where the data set is"
        )
    data = synthetic_slices(options.gate_slices, channels=config.in_channels, size=int(config.image_size),
                            num_classes=config.num_classes, seed=1)
    return data.images, "synthetic slices (gpedge.data.samples; gate not enforced)"


def _run_fp16(package: ModelPackage, images: np.ndarray) -> tuple[dict, str]:
    """FP16 graph outputs on the CPU: the ONNX Runtime backend, else the ONNX reference evaluator on two slices."""
    from gpedge.runtime.backends.base import rule_inputs
    from gpedge.runtime.backends.onnxruntime import OnnxRuntimeBackend

    try:
        backend = OnnxRuntimeBackend(package, "cpu", precision="fp16")
        return parity.backend_outputs(backend, images), "onnxruntime-cpu"
    except Exception as exc:  # an ORT build without some FP16 CPU kernel
        log.warning("onnxruntime cannot run %s (%s); using the ONNX reference evaluator", FP16_ONNX, exc)
    from onnx.reference import ReferenceEvaluator

    evaluator = ReferenceEvaluator(str(package.file(FP16_ONNX)))
    names = list(evaluator.output_names)
    feeds = {INPUT: images[:2], **rule_inputs(package.offset, package.mask_rule)}
    return dict(zip(names, evaluator.run(names, feeds))), "onnx-reference-evaluator"


def _maybe_engine(package: ModelPackage, options: ExportOptions, images: np.ndarray, fp32_outputs: dict,
                  results: dict) -> dict[str, Any]:
    """Build the TensorRT engine into the staged package when asked and possible; returns ``engine_build``."""
    from gpedge.tensorrt.builder import build_command

    height, width = package.image_size
    shape = (len(package.channels), height, width)
    if options.engine is False:
        return {"status": "not requested"}
    reason = unavailable_reason()
    if reason:
        command = build_command(FP16_ONNX, shape, options.max_batch, "engines/<gpu>-sm<cc>-trt<version>.engine")
        log.info("no TensorRT engine built (%s); build it on the target with: %s", reason, command)
        return {"status": "skipped", "reason": reason, "how_to_build": command,
                "note": "the gpedge runtime's tensorrt backend builds and caches it on first use"}
    import tensorrt

    from gpedge.runtime.backends.tensorrt import TensorRTBackend
    from gpedge.tensorrt.builder import build_engine
    from gpedge.tensorrt.cuda import gpu_info
    from gpedge.tensorrt.engines import engine_file_name

    gpu = gpu_info()
    name = f"engines/{engine_file_name(gpu.name, gpu.compute_capability, tensorrt.__version__)}"
    (package.root / "engines").mkdir()
    meta = build_engine(
        package.file(FP16_ONNX), package.root / name, shape, options.max_batch, workspace_gb=options.workspace_gb,
        version_compatible=options.version_compatible, hardware_compatibility=options.hardware_compatibility,
    )
    meta["file"] = name
    package.manifest["engines"].append(meta)
    package.manifest["files"][name] = file_entry(package.root / name, "float16")
    with TensorRTBackend(package) as backend:
        trt_outputs = parity.backend_outputs(backend, images)
    results["tensorrt_vs_fp32"] = parity.compare(fp32_outputs, trt_outputs)
    return {"status": "built"}


def _replace(staging: Path, out_dir: Path) -> None:
    """Move the finished package into place; an existing package is swapped out, then removed."""
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        os.replace(out_dir, old)
        os.replace(staging, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, out_dir)
