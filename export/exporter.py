"""``export_package``: a training run folder -> a verified model package, written atomically."""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

from gpedge.errors import GpedgeError
from gpedge.export import parity, tensorrt_build
from gpedge.export.manifest import build_manifest, file_entry
from gpedge.export.onnx_export import DEFAULT_OPSET
from gpedge.package import MANIFEST, atomic_write_json

log = logging.getLogger(__name__)

FP32_ONNX = "model.onnx"
FP16_ONNX = "model.fp16.onnx"
WEIGHTS = "model.safetensors"
DEFAULT_OFFSET = 0.5
DEFAULT_MAX_BATCH = 32


def export_package(
    run_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    image_size: int | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
    opset: int = DEFAULT_OPSET,
    fp16: bool = True,
    engine: bool | Literal["auto"] = "auto",
    workspace_gb: float = 4.0,
    version_compatible: bool = False,
    hardware_compatibility: str = "NONE",
    offset: float = DEFAULT_OFFSET,
    parity_samples: int = 8,
    overwrite: bool = False,
) -> Path:
    """Export run ``run_dir`` to the package folder ``out_dir`` and return its path.

    Writes ``model.onnx`` (FP32 fused graph), ``model.fp16.onnx`` (unless ``fp16=False``),
    ``model.safetensors``, ``manifest.json`` and, when TensorRT and a GPU are present (or
    ``engine=True``, which fails without them), ``engines/<gpu>-sm<cc>-trt<ver>.engine``.
    Everything is written into a temporary folder beside ``out_dir`` and renamed at the end;
    a failed export leaves nothing behind. Raises ``GpedgeError`` on bad arguments, missing
    runs, or FP32 parity failures.
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    _check_arguments(run_dir, out_dir, max_batch, offset, overwrite, engine, fp16, parity_samples)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    try:
        staging.chmod(0o755)
        _write_package(
            run_dir, staging, image_size=image_size, max_batch=max_batch, opset=opset, fp16=fp16, engine=engine,
            workspace_gb=workspace_gb, version_compatible=version_compatible,
            hardware_compatibility=hardware_compatibility, offset=offset, parity_samples=parity_samples,
        )
        _replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def _check_arguments(run_dir: Path, out_dir: Path, max_batch: int, offset: float, overwrite: bool,
                     engine: bool | str, fp16: bool, parity_samples: int) -> None:
    if not run_dir.is_dir():
        raise GpedgeError(f"run folder {run_dir} does not exist; pass the --out folder of 'gpedge train'")
    if out_dir.exists() and not overwrite and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise GpedgeError(f"{out_dir} already exists; choose another --out or pass --overwrite")
    if max_batch < 1:
        raise GpedgeError(f"--max-batch must be >= 1, got {max_batch}")
    if not offset >= 0:
        raise GpedgeError(f"--offset must be >= 0, got {offset}")
    if parity_samples < 1:
        raise GpedgeError(f"parity_samples must be >= 1, got {parity_samples}")
    if engine is True:
        if not fp16:
            raise GpedgeError("--engine needs the FP16 graph: drop --no-fp16")
        reason = tensorrt_build.unavailable_reason()
        if reason:
            raise GpedgeError(f"--engine: cannot build a TensorRT engine here ({reason}); {tensorrt_build.INSTALL_HINT}, "
                              "or export without --engine and build the engine on the target")


def _write_package(run_dir: Path, root: Path, *, image_size: int | None, max_batch: int, opset: int, fp16: bool,
                   engine: bool | str, workspace_gb: float, version_compatible: bool,
                   hardware_compatibility: str, offset: float, parity_samples: int) -> None:
    from safetensors.torch import save_file

    from gpedge.export.fused import FusedModel
    from gpedge.export.onnx_export import export_fused
    from gpedge.runs import load_run

    network, config = load_run(run_dir)
    size = int(image_size or config.image_size)
    multiple = int(getattr(network, "input_multiple", 1))
    if size % multiple:
        raise GpedgeError(f"--image-size {size} must be a multiple of {multiple} for {config.arch}")
    fused = FusedModel(network, config.no_tumour_class).eval()
    channels = config.in_channels
    metadata = {"gpedge.classes": ",".join(config.class_names), "gpedge.channels": ",".join(config.channels),
                "gpedge.mask_offset": str(offset)}
    log.info("exporting %s (%s) at %dx%d", run_dir, config.arch, size, size)
    fp32_model = export_fused(fused, root / FP32_ONNX, channels=channels, height=size, width=size,
                              max_batch=max_batch, offset=offset, opset=opset, metadata=metadata)
    save_file({k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}, str(root / WEIGHTS))

    images, source = parity.reference_images(config, parity_samples)
    reference = parity.torch_outputs(fused, images, offset)
    fp32_outputs = parity.onnxruntime_outputs(root / FP32_ONNX, images)
    results: dict[str, Any] = {"inputs": {"samples": len(images), "source": source}}
    results["onnxruntime_fp32_vs_torch"] = parity.compare(reference, fp32_outputs)
    parity.check_fp32(results["onnxruntime_fp32_vs_torch"], str(run_dir))

    files = {FP32_ONNX: "float32", WEIGHTS: "float32"}
    engines: list[dict[str, Any]] = []
    engine_build: dict[str, Any] = {"status": "not requested"}
    if fp16:
        from gpedge.export.fp16 import precision_summary, to_fp16
        import onnx

        half = to_fp16(fp32_model)
        onnx.save(half, str(root / FP16_ONNX))
        files[FP16_ONNX] = "float16"
        fp16_outputs, runner = _run_fp16(root / FP16_ONNX, images)
        results["fp16_vs_fp32"] = {**parity.compare({k: v[: len(fp16_outputs["label"])] for k, v in fp32_outputs.items()},
                                                    fp16_outputs), "runner": runner}
        results["fp16_graph"] = precision_summary(half)
        engine_build, engines = _maybe_engine(root, engine, size, channels, max_batch, workspace_gb,
                                              version_compatible, hardware_compatibility, images, fp32_outputs, results)
        files.update({meta["file"]: "float16" for meta in engines})

    manifest = build_manifest(
        config=config, model_config=network.config, num_params=sum(p.numel() for p in network.parameters()),
        height=size, width=size, max_batch=max_batch, offset=offset, opset=opset,
        files={name: file_entry(root / name, precision) for name, precision in files.items()},
        engines=engines, engine_build=engine_build, parity=results,
    )
    atomic_write_json(root / MANIFEST, manifest)


def _run_fp16(path: Path, images) -> tuple[dict, str]:
    """FP16 graph outputs on the CPU: ONNX Runtime, else the ONNX reference evaluator on two slices."""
    try:
        return parity.onnxruntime_outputs(path, images), "onnxruntime-cpu"
    except Exception as exc:  # an ORT build without some FP16 CPU kernel
        log.warning("onnxruntime cannot run %s (%s); using the ONNX reference evaluator", path.name, exc)
    from onnx.reference import ReferenceEvaluator

    evaluator = ReferenceEvaluator(str(path))
    names = list(evaluator.output_names)
    return dict(zip(names, evaluator.run(names, {"image": images[:2]}))), "onnx-reference-evaluator"


def _maybe_engine(root: Path, engine: bool | str, size: int, channels: int, max_batch: int, workspace_gb: float,
                  version_compatible: bool, hardware_compatibility: str, images, fp32_outputs: dict,
                  results: dict) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    shape = (channels, size, size)
    if engine is False:
        return {"status": "not requested"}, []
    reason = tensorrt_build.unavailable_reason()
    if reason:
        command = tensorrt_build.build_command(FP16_ONNX, shape, max_batch, "engines/<gpu>-sm<cc>-trt<version>.engine")
        log.info("no TensorRT engine built (%s); build it on the target with: %s", reason, command)
        return {"status": "skipped", "reason": reason, "how_to_build": command,
                "note": "the gpedge runtime's tensorrt backend builds and caches it on first use"}, []
    import tensorrt

    from gpedge.runtime.backends.tensorrt import engine_file_name, gpu_info

    gpu = gpu_info()
    name = engine_file_name(gpu.name, gpu.compute_capability, tensorrt.__version__)
    path = root / "engines" / name
    path.parent.mkdir()
    meta = tensorrt_build.build_engine(
        root / FP16_ONNX, path, shape, max_batch, workspace_gb=workspace_gb,
        version_compatible=version_compatible, hardware_compatibility=hardware_compatibility,
    )
    meta["file"] = f"engines/{name}"
    batch = images[:max_batch]
    trt_outputs = tensorrt_build.run_engine(path, batch, version_compatible=version_compatible)
    results["tensorrt_vs_fp32"] = parity.compare({k: v[: len(batch)] for k, v in fp32_outputs.items()}, trt_outputs)
    return {"status": "built"}, [meta]


def _replace(staging: Path, out_dir: Path) -> None:
    """Move the finished package into place; an existing package is swapped out, then removed."""
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        os.replace(out_dir, old)
        os.replace(staging, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, out_dir)
