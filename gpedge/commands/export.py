"""``gpedge export``: a training run folder -> a model package (torch is imported only when run)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from gpedge.errors import GpedgeError
from gpedge.export.options import DEFAULT_MAX_HEALTHY_FP, DEFAULT_MAX_SENSITIVITY_LOSS
from gpedge.graph.contract import DEFAULT_MASK_RULE, MASK_RULES, post_step_names
from gpedge.package import class_bias_text


def main(
    run_dir: Path = typer.Argument(..., help="Training run folder (made by 'gpedge train')."),
    out: Path = typer.Option(..., "--out", "-o", help="Package folder to write."),
    image_size: Optional[int] = typer.Option(None, "--image-size", help="H = W of the package input (default: the run's)."),
    max_batch: int = typer.Option(32, "--max-batch", help="Largest batch the graph and engine accept."),
    opset: int = typer.Option(18, "--opset", help="ONNX opset."),
    fp16: bool = typer.Option(True, "--fp16/--no-fp16", help="Also write model.fp16.onnx (needed for TensorRT)."),
    engine: Optional[bool] = typer.Option(
        None, "--engine/--no-engine", help="Build a TensorRT engine (default: when TensorRT and a GPU are present)."
    ),
    workspace: float = typer.Option(4.0, "--workspace", help="TensorRT builder workspace limit in GB."),
    version_compatible: bool = typer.Option(False, "--version-compatible", help="Engine runs on later TensorRT of the same major."),
    hardware_compatibility: str = typer.Option(
        "NONE", "--hardware-compatibility", help="NONE, AMPERE_PLUS or SAME_COMPUTE_CAPABILITY."
    ),
    mask_rule: Optional[str] = typer.Option(
        None, "--mask-rule",
        help=f"Mask rule the package starts with: {', '.join(MASK_RULES)}, optionally {post_step_names()} "
        f"(default: chosen on the run's validation patients when reachable, else {DEFAULT_MASK_RULE}).",
    ),
    offset: Optional[float] = typer.Option(
        None, "--offset",
        help="The rule's parameter (paper: absolute offset below the upper multi-Otsu threshold, default 0.5; "
        "the others: a fraction in [-1, 1], default 0).",
    ),
    tune_mask: Optional[bool] = typer.Option(
        None, "--tune-mask/--no-tune-mask",
        help="Choose the mask rule and offset on the run's validation patients (default: when they are reachable "
        "and neither --mask-rule nor --offset is given).",
    ),
    tune_slices: int = typer.Option(128, "--tune-slices", help="Validation slices the mask-rule choice is made on."),
    parity_samples: int = typer.Option(8, "--parity-samples", help="Slices used for the parity checks."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing package folder."),
    int8: bool = typer.Option(False, "--int8", help="Also write model.int8.onnx (static QDQ), gated against FP32 on the validation patients."),
    calibration: Optional[Path] = typer.Option(
        None, "--calibration", help="With --int8: data-set folder or .npy of (N, C, H, W) slices to calibrate on (default: the run's training patients)."
    ),
    calibration_slices: int = typer.Option(64, "--calibration-slices", help="With --int8: slices to calibrate on."),
    gate_slices: int = typer.Option(128, "--gate-slices", help="With --int8: validation slices the gate is measured on."),
    flip_average: bool = typer.Option(
        True, "--flip-average/--no-flip-average",
        help="Average each slice with its left-right mirror image inside the graph: steadier calls, twice the network's cost.",
    ),
    class_bias: bool = typer.Option(
        True, "--class-bias/--no-class-bias",
        help="Choose a class bias on the run's validation patients and put it in the graph: the grades' odds "
        "(highest macro F1) and the tumour-versus-healthy operating point (--max-healthy-fp).",
    ),
    max_healthy_fp: float = typer.Option(
        DEFAULT_MAX_HEALTHY_FP, "--max-healthy-fp", min=0.0, max=1.0,
        help="With --class-bias: the most validation healthy slices the graph may call tumour; the healthy odds are "
        "raised as little as reaches it (1 keeps them as trained).",
    ),
    max_sensitivity_loss: float = typer.Option(
        DEFAULT_MAX_SENSITIVITY_LOSS, "--max-sensitivity-loss", min=0.0, max=1.0,
        help="With --class-bias: the most the operating point may lower the share of validation tumour slices "
        "called tumour (1: no floor); when --max-healthy-fp needs more, it stops there.",
    ),
    triton: Optional[Path] = typer.Option(
        None, "--triton", help="Also write the package as models of this Triton repository (defaults of 'gpedge triton')."
    ),
) -> None:
    """Export a trained run to a model package: fused ONNX FP32 + FP16 graphs, weights, manifest, TensorRT engine."""
    from gpedge.export import ExportOptions

    options = ExportOptions(
        image_size=image_size, max_batch=max_batch, opset=opset, fp16=fp16, engine="auto" if engine is None else engine,
        workspace_gb=workspace, version_compatible=version_compatible, hardware_compatibility=hardware_compatibility,
        mask_rule=mask_rule, offset=offset, tune_mask="auto" if tune_mask is None else tune_mask, tune_slices=tune_slices,
        parity_samples=parity_samples, overwrite=overwrite, int8=int8,
        calibration=calibration, calibration_slices=calibration_slices, gate_slices=gate_slices,
        flip_average=flip_average, class_bias=class_bias, max_healthy_fp=max_healthy_fp,
        max_sensitivity_loss=max_sensitivity_loss,
    )
    try:
        from gpedge.export.exporter import export_package
    except ImportError as exc:
        raise GpedgeError(f"gpedge export needs {exc.name}; install it with: pip install 'gpedge[export]'") from exc
    path = export_package(run_dir, out, options)
    manifest = json.loads((path / "manifest.json").read_text())
    _report(path, manifest)
    if triton is not None:
        from gpedge.commands.triton import write_and_report
        from gpedge.export.triton import TritonOptions

        write_and_report(path, triton, TritonOptions(overwrite=overwrite))


def _report(path: Path, manifest: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"model package {path}", show_header=True)
    table.add_column("file")
    table.add_column("precision")
    table.add_column("size", justify="right")
    for name, entry in manifest["files"].items():
        table.add_row(name, entry["precision"], f"{entry['bytes'] / 1e6:.2f} MB")
    console.print(table)
    parity = manifest["parity"]
    for key in ("onnxruntime_fp32_vs_torch", "fp16_vs_fp32", "tensorrt_vs_fp32", "int8_vs_fp32"):
        if key in parity:
            r = parity[key]
            console.print(
                f"{key}: max |dprobs| {r['max_abs_diff_probs']:.2e}, labels {r['label_agreement']:.1%}, "
                f"mask pixels {r['mask_pixel_agreement']:.2%}, mask Dice {r['mask_dice_mean']:.4f}"
            )
    if "int8" in manifest:
        int8, gate = manifest["int8"], manifest["int8"]["gate"]
        console.print(
            f"INT8 graph: {int8['quantized_nodes']} nodes quantized, {len(int8['fp32_nodes'])} kept FP32, calibrated on "
            f"{int8['calibration']['slices']} slices of {int8['calibration']['source']}; gate on {gate['slices']} slices of "
            f"{gate['source']}: labels {gate['label_agreement']:.1%} (>= {gate['label_agreement_min']:.0%}), mask Dice "
            f"{gate['mask_dice']:.3f} (>= {gate['mask_dice_min']}) {'passed' if gate['passed'] else 'FAILED'}"
        )
    rule = manifest["mask_rule"]
    tuned = rule.get("tuned")
    how = (f"chosen on {tuned['slices']} slices of {tuned['patients']} validation patients (median Dice on the tumour slices "
           f"called tumour {tuned['per_rule'][rule['rule']]['dice_median_called'] or 0:.3f})") if tuned else \
        "not chosen on validation data ('gpedge evaluate --mask-rules' chooses one)"
    console.print(f"mask rule {rule['rule']}, offset {rule['offset']:g}: {how}")
    bias = manifest.get("class_bias")
    if bias is not None:
        values = class_bias_text(manifest["classes"], bias["values"])
        how = (f"chosen on {bias['slices']} slices of {bias['patients']} validation patients (macro F1 "
               f"{bias['val_macro_f1_unbiased']:.3f} -> {bias['val_macro_f1']:.3f})") if "slices" in bias else "given"
        if "best" in bias:
            how += (f"; the best, {class_bias_text(manifest['classes'], bias['best']['values'])}, reached "
                    f"{bias['best']['val_macro_f1']:.3f}, less than {bias['min_gain']:g} above no bias: not adopted")
        console.print(f"class bias {values}: {how}")
        point = bias.get("no_tumour")
        if point is not None:
            console.print(_operating_point_text(manifest["classes"][manifest["mask_rule"]["empty_for_class"]], point))
    build = manifest.get("engine_build", {})
    if build.get("status") == "skipped":
        console.print(f"TensorRT engine not built ({build['reason']}). On the target: {build['how_to_build']}")
        console.print(f"  ({build['note']})")
    for meta in manifest.get("engines", []):
        console.print(f"engine {meta['file']}: TensorRT {meta['tensorrt_version']}, {meta['gpu_name']}, layers {meta['layer_precisions']}")


def _operating_point_text(no_tumour: str, point: dict[str, Any]) -> str:
    """The export's line on the tumour-versus-healthy operating point (a manifest's ``class_bias.no_tumour``)."""
    shares = (f"validation {no_tumour} slices called tumour {point['healthy_called_tumour_before']:.3f} -> "
              f"{point['healthy_called_tumour']:.3f}, tumour slices called tumour "
              f"{point['tumour_called_tumour_before']:.3f} -> {point['tumour_called_tumour']:.3f}")
    if point["reached"]:
        return f"operating point {no_tumour} {point['value']:+g} ({shares}; at most {point['max_healthy_fp']:g} asked)"
    if point.get("limited_by_sensitivity"):
        return (f"operating point {no_tumour} {point['value']:+g}, stopped by --max-sensitivity-loss "
                f"{point['max_sensitivity_loss']:g} short of at most {point['max_healthy_fp']:g} asked ({shares})")
    return (f"operating point not reached: at most {point['max_healthy_fp']:g} of the {no_tumour} slices asked, "
            f"{point['healthy_called_tumour_at_grid_end']:.3f} at {no_tumour} +{point['grid'][1]:g}; {no_tumour} +0 kept "
            f"({shares})")
