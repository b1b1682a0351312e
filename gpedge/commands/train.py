"""``gpedge train``: train a GP network on a labelled MRI data set into a run folder."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from gpedge.pretrained import PRETRAINED

_FROM_RECIPE = "Default: the recipe's."


def main(
    arch: str = typer.Option(..., "--arch", help="Network: gp-unet, gp-shuffle-unet or gp-reconresnet."),
    data: Path = typer.Option(..., "--data", help="Data set folder (BraTS 2020, Figshare .mat files or an image folder)."),
    out: Path = typer.Option(..., "--out", help="Run folder to write (config.json, model.safetensors, metrics.json, checkpoint.pt)."),
    format: str = typer.Option("auto", "--format", help="Data set format: auto, brats, figshare or folder."),
    channels: Optional[str] = typer.Option(None, "--channels", help="Comma-separated channels, e.g. t1,t2,t1ce,flair (default: all of the data set)."),
    image_size: Optional[int] = typer.Option(None, "--image-size", help="Resize slices to N x N (default: the data set's size)."),
    width: Optional[int] = typer.Option(None, "--width", help="First feature width of the network (paper: 64)."),
    dropout: Optional[float] = typer.Option(None, "--dropout", help="Dropout rate of the network (default: the network's own)."),
    upsample: Optional[str] = typer.Option(
        None, "--upsample",
        help="GP-UNet / GP-ReconResNet upsampling: sinc (the paper's, periodic Fourier resampling), sinc-mirror "
        "(Fourier resampling without wrap across the borders) or transpose (default: the network's own).",
    ),
    norm: Optional[str] = typer.Option(
        None, "--norm",
        help="GP-UNet and GP-ShuffleUNet: none (the paper's) or batch (BatchNorm between each 3x3 convolution and "
        "its ReLU; folded into the convolutions at export) (default: the network's own).",
    ),
    num_res_blocks: Optional[int] = typer.Option(
        None, "--num-res-blocks", min=0, help="GP-ReconResNet: residual blocks at the lowest resolution (paper: 14).",
    ),
    recipe: str = typer.Option(
        "paper", "--recipe",
        help="Training recipe filling the settings below: paper (Adam + L2 5e-4, batch 8 x 16, 300 epochs) "
        "or cpu (AdamW 0.05 on weights, batch 8, 300 warm-up steps, cosine decay, 8 epochs, heatmap term 1).",
    ),
    epochs: Optional[int] = typer.Option(None, "--epochs", help=f"Number of epochs. {_FROM_RECIPE}"),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Stop after this many optimizer steps in total."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help=f"Slices per batch. {_FROM_RECIPE}"),
    accumulate: Optional[int] = typer.Option(None, "--accumulate", help=f"Batches per optimizer step (gradient accumulation). {_FROM_RECIPE}"),
    optimizer: Optional[str] = typer.Option(None, "--optimizer", help=f"adam (L2 decay in the gradient) or adamw (decoupled, weights only). {_FROM_RECIPE}"),
    lr: Optional[float] = typer.Option(None, "--lr", help=f"Peak learning rate. {_FROM_RECIPE}"),
    weight_decay: Optional[float] = typer.Option(None, "--weight-decay", help=f"Weight decay. {_FROM_RECIPE}"),
    clip_value: Optional[float] = typer.Option(None, "--clip-value", help=f"Clip gradients by value (0: off). {_FROM_RECIPE}"),
    warmup_steps: Optional[int] = typer.Option(None, "--warmup-steps", help=f"Linear learning-rate warm-up steps. {_FROM_RECIPE}"),
    schedule: Optional[str] = typer.Option(None, "--schedule", help=f"Learning rate after the warm-up: constant or cosine. {_FROM_RECIPE}"),
    map_loss: Optional[float] = typer.Option(
        None, "--map-loss",
        help=f"Weight of the heatmap term: cross-entropy on the mean of each class map's top --map-top share, so the map "
        f"itself must tell the classes apart (0: logits only, as the paper). {_FROM_RECIPE}",
    ),
    map_top: Optional[float] = typer.Option(
        None, "--map-top", help=f"Share of each class map's pixels the heatmap term averages (0.005: its top 0.5%). {_FROM_RECIPE}",
    ),
    augment: Optional[str] = typer.Option(
        None, "--augment",
        help=f"paper (rotation and flips), scanner (also zoom and per-channel gamma and gain) or gain (also a per-channel "
        f"gain of x0.41-2.46). {_FROM_RECIPE}",
    ),
    min_tumour_px: Optional[int] = typer.Option(
        None, "--min-tumour-px",
        help=f"Leave training slices whose tumour covers fewer pixels (at --image-size) out of training; validation "
        f"and test keep them (0: keep all). {_FROM_RECIPE}",
    ),
    seed: int = typer.Option(1701, "--seed", help="Seed of the patient split, initialisation, shuffling and augmentation."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when available), cpu or cuda."),
    amp: bool = typer.Option(
        False, "--amp",
        help="Mixed precision: float16 on CUDA; bfloat16 on a CPU with it in hardware (AVX-512 BF16, AMX, Arm BF16).",
    ),
    compile_steps: bool = typer.Option(
        False, "--compile",
        help="Compile the training steps with torch.compile (TorchInductor; needs a C/C++ compiler on the CPU): "
        "faster steps after a compilation of about a minute. The weights and package are those of an eager run.",
    ),
    workers: int = typer.Option(2, "--workers", help="DataLoader worker processes (0: load in the main process)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    init_from: Optional[str] = typer.Option(
        None, "--init-from",
        help="Start from the best weights of another run folder of the same network (width, channels and classes), "
        f"e.g. one trained on 'gpedge synth' data, or of a bundled one ({', '.join(PRETRAINED)}); any --image-size. "
        "Optimiser and schedule start afresh.",
    ),
    distil_from: Optional[str] = typer.Option(
        None, "--distil-from",
        help="Teacher: a run folder (or bundled network) trained on the same classes and on channels that include this "
        "run's, e.g. gp-unet-synth (all four contrasts) for a T1CE-only network. The student also learns the teacher's "
        "class probabilities and the shape of its heatmaps (image-level labels only, end to end).",
    ),
    distil_weight: float = typer.Option(1.0, "--distil-weight", help="Weight of the teacher's term (with --distil-from)."),
) -> None:
    """Train a GP network; the best model by validation macro F1 is kept, dead layers are reported.

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
            key: value
            for key, value in (
                ("width", width), ("dropout", dropout), ("upsample", upsample), ("norm", norm),
                ("num_res_blocks", num_res_blocks),
            )
            if value is not None
        },
        recipe=recipe,
        epochs=epochs,
        max_steps=max_steps,
        batch_size=batch_size,
        accumulate=accumulate,
        optimizer=optimizer,
        lr=lr,
        weight_decay=weight_decay,
        clip_value=clip_value,
        warmup_steps=warmup_steps,
        schedule=schedule,
        map_loss=map_loss,
        map_top=map_top,
        augment=augment,
        min_tumour_px=min_tumour_px,
        seed=seed,
        device=device,
        amp=amp,
        compile=compile_steps,
        workers=workers,
        resume=resume,
        init_from=init_from,
        distil_from=distil_from,
        distil_weight=distil_weight,
    )
    train(options)
