"""Data-parallel training under torchrun: sharding, and two real gloo processes against one process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import RandomSampler, SequentialSampler

from gpedge.errors import GpedgeError
from gpedge.train import TrainOptions, train
from gpedge.train.distributed import Ranks, ShardSampler, ranks_from_env

SIZE = 32
# Differences between the two runs come only from float32 summation order (DDP sums two
# half-batch gradients, each rank convolves 4 slices instead of 8): measured 1.3e-7 on the
# weights and 1.5e-8 relative on the loss. Sharding the wrong slices, drawing another
# augmentation or averaging per-rank class-weighted means instead of the global weighted mean
# moves every weight by up to one Adam step (lr 1e-3), far beyond these bounds.
LOSS_RTOL = 1e-5
WEIGHT_ATOL = 1e-5


def test_shards_of_one_order_make_the_single_process_batches():
    def order() -> RandomSampler:  # each rank's own loader generator, seeded alike
        return RandomSampler(range(11), generator=torch.Generator().manual_seed(3))

    single = list(order())
    samplers = [ShardSampler(order(), Ranks(rank, 2, rank), pad=True) for rank in range(2)]
    shards = [list(sampler) for sampler in samplers]
    assert [len(s) for s in shards] == [len(sampler) for sampler in samplers] == [6, 6]
    # Per-rank batch 2, two ranks: global batch k holds the same slices as single-process batch k (size 4).
    for k in range(2):
        assert sorted(shards[0][2 * k : 2 * k + 2] + shards[1][2 * k : 2 * k + 2]) == sorted(single[4 * k : 4 * k + 4])
    assert sorted(shards[0] + shards[1]) == sorted(single + single[:1])
    assert list(ShardSampler(order(), Ranks(), pad=True)) == single


def test_validation_shards_cover_every_slice_once():
    shards = [list(ShardSampler(SequentialSampler(range(7)), Ranks(rank, 3, rank), pad=False)) for rank in range(3)]
    assert shards == [[0, 3, 6], [1, 4], [2, 5]]
    assert [len(ShardSampler(SequentialSampler(range(7)), Ranks(rank, 3, rank), pad=False)) for rank in range(3)] == [3, 2, 2]


def test_ranks_come_from_the_torchrun_variables(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert ranks_from_env() == Ranks() and not Ranks().active
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert ranks_from_env() == Ranks()
    monkeypatch.setenv("WORLD_SIZE", "4")
    with pytest.raises(GpedgeError, match="RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT unset: start distributed training with torchrun"):
        ranks_from_env()
    for name, value in (("RANK", "3"), ("LOCAL_RANK", "1"), ("MASTER_ADDR", "10.0.0.1"), ("MASTER_PORT", "29500")):
        monkeypatch.setenv(name, value)
    assert ranks_from_env() == Ranks(rank=3, world_size=4, local_rank=1)
    assert not ranks_from_env().is_main


@pytest.fixture(scope="module")
def brats(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six synthetic BraTS patients: 40 training slices (22 healthy, 18 HGG: unequal class weights), 10 validation."""
    from gpedge.data import write_synthetic_brats

    root = tmp_path_factory.mktemp("brats") / "BraTS2020"
    write_synthetic_brats(root, 6, seed=5, size=SIZE, slices=10, lgg_fraction=0.0)
    return root


def _settings(data: Path, out: Path, epochs: int) -> dict:
    return dict(arch="gp-unet", data=data, out=out, image_size=SIZE, model_options={"width": 4, "dropout": 0.0},
                epochs=epochs, accumulate=2, workers=0)


def _torchrun(data: Path, out: Path, epochs: int, *extra: str) -> str:
    settings = _settings(data, out, epochs)
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "gpedge.cli", "train",
            "--arch", settings["arch"], "--data", str(data), "--out", str(out), "--image-size", str(SIZE), "--width", "4",
            "--dropout", "0", "--epochs", str(epochs), "--batch-size", "4", "--accumulate", "2", "--workers", "0", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _epochs(run_dir: Path) -> list[dict]:
    epochs = json.loads((run_dir / "metrics.json").read_text())["epochs"]
    return [{k: v for k, v in e.items() if k not in ("slices_per_s", "seconds")} for e in epochs]


def _assert_same_training(ddp: Path, single: Path) -> None:
    for mine, theirs in zip(_epochs(ddp), _epochs(single), strict=True):
        assert mine["epoch"] == theirs["epoch"] and mine["step"] == theirs["step"]
        assert mine["val_accuracy"] == theirs["val_accuracy"] and mine["val_macro_f1"] == theirs["val_macro_f1"]
        for key in ("train_loss", "val_loss"):
            assert mine[key] == pytest.approx(theirs[key], rel=LOSS_RTOL), key
    mine, theirs = (torch.load(run / "checkpoint.pt", weights_only=True)["model"] for run in (ddp, single))
    assert mine.keys() == theirs.keys()
    assert max((mine[k].float() - theirs[k].float()).abs().max().item() for k in mine) <= WEIGHT_ATOL


@pytest.mark.slow
def test_two_gloo_processes_train_like_one_process_with_the_same_global_batch_and_resume(brats, tmp_path, monkeypatch):
    monkeypatch.setenv("GPEDGE_CACHE", str(tmp_path / "cache"))
    single = train(TrainOptions(**_settings(brats, tmp_path / "single", epochs=2), batch_size=8, progress=False))

    ddp = tmp_path / "ddp"
    log = _torchrun(brats, ddp, 1)
    assert log.count("epoch 1/1") == 1, log  # rank 0 alone logs
    assert "effective batch 16 = 4 per process x 2 processes x 2 accumulated" in log
    assert sorted(p.name for p in ddp.iterdir()) == ["checkpoint.pt", "config.json", "metrics.json", "model.safetensors"]
    config = json.loads((ddp / "config.json").read_text())["train"]
    assert config["world_size"] == 2 and config["effective_batch"] == 16 and config["batch_size"] == 4
    assert len(torch.load(ddp / "checkpoint.pt", weights_only=True)["rng"]["ranks"]) == 2
    first = _epochs(ddp)[0]
    reference = _epochs(single)[0]
    assert first["step"] == reference["step"] == 3
    assert first["val_macro_f1"] == reference["val_macro_f1"]
    assert first["train_loss"] == pytest.approx(reference["train_loss"], rel=LOSS_RTOL)
    assert first["val_loss"] == pytest.approx(reference["val_loss"], rel=LOSS_RTOL)

    log = _torchrun(brats, ddp, 2, "--resume")
    assert log.count("epoch 2/2") == 1 and "epoch 1/2" not in log
    _assert_same_training(ddp, single)
