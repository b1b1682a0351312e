"""``gpedge triton``: a model package -> a Triton Inference Server model repository."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from gpedge.errors import GpedgeError


def main(
    package: Path = typer.Argument(..., help="Model package folder (made by 'gpedge export')."),
    repo: Path = typer.Argument(..., help="Triton model repository folder to write the model(s) into."),
    name: Optional[str] = typer.Option(None, "--name", help="Model name (default: the package folder's name)."),
    version: int = typer.Option(1, "--version", help="Model version folder."),
    instances: int = typer.Option(1, "--instances", help="Model instances (instance_group count)."),
    kind: str = typer.Option("auto", "--kind", help="Instances of the ONNX model: auto (GPU where Triton sees one), cpu or gpu."),
    precision: str = typer.Option("auto", "--precision", help="Graph of the ONNX model: auto (INT8 for --kind cpu when packaged, else FP32), fp32, fp16 or int8."),
    preferred_batch: Optional[str] = typer.Option(None, "--preferred-batch", help="Dynamic batcher's preferred sizes, e.g. 4,8 (default: 4 and 8 up to the max batch)."),
    queue_delay_us: int = typer.Option(1000, "--queue-delay-us", help="Longest wait of a request for others to batch with, in microseconds."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace models of the same name in the repository."),
) -> None:
    """Write a Triton model repository (onnxruntime model, tensorrt_plan model where the package has engines)."""
    from gpedge.export.triton import TritonOptions

    options = TritonOptions(name=name, version=version, instances=instances, kind=kind, precision=precision,
                            preferred_batch=_sizes(preferred_batch), queue_delay_us=queue_delay_us, overwrite=overwrite)
    write_and_report(package, repo, options)


def _sizes(text: Optional[str]) -> Optional[list[int]]:
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise GpedgeError(f"--preferred-batch takes comma-separated integers such as 4,8, got {text!r}") from None


def write_and_report(package: Path, repo: Path, options) -> None:
    """Write the repository (``gpedge triton`` and ``gpedge export --triton``) and list what was written."""
    try:
        from gpedge.export.triton import verify_model, write_repository
    except ImportError as exc:
        raise GpedgeError(f"gpedge triton needs {exc.name}; install it with: pip install 'gpedge[triton]'") from exc
    for folder in write_repository(package, repo, options):
        config = verify_model(folder)
        batching = (f"dynamic batching up to {config.max_batch_size}, preferred "
                    f"{list(config.dynamic_batching.preferred_batch_size)}" if config.max_batch_size else "no Triton batching")
        typer.echo(f"{folder}: {config.backend} model, {config.parameters['gpedge_precision'].string_value}, {batching}")
    typer.echo(f"serve it with: tritonserver --model-repository {Path(repo).resolve()}")
