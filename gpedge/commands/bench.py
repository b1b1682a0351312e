"""``gpedge bench``: latency, throughput, memory and accuracy of every inference backend."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from gpedge.errors import GpedgeError

_TABLE_WIDTH = 140


def _int_list(text: str, option: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise GpedgeError(f"{option} takes comma-separated integers such as 1,8,32, got {text!r}") from None
    if not values:
        raise GpedgeError(f"{option} needs at least one value")
    return values


def main(
    model: Optional[Path] = typer.Option(None, "--model", help="Model package folder (made by 'gpedge export'), or a bundled model: default, gp-unet-t1ce, gp-unet-synth."),
    arch: Optional[str] = typer.Option(None, "--arch", help="Benchmark an untrained network instead: gp-unet, gp-shuffle-unet or gp-reconresnet."),
    channels: int = typer.Option(4, "--channels", help="With --arch: input channels (paper: 4)."),
    image_size: int = typer.Option(240, "--image-size", help="With --arch: slice size N x N (paper: 240)."),
    width: Optional[int] = typer.Option(None, "--width", help="With --arch: first feature width (paper: 64)."),
    backend: Optional[str] = typer.Option(None, "--backend", help="Comma-separated backends (default: every one available here): torch, torch-fp16, onnxruntime, onnxruntime-int8, onnxruntime-cuda, tensorrt, tensorrt-int8 (the -int8 ones run the package's model.int8.onnx)."),
    batch: str = typer.Option("1,8,32", "--batch", help="Comma-separated batch sizes."),
    warmup: int = typer.Option(5, "--warmup", help="Untimed calls before timing each batch size."),
    iters: int = typer.Option(20, "--iters", help="Timed calls per batch size (with --volume: timed passes over the volume)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads per backend (default: the physical cores)."),
    accuracy_slices: int = typer.Option(16, "--accuracy-slices", help="Slices compared with the FP32 reference."),
    ort_optimization: str = typer.Option("all", "--ort-optimization", help="ONNX Runtime graph optimisation: disabled, basic, extended or all (adds NCHWc layouts)."),
    int8_format: str = typer.Option("qdq", "--int8-format", help="With --arch: INT8 graph operators, qdq (QuantizeLinear/DequantizeLinear pairs) or qoperator."),
    int8_per_tensor: bool = typer.Option(False, "--int8-per-tensor", help="With --arch: INT8 weights with one scale per tensor instead of per channel."),
    volume: Optional[Path] = typer.Option(None, "--volume", help="Whole-volume mode: a NIfTI scan or BraTS patient folder to run end to end, the largest --batch at a time."),
    mask_out: Optional[Path] = typer.Option(None, "--mask-out", help="With --volume: mask NIfTI to write (default: a temporary file)."),
    competing: bool = typer.Option(False, "--competing-process", help="Time with another process keeping every CPU busy (rows say load: competing)."),
    as_json: bool = typer.Option(False, "--json", help="Print the rows as JSON instead of a table."),
    out: Optional[Path] = typer.Option(None, "--out", help="Also write the rows as JSON to this file."),
) -> None:
    """Benchmark a model package (or an untrained paper network) on every backend, each in its own process."""
    import tempfile

    from gpedge.atomic import atomic_write_json
    from gpedge.bench.backends import available_backends, check_backends
    from gpedge.bench.runner import BenchSettings, benchmark_package, benchmark_volume

    if (model is None) == (arch is None):
        raise GpedgeError("pass exactly one of --model PKG (a model package) or --arch NAME (an untrained network)")
    settings = BenchSettings(
        backends=[b.strip() for b in backend.split(",") if b.strip()] if backend else None,
        batches=_int_list(batch, "--batch"),
        warmup=warmup,
        iters=iters,
        threads=threads,
        accuracy_slices=accuracy_slices,
        ort_optimization=ort_optimization,
        competing=competing,
    )
    if settings.backends:
        check_backends(settings.backends)  # before any export work
    if model is not None and (int8_format != "qdq" or int8_per_tensor):
        raise GpedgeError("--int8-format and --int8-per-tensor choose how --arch quantizes; a package's INT8 graph is made "
                          "by 'gpedge export --int8'")
    with tempfile.TemporaryDirectory(prefix="gpedge-bench-") as tmp:
        package = model
        if arch is not None:
            from gpedge.export.int8 import Int8Settings
            from gpedge.export.untrained import untrained_package

            wanted = settings.backends or available_backends()
            int8 = Int8Settings(per_channel=not int8_per_tensor, quant_format=int8_format)
            package = untrained_package(
                arch, channels=channels, image_size=image_size, options={} if width is None else {"width": width},
                max_batch=max(settings.batches), out_dir=Path(tmp) / "package",
                fp16="tensorrt" in wanted, int8=int8 if any(b.endswith("-int8") for b in wanted) else None,
            )
        if volume is not None:
            target = mask_out or Path(tmp) / "mask.nii.gz"
            rows = benchmark_volume(package, volume, target, settings)
        else:
            rows = benchmark_package(package, settings)
    if out is not None:
        atomic_write_json(out, rows)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console

    from gpedge.bench.table import rows_table, volume_table

    console = Console()
    if console.width < _TABLE_WIDTH:  # a pipe or a narrow terminal: keep the table readable in a file
        console = Console(width=_TABLE_WIDTH)
    console.print(volume_table(rows) if volume is not None else rows_table(rows))
