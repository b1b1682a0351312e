"""Data-parallel training under ``torchrun``: process group, rank helpers, sharding and reductions.

``gpedge train`` reads the variables ``torchrun`` sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``) and nothing else; without them, or with ``WORLD_SIZE=1``, it
is a single process and nothing here communicates.

Sharding keeps the single-process order: :class:`ShardSampler` deals out the order an ordinary
sampler would give one process, rank ``r`` taking positions ``r, r + W, r + 2W, ...``. With a
per-rank batch ``B``, batch ``k`` of all ranks together is then batch ``k`` of a single process
with batch ``B * W`` (the effective batch per optimizer step is ``B * W * accumulate``).
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from gpedge.errors import GpedgeError

_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class Ranks:
    """Where this process stands in the job: ``world_size == 1`` is a single-process run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        """Whether gradients and metrics are exchanged with other processes."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes the run folder and the log."""
        return self.rank == 0


def ranks_from_env() -> Ranks:
    """The ranks ``torchrun`` assigned (a single process when ``WORLD_SIZE`` is unset or 1)."""
    world = os.environ.get("WORLD_SIZE")
    if world is None or world == "1":
        return Ranks()
    missing = [name for name in _ENV if name not in os.environ]
    if missing:
        raise GpedgeError(
            f"WORLD_SIZE={world} but {', '.join(missing)} unset: start distributed training with torchrun "
            "(e.g. torchrun --nproc-per-node 2 -m gpedge.cli train ...), which sets them all"
        )
    try:
        return Ranks(int(os.environ["RANK"]), int(world), int(os.environ["LOCAL_RANK"]))
    except ValueError as exc:
        raise GpedgeError(f"torchrun variables RANK/WORLD_SIZE/LOCAL_RANK must be integers ({exc})") from exc


def device_for(ranks: Ranks, device: torch.device) -> torch.device:
    """The device of this rank: ``cuda:LOCAL_RANK`` when training on CUDA, else ``device``."""
    if ranks.active and device.type == "cuda":
        if ranks.local_rank >= torch.cuda.device_count():
            raise GpedgeError(
                f"LOCAL_RANK {ranks.local_rank} but only {torch.cuda.device_count()} CUDA devices on this node; "
                "pass --nproc-per-node at most the number of GPUs"
            )
        return torch.device("cuda", ranks.local_rank)
    return device


@contextmanager
def process_group(ranks: Ranks, device: torch.device) -> Iterator[None]:
    """Join the job's process group (NCCL on CUDA, gloo on CPU) for the duration of the block."""
    if not ranks.active:
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", device_id=device if device.type == "cuda" else None)
    try:
        yield
        dist.barrier()  # no rank tears its gloo pairs down while another still talks to it (SIGABRT on exit)
    finally:
        dist.destroy_process_group()


def barrier(ranks: Ranks) -> None:
    """Wait for every rank (no-op for a single process)."""
    if ranks.active:
        dist.barrier()


@contextmanager
def local_main_first(ranks: Ranks) -> Iterator[None]:
    """Run the block on each node's local rank 0 before the other ranks (they then reuse its slice cache)."""
    if ranks.local_rank:
        barrier(ranks)
    yield
    if not ranks.local_rank:
        barrier(ranks)


def all_reduce_sum(tensor: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """``tensor`` summed over ranks, in place (unchanged for a single process)."""
    if ranks.active:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def gather_sharded(tensor: torch.Tensor, total: int, ranks: Ranks) -> torch.Tensor:
    """Reassemble per-sample rows that :class:`ShardSampler` (``pad=False``) dealt out, in the original order.

    Rank ``r`` holds the rows of positions ``r, r + W, ...``; every rank gets all ``total`` rows.
    """
    if not ranks.active:
        return tensor
    rows = -(-total // ranks.world_size)
    padded = tensor.new_zeros((rows, *tensor.shape[1:]))
    padded[: len(tensor)] = tensor
    parts = [torch.empty_like(padded) for _ in range(ranks.world_size)]
    dist.all_gather(parts, padded)
    return torch.stack(parts, dim=1).flatten(0, 1)[:total]


def gather_objects(value: Any, ranks: Ranks) -> list[Any]:
    """``value`` of every rank, in rank order (``[value]`` for a single process)."""
    if not ranks.active:
        return [value]
    values: list[Any] = [None] * ranks.world_size
    dist.all_gather_object(values, value)
    return values


class ShardSampler(Sampler[int]):
    """This rank's share of the order ``inner`` gives: positions ``rank, rank + W, rank + 2W, ...``.

    With ``pad``, the order is first extended by its own head to a multiple of ``W`` (as
    :class:`torch.utils.data.DistributedSampler` does), so that every rank has as many samples and
    takes part in every gradient exchange; at most ``W - 1`` slices are then seen twice per epoch.
    Without ``pad`` (validation), ranks may hold one sample fewer and nothing is repeated.
    """

    def __init__(self, inner: Sampler[int], ranks: Ranks, pad: bool) -> None:
        self.inner, self.ranks, self.pad = inner, ranks, pad
        self.total = len(inner)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[int]:
        order = list(self.inner)
        while self.pad and len(order) % self.ranks.world_size:
            order += order[: self.ranks.world_size - len(order) % self.ranks.world_size]
        yield from order[self.ranks.rank :: self.ranks.world_size]

    def __len__(self) -> int:
        world, rank = self.ranks.world_size, self.ranks.rank
        return -(-self.total // world) if self.pad else len(range(rank, self.total, world))
