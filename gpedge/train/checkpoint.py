"""Resumable training state: ``checkpoint.pt`` of plain tensors and containers (``weights_only`` loadable)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gpedge.atomic import atomic_write
from gpedge.errors import GpedgeError
from gpedge.train.distributed import Ranks

CHECKPOINT = "checkpoint.pt"


@dataclass
class TrainState:
    """Where a run stands at the end of an epoch."""

    epoch: int = 0
    step: int = 0
    best_f1: float = -1.0
    best_epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


def process_rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    """This process's own random state (dropout draws): the CPU generator and that of ``device``."""
    rng = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    return rng


def save_checkpoint(
    run_dir: Path,
    model,
    optimizer,
    scaler,
    state: TrainState,
    generators: dict[str, torch.Generator],
    rank_rng: list[dict[str, torch.Tensor]] | None = None,
) -> None:
    """Write model, optimizer, AMP scaler, progress and every RNG state atomically.

    ``rank_rng`` (distributed runs): :func:`process_rng_state` of every rank, in rank order.
    """
    rng = {name: gen.get_state() for name, gen in generators.items()}
    if rank_rng is not None:
        rng["ranks"] = rank_rng
    else:
        rng["torch"] = torch.get_rng_state()
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
    payload = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "state": {
            "epoch": state.epoch,
            "step": state.step,
            "best_f1": state.best_f1,
            "best_epoch": state.best_epoch,
            "history": state.history,
        },
        "rng": rng,
    }
    atomic_write(run_dir / CHECKPOINT, lambda fh: torch.save(payload, fh))


def load_checkpoint(
    run_dir: Path,
    model,
    optimizer,
    scaler,
    generators: dict[str, torch.Generator],
    device: torch.device,
    ranks: Ranks = Ranks(),
    seed: int = 0,
) -> TrainState:
    """Restore what :func:`save_checkpoint` wrote into the given objects and return the progress.

    Every rank of a distributed run loads the same file. Each takes back its own random state
    when the checkpoint has one per rank for as many ranks; otherwise (another number of
    processes, or a single-process checkpoint) rank ``r`` restarts its stream from ``seed + r``.
    """
    path = run_dir / CHECKPOINT
    if not path.is_file():
        raise GpedgeError(f"{path} not found: nothing to resume in {run_dir}; run without --resume to start training")
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        scaler.load_state_dict(payload["scaler"])
        rng = payload["rng"]
        for name, gen in generators.items():
            gen.set_state(rng[name].cpu())
        if ranks.active:
            _restore_rank_rng(rng.get("ranks"), ranks, device, seed)
        elif "torch" in rng:
            torch.set_rng_state(rng["torch"].cpu())
            if "cuda" in rng and torch.cuda.is_available():
                torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])
        else:
            _restore_rank_rng(rng["ranks"], Ranks(), device, seed)
        return TrainState(**payload["state"])
    except (RuntimeError, KeyError, TypeError, ValueError, EOFError) as exc:
        raise GpedgeError(f"{path} cannot be resumed ({exc}); it is damaged or from another model, start a new run") from exc


def _restore_rank_rng(saved: list[dict[str, torch.Tensor]] | None, ranks: Ranks, device: torch.device, seed: int) -> None:
    if saved is None or len(saved) != ranks.world_size:
        torch.manual_seed(seed + ranks.rank)
        return
    own = saved[ranks.rank]
    torch.set_rng_state(own["torch"].cpu())
    if "cuda" in own and device.type == "cuda":
        torch.cuda.set_rng_state(own["cuda"].cpu(), device)
