"""Per-layer activation and gradient statistics over the first steps of training (docs/quality.md).

Trains one GP network on a BraTS-layout folder with the training loop's own pieces (slice-max
data, augmentation, class-weighted cross-entropy, value clipping) and records, every ``--every``
steps: the loss, the spread of the logits across images, and per layer the activation RMS, the
share of positive outputs and of constant ("dead") channels, the weight and gradient RMS, the
share of gradients clipped and of weights below 1e-30. After each epoch: validation macro F1,
tumour-vs-healthy accuracy and the pointing game (the predicted class's heatmap peaks inside
the tumour). Writes one JSON file; ``--show`` prints a table of a written file.

    python scripts/diagnose_training.py --data /tmp/brats --arch gp-unet --width 16 --size 64 \
        --init torch --optimizer adam --out unet-torch.json
    python scripts/diagnose_training.py --show unet-torch.json --steps 0,20,100,300

``--init torch`` re-initialises every convolution with PyTorch's defaults (the state before
gpedge's initialisation), ``--init he-all`` with Kaiming-normal (ReLU) weights and zero biases on
every convolution, head included (the paper's GP-ShuffleUNet); ``gpedge`` keeps the model's own.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import f1_score
from torch import nn

from gpedge.data import open_dataset, split_patients
from gpedge.models import create_model
from gpedge.models.sinc import SincUpsample
from gpedge.train.augment import augment_batch
from gpedge.train.options import TrainOptions
from gpedge.train.trainer import LearningRate, balanced_class_weights, build_optimizer

CHANNELS = ["t1", "t2", "t1ce", "flair"]
RECORDED = (nn.Conv2d, nn.ConvTranspose2d, nn.ReLU, nn.PReLU, nn.InstanceNorm2d, nn.BatchNorm2d, SincUpsample)


def reinitialise(model: nn.Module, kind: str) -> None:
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    if kind == "torch":
        for conv in convs:
            conv.reset_parameters()
    elif kind == "he-all":
        for conv in convs:
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            nn.init.zeros_(conv.bias)


def load(subset, masks: bool = False):
    images = torch.from_numpy(np.stack([subset[i]["image"] for i in range(len(subset))]).astype(np.float32))
    labels = torch.as_tensor(np.asarray(subset.labels), dtype=torch.int64)
    if not masks:
        return images, labels
    return images, labels, torch.from_numpy(np.stack([subset[i]["mask"] for i in range(len(subset))]).astype(bool))


class Recorder:
    """Forward hooks that keep the statistics of each recorded module's output while armed."""

    def __init__(self, model: nn.Module) -> None:
        self.armed, self.stats = False, {}
        for name, module in model.named_modules():
            if isinstance(module, RECORDED):
                module.register_forward_hook(self._hook(name))

    def _hook(self, name: str):
        def hook(module, inputs, output):
            if not self.armed:
                return
            out = output.detach()
            channels = out.transpose(0, 1).reshape(out.shape[1], -1)
            spread = channels.amax(1) - channels.amin(1)
            self.stats[name] = {
                "rms": out.pow(2).mean().sqrt().item(),
                "mean": out.mean().item(),
                "positive": (out > 0).float().mean().item(),
                "dead_channels": (spread <= 1e-6 * (1.0 + channels.abs().amax(1))).float().mean().item(),
            }
        return hook


@torch.no_grad()
def validate(model, images, labels, masks, criterion) -> dict:
    model.eval()
    predictions, loss, hits = [], 0.0, []
    for start in range(0, len(images), 64):
        out = model(images[start : start + 64])
        predicted = out.logits.argmax(1)
        predictions.append(predicted)
        loss += criterion(out.logits, labels[start : start + 64]).item() * len(predicted)
        peaks = out.heatmaps[torch.arange(len(predicted)), predicted].flatten(1).argmax(1)
        for mask, peak, cls in zip(masks[start : start + 64].flatten(1), peaks, predicted):
            if mask.any():
                hits.append(bool(cls != 0 and mask[peak]))
    model.train()
    predicted, truth = torch.cat(predictions).numpy(), labels.numpy()
    return {
        "val_loss": loss / len(truth),
        "val_macro_f1": float(f1_score(truth, predicted, average="macro")),
        "predicted_counts": np.bincount(predicted, minlength=3).tolist(),
        "tumour_accuracy": float(((predicted > 0) == (truth > 0)).mean()),
        "pointing_game": float(np.mean(hits)),
    }


def run(args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    dataset = open_dataset(args.data, channels=CHANNELS, image_size=args.size)
    split = split_patients(dataset, seed=args.seed)
    train_images, train_labels = load(dataset.subset(split["train"]))
    val_images, val_labels, val_masks = load(dataset.subset(split["val"]), masks=True)
    options = {"width": args.width} | ({"upsample": args.upsample} if args.upsample else {})
    model = create_model(args.arch, in_channels=len(CHANNELS), num_classes=3, **options)
    reinitialise(model, args.init)
    weights = balanced_class_weights(train_labels.numpy(), 3)
    criterion = nn.CrossEntropyLoss(weight=torch.tensor(weights, dtype=torch.float32))
    steps_per_epoch = math.ceil(len(train_images) / args.batch_size)
    total = int(args.epochs * steps_per_epoch)
    settings = TrainOptions(arch=args.arch, data=Path(args.data), out=Path(args.out), recipe=args.recipe,
                            optimizer=args.optimizer, weight_decay=args.weight_decay, warmup_steps=args.warmup_steps).resolved()
    optimizer = build_optimizer(model, settings)
    schedule = LearningRate(settings, total)
    recorder = Recorder(model)
    shuffle, augment = torch.Generator().manual_seed(args.seed), torch.Generator().manual_seed(args.seed + 1)
    log = {"args": vars(args), "settings": settings.hyperparameters(), "records": [], "epochs": []}
    order, position, losses, start = torch.randperm(len(train_images), generator=shuffle), 0, [], time.perf_counter()
    model.train()
    for step in range(total):
        if position + args.batch_size > len(order):
            order, position = torch.randperm(len(train_images), generator=shuffle), 0
        index = order[position : position + args.batch_size]
        position += args.batch_size
        images = augment_batch(train_images[index], augment, settings.rotation_degrees)
        record = step % args.every == 0 or step == total - 1
        recorder.armed, recorder.stats = record, {}
        out = model(images)
        loss = criterion(out.logits, train_labels[index])
        optimizer.zero_grad()
        loss.backward()
        if record:
            entry = {"step": step, "loss": loss.item(), "logit_spread": out.logits.std(0).mean().item(),
                     "layers": dict(recorder.stats), "params": {}}
            for name, param in model.named_parameters():
                grad = param.grad
                entry["params"][name] = {
                    "weight_rms": param.detach().pow(2).mean().sqrt().item(),
                    "grad_rms": grad.pow(2).mean().sqrt().item(),
                    "clipped": (grad.abs() >= settings.clip_value).float().mean().item() if settings.clip_value else 0.0,
                    "below_1e-30": (param.detach().abs() < 1e-30).float().mean().item(),
                }
        if settings.clip_value:
            nn.utils.clip_grad_value_(model.parameters(), settings.clip_value)
        for group in optimizer.param_groups:
            group["lr"] = schedule(step)
        optimizer.step()
        losses.append(loss.item())
        if record:
            entry["mean_loss"] = float(np.mean(losses[-args.every :]))
            log["records"].append(entry)
            print(f"step {step} loss {entry['mean_loss']:.4f} ({time.perf_counter() - start:.0f} s)", flush=True)
        if (step + 1) % steps_per_epoch == 0 or step == total - 1:
            result = validate(model, val_images, val_labels, val_masks, criterion)
            result.update(step=step + 1, train_loss=float(np.mean(losses[-steps_per_epoch:])))
            log["epochs"].append(result)
            print("validation", result, flush=True)
    Path(args.out).write_text(json.dumps(log))


def show(path: Path, steps: list[int]) -> None:
    log = json.loads(path.read_text())
    records = {r["step"]: r for r in log["records"]}
    steps = [s for s in steps if s in records] + [max(records)]
    print("steps:", ", ".join(f"{s}: loss {records[s]['mean_loss']:.3f}, logit spread {records[s]['logit_spread']:.2f}" for s in steps))
    print(f"{'layer (output)':34s}" + "".join(f" | step {s}: rms pos dead" for s in steps))
    for name in records[steps[0]]["layers"]:
        cells = [records[s]["layers"].get(name) for s in steps]
        print(f"{name:34s}" + "".join(f" | {c['rms']:.1e} {c['positive']:.2f} {c['dead_channels']:.2f}" if c else " | -" for c in cells))
    print(f"{'weight':34s}" + "".join(f" | step {s}: w_rms g_rms clip" for s in steps))
    for name in records[steps[0]]["params"]:
        if name.endswith("weight") and "." in name:
            cells = [records[s]["params"][name] for s in steps]
            print(f"{name:34s}" + "".join(f" | {c['weight_rms']:.1e} {c['grad_rms']:.1e} {c['clipped']:.2f}" for c in cells))
    for epoch in log["epochs"]:
        print("validation", epoch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--show", type=Path, help="print the table of a written JSON file and exit")
    parser.add_argument("--steps", default="0,20,100,300", help="with --show: steps to tabulate")
    parser.add_argument("--data", help="BraTS-layout folder")
    parser.add_argument("--arch", default="gp-unet")
    parser.add_argument("--upsample", choices=["sinc", "transpose"])
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--init", choices=["gpedge", "torch", "he-all"], default="gpedge")
    parser.add_argument("--recipe", default="paper", help="recipe whose optimizer, lr, clipping and schedule are used")
    parser.add_argument("--optimizer", choices=["adam", "adamw"])
    parser.add_argument("--weight-decay", type=float)
    parser.add_argument("--warmup-steps", type=int)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--every", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1701)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", help="JSON file to write")
    args = parser.parse_args()
    if args.show:
        show(args.show, [int(s) for s in args.steps.split(",")])
    elif not (args.data and args.out):
        parser.error("--data and --out are needed to run")
    else:
        run(args)


if __name__ == "__main__":
    main()
