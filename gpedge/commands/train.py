"""``gpedge train``: train a GP network on a labelled MRI data set into a run folder."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def main(
    arch: str = typer.Option(..., "--arch", help="Network: gp-unet, gp-shuffle-unet or gp-reconresnet."),
    data: Path = typer.Option(..., "--data", help="Data set folder (BraTS 2020, Figshare .mat files or an image folder)."),
    out: Path = typer.Option(..., "--out", help="Run folder to write (config.json, model.safetensors, metrics.json, checkpoint.pt)."),
    format: str = typer.Option("auto", "--format", help="Data set format: auto, brats, figshare or folder."),
    channels: Optional[str] = typer.Option(None, "--channels", help="Comma-separated channels, e.g. t1,t2,t1ce,flair (default: all of the data set)."),
    image_size: Optional[int] = typer.Option(None, "--image-size", help="Resize slices to N x N (default: the data set's size)."),
    width: Optional[int] = typer.Option(None, "--width", help="First feature width of the network (paper: 64)."),
    dropout: Optional[float] = typer.Option(None, "--dropout", help="Dropout rate of the network (default: the network's own)."),
    epochs: int = typer.Option(300, "--epochs", help="Number of epochs."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Stop after this many optimizer steps in total."),
    batch_size: int = typer.Option(8, "--batch-size", help="Slices per batch."),
    accumulate: int = typer.Option(16, "--accumulate", help="Batches per optimizer step (gradient accumulation)."),
    lr: float = typer.Option(1e-3, "--lr", help="Adam learning rate."),
    weight_decay: float = typer.Option(5e-4, "--weight-decay", help="Adam weight decay (L2)."),
    seed: int = typer.Option(1701, "--seed", help="Seed of the patient split, initialisation, shuffling and augmentation."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when available), cpu or cuda."),
    amp: bool = typer.Option(False, "--amp", help="16-bit mixed precision (CUDA only)."),
    workers: int = typer.Option(2, "--workers", help="DataLoader worker processes (0: load in the main process)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
) -> None:
    """Train a GP network; the best model by validation macro F1 is kept.

    Under torchrun (e.g. torchrun --nproc-per-node 2 -m gpedge.cli train ...) each process trains
    a shard of every batch with DistributedDataParallel: the effective batch is
    --batch-size x processes x --accumulate.
    """
    from gpedge.train import TrainOptions, train

    options = TrainOptions(
        arch=arch,
        data=data,
        out=out,
        format=format,
        channels=[c.strip() for c in channels.split(",") if c.strip()] if channels else None,
        image_size=image_size,
        model_options={
            key: value for key, value in (("width", width), ("dropout", dropout)) if value is not None
        },
        epochs=epochs,
        max_steps=max_steps,
        batch_size=batch_size,
        accumulate=accumulate,
        lr=lr,
        weight_decay=weight_decay,
        seed=seed,
        device=device,
        amp=amp,
        workers=workers,
        resume=resume,
    )
    train(options)
