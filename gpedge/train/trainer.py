"""The training loop behind ``gpedge train``: image-level labels only, best model by validation macro F1."""
from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sklearn.metrics import accuracy_score, f1_score
from sklearn.utils.class_weight import compute_class_weight
from torch import nn
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, RandomSampler, SequentialSampler

from gpedge._version import __version__
from gpedge.data.dataset import SliceDataset
from gpedge.errors import DataError, GpedgeError, prefixed
from gpedge.pretrained import resolve_init
from gpedge.atomic import atomic_write_json
from gpedge.cpus import native_bf16
from gpedge.runs import CONFIG, METRICS, RunConfig, load_weights, save_weights
from gpedge.train.augment import AUGMENTATIONS, augment_batch
from gpedge.train import distributed
from gpedge.train.distil import Teacher, distil_loss
from gpedge.train.checkpoint import CHECKPOINT, TrainState, load_checkpoint, process_rng_state, save_checkpoint
from gpedge.train.distributed import Ranks
from gpedge.train.health import check_layers, dead_layers
from gpedge.train.losses import map_scores
from gpedge.train.options import TrainOptions

_HEALTH_SLICES = 16

_COMPARED_ON_RESUME = ("arch", "model_options", "channels", "class_names", "image_size")


def train(options: TrainOptions, console: Console | None = None) -> Path:
    """Train ``options.arch`` on ``options.data`` and return the run folder ``options.out``.

    The folder receives ``config.json`` at the start, and after every epoch ``metrics.json``,
    ``checkpoint.pt`` and, when validation macro F1 improves, ``model.safetensors``. After every
    epoch the layers are checked for death (:mod:`gpedge.train.health`): dead ones are named in
    a warning and in ``metrics.json``.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) every process trains a shard of each batch with
    DistributedDataParallel (see :mod:`gpedge.train.distributed`); rank 0 alone writes the run
    folder and the log.
    """
    options = options.resolved()
    options.validate()
    ranks = distributed.ranks_from_env()
    device = distributed.device_for(ranks, _resolve_device(options.device))
    with distributed.process_group(ranks, device):
        return _train(options, ranks, device, console or Console(soft_wrap=True, quiet=not ranks.is_main))


def _train(options: TrainOptions, ranks: Ranks, device: torch.device, console: Console) -> Path:
    from gpedge.models import create_model, list_models

    if options.arch not in list_models():
        raise GpedgeError(f"unknown --arch {options.arch!r}; choose one of {', '.join(list_models())}")
    run_dir = Path(options.out)
    _check_run_dir(run_dir, options.resume)
    amp = _amp_dtype(options, device, console)

    torch.manual_seed(options.seed)
    with distributed.local_main_first(ranks):
        dataset, split = _open_data(options, run_dir)
        teacher = Teacher.load(options.distil_from, dataset.channels, dataset.class_names, device) if options.distil_from else None
        training_data = dataset if teacher is None else _teacher_data(options, dataset, teacher)
    train_set, val_set = training_data.subset(split["train"]), dataset.subset(split["val"])
    train_set, left_out = visible_tumours(train_set, options.min_tumour_px)
    for name, subset in (("training", train_set), ("validation", val_set)):
        if len(subset) == 0:
            raise DataError(f"{options.data}: the {name} split has no slices; add patients (at least 3 are needed for train/val/test)")
        if len(subset) < ranks.world_size:
            raise DataError(
                f"{options.data}: the {name} split has {len(subset)} slices, fewer than the {ranks.world_size} processes; "
                "start fewer processes (--nproc-per-node) or add patients"
            )
    image_size = _image_size(options, dataset)
    try:
        model = create_model(options.arch, in_channels=len(dataset.channels), num_classes=len(dataset.class_names), **options.model_options)
    except ValueError as exc:
        raise GpedgeError(f"cannot build {options.arch}: {exc}") from exc
    if image_size % model.input_multiple:
        raise GpedgeError(
            f"--image-size {image_size} does not suit {options.arch}: it must be a multiple of {model.input_multiple}"
        )
    if options.init_from is not None and not options.resume:
        start_from(model, options, dataset)
    if ranks.rank:
        torch.manual_seed(options.seed + ranks.rank)  # own dropout draws; DDP copies rank 0's initial weights
    if ranks.active and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    weights = balanced_class_weights(train_set.labels, len(dataset.class_names))
    effective_batch = options.batch_size * ranks.world_size * options.accumulate
    config = RunConfig(
        arch=options.arch,
        model_options=model.config["options"],
        channels=list(dataset.channels),
        class_names=list(dataset.class_names),
        image_size=image_size,
        no_tumour_class=dataset.no_tumour_class,
        dataset={**_dataset_info(dataset, split), "training_slices_left_out": left_out},
        split={key: list(value) for key, value in split.items()},
        train={
            **options.hyperparameters(),
            "device": device.type,
            "amp": _dtype_name(amp),
            "class_weights": weights.tolist(),
            "world_size": ranks.world_size,
            "effective_batch": effective_batch,
        },
        gpedge_version=__version__,
    )
    if options.resume:
        _check_same_run(RunConfig.load(run_dir), config, run_dir)
    distributed.barrier(ranks)  # every rank has checked the folder before rank 0 writes into it
    if not options.resume and ranks.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        config.save(run_dir)

    model.to(device, memory_format=torch.channels_last)
    loader_gen = torch.Generator().manual_seed(options.seed)
    augment_gen = torch.Generator().manual_seed(options.seed + 1)
    generators = {"loader": loader_gen, "augment": augment_gen}
    train_loader = _loader(train_set, options, device, ranks, shuffle=True, generator=loader_gen)
    val_loader = _loader(val_set, options, device, ranks, shuffle=False)
    criterion = nn.CrossEntropyLoss(weight=torch.tensor(weights, dtype=torch.float32, device=device))
    optimizer = build_optimizer(model, options)
    schedule = LearningRate(options, _total_steps(options, len(train_loader)))
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)  # bfloat16 needs no loss scaling
    state = load_checkpoint(run_dir, model, optimizer, scaler, generators, device, ranks, options.seed) if options.resume else TrainState()
    health_images = _health_images(val_set, device)
    trained = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) if ranks.active else model
    if options.compile:
        trained = compiled(trained, health_images[:1], device, amp)

    console.print(
        f"training {options.arch} ({sum(p.numel() for p in model.parameters()):,} parameters) on {device.type}"
        f"{f' with {_dtype_name(amp)} autocast' if amp else ''}: "
        f"{len(train_set)} training / {len(val_set)} validation slices"
        f"{f' ({left_out} tumour slices under {options.min_tumour_px} px left out of training)' if left_out else ''}, "
        f"{len(split['train'])}/{len(split['val'])}/{len(split['test'])} patients train/val/test; "
        f"effective batch {effective_batch} = {options.batch_size} per process x {ranks.world_size} "
        f"process{'es' if ranks.active else ''} x {options.accumulate} accumulated"
    )
    loop = _Loop(trained, optimizer, schedule, scaler, criterion, options, device, amp, augment_gen, console, ranks, teacher)
    while state.epoch < options.epochs and not _steps_done(options, state):
        state.epoch += 1
        record = loop.train_epoch(train_loader, state)
        record.update(validate(model, val_loader, criterion, device, amp, ranks, options.batch_size * ranks.world_size))
        reports = check_layers(model, health_images)
        record["dead_layers"] = dead_layers(reports)
        improved = record["val_macro_f1"] > state.best_f1
        if improved:
            state.best_f1, state.best_epoch = record["val_macro_f1"], state.epoch
        state.history.append(record)
        rank_rng = distributed.gather_objects(process_rng_state(device), ranks) if ranks.active else None
        if ranks.is_main:
            if improved:
                save_weights(model, run_dir)
            save_checkpoint(run_dir, model, optimizer, scaler, state, generators, rank_rng)
            _write_metrics(run_dir, state, reports)
        console.print(
            f"epoch {state.epoch}/{options.epochs}  loss {record['train_loss']:.4f}  "
            f"val loss {record['val_loss']:.4f}  val acc {record['val_accuracy']:.4f}  "
            f"val macro-F1 {record['val_macro_f1']:.4f}{'  (best, saved)' if improved else ''}  "
            f"{record['slices_per_s']:.1f} slices/s"
        )
        _warn_dead_layers(console, record["dead_layers"])
    console.print(f"best validation macro-F1 {state.best_f1:.4f} at epoch {state.best_epoch}; run folder {run_dir}")
    return run_dir


def build_optimizer(model: nn.Module, options: TrainOptions) -> torch.optim.Optimizer:
    """The optimizer ``options.optimizer`` names.

    ``adam``: Adam with L2 decay on every parameter (the paper's): when a layer's data gradient
    falls below ``weight_decay * w``, Adam normalises the decay term itself and shrinks the layer
    by about ``lr`` per step. ``adamw``: decoupled decay, which shrinks by ``lr * weight_decay * w``
    at most, and only on convolution weights (not on biases, norm or PReLU parameters).
    """
    if options.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    decayed = [p for p in model.parameters() if p.dim() > 1]
    others = [p for p in model.parameters() if p.dim() <= 1]
    groups = [{"params": decayed, "weight_decay": options.weight_decay}, {"params": others, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=options.lr)


class LearningRate:
    """Learning rate as a function of the optimizer step: linear warm-up, then constant or cosine to 0."""

    def __init__(self, options: TrainOptions, total_steps: int) -> None:
        self.lr, self.warmup, self.schedule = options.lr, options.warmup_steps, options.schedule
        self.total = max(total_steps, self.warmup + 1)

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        if self.schedule == "cosine":
            progress = (step - self.warmup) / (self.total - self.warmup)
            return self.lr * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
        return self.lr


def balanced_class_weights(labels, num_classes: int) -> np.ndarray:
    """Balanced cross-entropy weights (scikit-learn) from training labels; absent classes get 1."""
    labels = np.asarray(labels, dtype=np.int64)
    present = np.unique(labels)
    weights = np.ones(num_classes, dtype=np.float64)
    weights[present] = compute_class_weight("balanced", classes=present, y=labels)
    return weights


@torch.no_grad()
def validate(
    model: nn.Module,
    loader: DataLoader,
    criterion: nn.Module,
    device: torch.device,
    amp: torch.dtype | None,
    ranks: Ranks = Ranks(),
    batch_size: int | None = None,
) -> dict[str, float]:
    """Validation loss, accuracy and macro F1 of ``model`` over ``loader`` (eval mode).

    Distributed: each rank scores its shard of the validation slices, the logits of all shards
    are gathered, and every rank computes the metrics over the whole validation set. The loss is
    the mean over batches of ``batch_size`` (default: the loader's) of the weighted batch loss,
    weighted by batch length, as a single process with that batch computes it.
    """
    model.eval()
    outputs, truths = [], []
    for images, labels in loader:
        images = images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        with _autocast(device, amp):
            outputs.append(model(images).logits.float())
        truths.append(labels.to(device, non_blocking=True))
    logits, labels = torch.cat(outputs), torch.cat(truths)
    if ranks.active:
        total = loader.sampler.total
        logits = distributed.gather_sharded(logits, total, ranks)
        labels = distributed.gather_sharded(labels, total, ranks)
    batch_size = batch_size or loader.batch_size
    loss_sum = sum(
        criterion(logits[i : i + batch_size], labels[i : i + batch_size]).item() * len(labels[i : i + batch_size])
        for i in range(0, len(labels), batch_size)
    )
    y_pred, y_true = logits.argmax(dim=1).cpu().numpy(), labels.cpu().numpy()
    return {
        "val_loss": loss_sum / len(y_true),
        "val_accuracy": float(accuracy_score(y_true, y_pred)),
        "val_macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
    }


class _Loop:
    """One epoch of training with augmentation, accumulation, learning-rate schedule, value clipping and optional AMP.

    Distributed, each rank holds a shard of every global batch (``model`` is then wrapped in
    DistributedDataParallel): it draws the augmentation of the whole global batch and applies
    its own part, and its loss is scaled so that the gradients DDP averages over ranks are those
    of the class-weighted mean loss over the global batch, as one process computes it.
    """

    def __init__(
        self, model, optimizer, schedule: LearningRate, scaler, criterion, options: TrainOptions, device,
        amp: torch.dtype | None, augment_gen, console, ranks: Ranks, teacher: Teacher | None = None,
    ) -> None:
        self.model, self.optimizer, self.schedule, self.scaler, self.criterion = model, optimizer, schedule, scaler, criterion
        self.options, self.device, self.amp, self.augment_gen, self.console = options, device, amp, augment_gen, console
        self.ranks, self.teacher = ranks, teacher

    def train_epoch(self, loader: DataLoader, state: TrainState) -> dict[str, Any]:
        options = self.options
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        pending, seen, loss_sum, start = 0, 0, 0.0, time.perf_counter()
        with self._progress() as progress:
            task = progress.add_task(f"epoch {state.epoch}", total=len(loader), loss=float("nan"), rate=0.0)
            for index, (images, labels) in enumerate(loader):
                images = augment_batch(
                    images.to(self.device, non_blocking=True),
                    self.augment_gen,
                    options.rotation_degrees,
                    self.ranks.rank,
                    self.ranks.world_size,
                    AUGMENTATIONS[options.augment],
                ).contiguous(memory_format=torch.channels_last)
                labels = labels.to(self.device, non_blocking=True)
                taught = None
                if self.teacher is not None:
                    with _autocast(self.device, self.amp):
                        taught = self.teacher(images) if options.distil_weight > 0 else None
                    images = self.teacher.student_input(images)
                sync = pending + 1 == options.accumulate or index + 1 == len(loader)
                with self._sync(sync):
                    with _autocast(self.device, self.amp):
                        output = self.model(images)
                    loss, batch_loss = self._loss(output.logits.float(), labels)
                    if options.map_loss > 0:
                        map_loss, batch_map_loss = self._loss(map_scores(output.heatmaps.float(), options.map_top), labels)
                        loss = loss + options.map_loss * map_loss
                        batch_loss += options.map_loss * batch_map_loss
                    if taught is not None:
                        taught_loss = distil_loss(output, taught)
                        loss = loss + options.distil_weight * taught_loss
                        batch_loss += options.distil_weight * self._mean_over_ranks(taught_loss.detach())
                    self.scaler.scale(loss / options.accumulate).backward()
                if not math.isfinite(batch_loss):
                    raise GpedgeError(_diverged(options, state))
                pending += 1
                count = len(labels) * self.ranks.world_size
                seen += count
                loss_sum += batch_loss * count
                if pending == options.accumulate:
                    self._step(state)
                    pending = 0
                rate = seen / max(time.perf_counter() - start, 1e-9)
                progress.update(task, advance=1, loss=loss_sum / seen, rate=rate)
                if _steps_done(options, state):
                    break
            if pending:
                self._step(state)
        seconds = time.perf_counter() - start
        return {
            "epoch": state.epoch,
            "step": state.step,
            "train_loss": loss_sum / seen,
            "slices_per_s": seen / seconds,
            "seconds": seconds,
        }

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, float]:
        """The class-weighted cross-entropy of ``logits`` to back-propagate, and its value over the global batch."""
        if not self.ranks.active:
            loss = self.criterion(logits, labels)
            return loss, loss.item()
        weighted = F.cross_entropy(logits, labels, weight=self.criterion.weight, reduction="sum")
        totals = torch.stack([weighted.detach(), self.criterion.weight[labels].sum()])
        global_weighted, global_weight = distributed.all_reduce_sum(totals, self.ranks).tolist()
        return weighted * (self.ranks.world_size / global_weight), global_weighted / global_weight

    def _mean_over_ranks(self, value: torch.Tensor) -> float:
        """A per-process mean (over equal shards) as the mean over the global batch."""
        return distributed.all_reduce_sum(value.reshape(1).clone(), self.ranks).item() / self.ranks.world_size

    def _sync(self, sync: bool):
        return nullcontext() if sync or not self.ranks.active else self.model.no_sync()

    def _step(self, state: TrainState) -> None:
        self.scaler.unscale_(self.optimizer)
        if self.options.clip_value > 0:
            nn.utils.clip_grad_value_(self.model.parameters(), self.options.clip_value)
        for group in self.optimizer.param_groups:
            group["lr"] = self.schedule(state.step)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        state.step += 1

    def _progress(self) -> Progress:
        return Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}"),
            TextColumn("{task.fields[rate]:.1f} slices/s"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
            disable=not (self.options.progress and self.ranks.is_main),
        )


def _diverged(options: TrainOptions, state: TrainState) -> str:
    """What to say when the training loss stops being finite, with the likeliest fix first."""
    if options.compile:
        fix = "train without --compile (TorchInductor's code for GP-ReconResNet under --amp gives non-finite gradients)"
    elif options.amp:
        fix = "train without --amp, or with a lower --lr"
    else:
        fix = "lower --lr, or keep --clip-value above 0"
    kept = f"keeps the checkpoint of epoch {state.epoch - 1}" if state.epoch > 1 else "holds no checkpoint yet"
    return (
        f"the training loss is not finite at optimizer step {state.step} of epoch {state.epoch}: the weights diverged; "
        f"{fix}. The run folder {options.out} {kept}"
    )


def compiled(model: nn.Module, example: torch.Tensor, device: torch.device, amp: torch.dtype | None) -> nn.Module:
    """``model`` compiled with ``torch.compile`` (TorchInductor) for the training steps.

    One eager forward of ``example`` in eval mode first builds the constants that modules make at
    their first call (the sinc upsampling matrices, per feature size and dtype), which the compiler
    then reads as guarded constants; batch-norm statistics are left as they were.
    """
    was_training = model.training
    model.eval()
    with torch.no_grad(), _autocast(device, amp):
        model(example.contiguous(memory_format=torch.channels_last))
    model.train(was_training)
    return torch.compile(model)


def _autocast(device: torch.device, amp: torch.dtype | None):
    return torch.autocast(device_type=device.type, dtype=amp) if amp is not None else nullcontext()


def _dtype_name(dtype: torch.dtype | None) -> str | None:
    return str(dtype).removeprefix("torch.") if dtype is not None else None


def _total_steps(options: TrainOptions, batches_per_epoch: int) -> int:
    """Optimizer steps of the whole run (what a cosine schedule decays over)."""
    total = options.epochs * math.ceil(batches_per_epoch / options.accumulate)
    return min(total, options.max_steps) if options.max_steps is not None else total


def _steps_done(options: TrainOptions, state: TrainState) -> bool:
    return options.max_steps is not None and state.step >= options.max_steps


def _collate(samples: list[dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.as_tensor(np.stack([np.asarray(s["image"], dtype=np.float32) for s in samples]))
    labels = torch.as_tensor([int(s["label"]) for s in samples], dtype=torch.int64)
    return images, labels


def _loader(
    dataset, options: TrainOptions, device: torch.device, ranks: Ranks, shuffle: bool, generator: torch.Generator | None = None
) -> DataLoader:
    sampler = None
    if ranks.active:
        order = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
        sampler = distributed.ShardSampler(order, ranks, pad=shuffle)
    return DataLoader(
        dataset,
        batch_size=options.batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        generator=generator,
        num_workers=options.workers,
        collate_fn=_collate,
        pin_memory=device.type == "cuda",
        persistent_workers=options.workers > 0,
    )


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise GpedgeError("--device cuda: no CUDA device is available to torch; use --device cpu or install a CUDA build of torch")
    return torch.device(name)


def _amp_dtype(options: TrainOptions, device: torch.device, console: Console) -> torch.dtype | None:
    """What ``--amp`` computes in: float16 (with loss scaling) on CUDA, bfloat16 on a CPU that has it in hardware."""
    if not options.amp:
        return None
    if device.type == "cuda":
        return torch.float16
    if native_bf16():
        return torch.bfloat16
    if options.device == "cpu":
        raise GpedgeError(
            "--amp on the CPU needs bfloat16 in hardware (AVX-512 BF16, AMX or Arm BF16), which this CPU lacks; "
            "drop --amp to train in float32"
        )
    console.print("no CUDA device and no bfloat16 in this CPU: --amp ignored, training in float32")
    return None


def start_from(model: nn.Module, options: TrainOptions, dataset: SliceDataset) -> None:
    """Load the best weights of the run folder ``options.init_from`` (or of the bundled network of that name,
    :mod:`gpedge.pretrained`) into ``model``, which must be the same network (architecture, options,
    channels in order, classes); a clear error names what differs. The run's config is checked before its
    weights are read."""
    flag = f"--init-from {options.init_from}"
    folder = resolve_init(options.init_from)
    with prefixed(flag):
        config = RunConfig.load(folder)
    wanted = {
        "--arch": (options.arch, config.arch),
        "network options (--width, --upsample, ...)": (model.config["options"], config.model_options),
        "--channels": (list(dataset.channels), config.channels),
        "classes": (list(dataset.class_names), config.class_names),
    }
    for what, (here, there) in wanted.items():
        if here != there:
            raise GpedgeError(f"{flag}: that run's {what} is {there}, this run's is {here}; start from a run of the same network")
    with prefixed(flag):
        load_weights(model, folder, config.arch)


def _check_run_dir(run_dir: Path, resume: bool) -> None:
    if resume:
        if not (run_dir / CHECKPOINT).is_file():
            raise GpedgeError(f"--resume: {run_dir / CHECKPOINT} not found; run without --resume to start a new run")
    elif (run_dir / CONFIG).exists():
        raise GpedgeError(f"{run_dir} already holds a training run; pass --resume to continue it or choose another --out")


def _open_data(options: TrainOptions, run_dir: Path) -> tuple[Any, dict[str, list[str]]]:
    from gpedge.data import open_dataset, split_patients

    if not Path(options.data).exists():
        raise DataError(f"--data {options.data} does not exist; pass a BraTS, Figshare or image-folder data set")
    dataset = open_dataset(options.data, format=options.format, channels=options.channels, image_size=options.image_size)
    split = RunConfig.load(run_dir).split if options.resume else split_patients(dataset, seed=options.seed)
    return dataset, split


def _teacher_data(options: TrainOptions, dataset: SliceDataset, teacher: Teacher) -> SliceDataset:
    """The data set in the teacher's channels (the training loop derives the student's input from them)."""
    from gpedge.data import open_dataset

    full = open_dataset(options.data, format=options.format, channels=teacher.channels, image_size=options.image_size)
    if [(r.patient, r.slice, r.label) for r in full.records] != [(r.patient, r.slice, r.label) for r in dataset.records]:
        raise DataError(f"--distil-from: {options.data} lists other slices in the teacher's channels {teacher.channels} "
                        f"than in {dataset.channels}; every slice needs all the teacher's contrasts")
    return full


def visible_tumours(train_set: SliceDataset, min_px: int) -> tuple[SliceDataset, int]:
    """``train_set`` without the tumour slices whose mask covers fewer than ``min_px`` pixels, and how many left.

    Such a slice carries the patient's grade although little of the tumour shows in it. Refuses when a
    tumour class would lose every slice (a data set without masks, or a threshold above every lesion).
    """
    if not min_px:
        return train_set, 0
    labels = train_set.labels
    keep = [
        i for i, label in enumerate(labels)
        if label == train_set.no_tumour_class or int(train_set.mask(i).sum()) >= min_px
    ]
    for c, name in enumerate(train_set.class_names):
        if c != train_set.no_tumour_class and (labels == c).any() and not (labels[keep] == c).any():
            raise DataError(
                f"--min-tumour-px {min_px} leaves no {name} slice to train on (no {name} mask reaches {min_px} pixels at "
                "the training size); lower it, or use 0 for data without tumour masks"
            )
    return train_set.take(keep), len(labels) - len(keep)


def _image_size(options: TrainOptions, dataset) -> int:
    if options.image_size is not None:
        return options.image_size
    height, width = np.asarray(dataset[0]["image"]).shape[-2:]
    if height != width:
        raise DataError(f"{options.data}: slices are {height}x{width}, not square; pass --image-size N to resize them")
    return int(height)


def _dataset_info(dataset, split: dict[str, list[str]]) -> dict[str, Any]:
    info = dataset.describe()
    info["split_slices"] = {name: len(dataset.subset(patients)) for name, patients in split.items()}
    return info


def _check_same_run(saved: RunConfig, requested: RunConfig, run_dir: Path) -> None:
    saved_fields, requested_fields = asdict(saved), asdict(requested)
    for key in _COMPARED_ON_RESUME:
        if saved_fields[key] != requested_fields[key]:
            raise GpedgeError(
                f"--resume: {run_dir} was trained with {key}={saved_fields[key]!r}, not {requested_fields[key]!r}; "
                "use the original settings or start a new run in another --out"
            )


def _health_images(dataset, device: torch.device) -> torch.Tensor:
    """Up to ``_HEALTH_SLICES`` validation slices spread over the set: the dead-layer check's input."""
    indices = np.unique(np.linspace(0, len(dataset) - 1, num=min(_HEALTH_SLICES, len(dataset))).astype(int))
    return torch.as_tensor(np.stack([np.asarray(dataset[int(i)]["image"], dtype=np.float32) for i in indices])).to(device)


def _warn_dead_layers(console: Console, dead: dict[str, list[str]]) -> None:
    if dead:
        details = "; ".join(f"{layer}: {', '.join(reasons)}" for layer, reasons in dead.items())
        console.print(f"[yellow]warning: {len(dead)} dead layer(s), they no longer learn[/yellow] ({details})")


def _write_metrics(run_dir: Path, state: TrainState, reports) -> None:
    best = state.history[state.best_epoch - 1] if state.best_epoch else None
    health = {"dead_layers": state.history[-1]["dead_layers"], "layers": [report.to_dict() for report in reports]}
    atomic_write_json(run_dir / METRICS, {"best": best, "epochs": state.history, "health": health})
