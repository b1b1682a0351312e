"""Training core: augmentation, class weights, learning on synthetic BraTS, determinism, resume, errors, CLI."""
from __future__ import annotations

import io
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console
from safetensors.torch import load_file
from typer.testing import CliRunner

from gpedge.cli import app
from gpedge.data import open_dataset
from gpedge import pretrained
from gpedge.errors import DataError, GpedgeError
from gpedge.runs import RunConfig, build_model, load_run
from gpedge.train import TrainOptions, train
from gpedge.train import trainer
from gpedge.train.augment import augment_batch
from gpedge.train.distil import Teacher, distil_loss
from gpedge.train.health import check_layers, dead_layers
from gpedge.train.losses import TOP_FRACTION, map_scores
from gpedge.train.trainer import balanced_class_weights, start_from, visible_tumours


def test_augmentation_without_rotation_only_flips_and_renormalises():
    images = torch.rand(64, 2, 8, 8) * 5
    out = augment_batch(images, torch.Generator().manual_seed(0), max_degrees=0.0)
    normalised = images / images.amax(dim=(1, 2, 3), keepdim=True)
    kinds = set()
    for original, moved in zip(normalised, out):
        candidates = {
            "none": original,
            "h": original.flip(-1),
            "v": original.flip(-2),
            "hv": original.flip(-1, -2),
        }
        match = [name for name, candidate in candidates.items() if torch.allclose(moved, candidate, atol=1e-5)]
        assert len(match) == 1
        kinds.add(match[0])
    assert kinds == {"none", "h", "v", "hv"}


def test_augmentation_rotates_reproducibly_from_its_generator():
    images = torch.zeros(4, 1, 32, 32)
    images[:, :, 14:18, 4:28] = 1.0
    first = augment_batch(images, torch.Generator().manual_seed(3), max_degrees=45.0)
    second = augment_batch(images, torch.Generator().manual_seed(3), max_degrees=45.0)
    assert torch.equal(first, second)
    assert first.shape == images.shape
    assert torch.allclose(first.amax(dim=(1, 2, 3)), torch.ones(4))
    bar_rows = (images[0, 0] > 0.5).any(dim=1).sum()
    assert all((moved[0] > 0.5).any(dim=1).sum() > bar_rows for moved in first)


def test_balanced_class_weights_follow_scikit_learn_and_tolerate_absent_classes():
    labels = np.array([0] * 6 + [2] * 2)
    weights = balanced_class_weights(labels, 3)
    np.testing.assert_allclose(weights, [8 / (2 * 6), 1.0, 8 / (2 * 2)])


PATIENTS = 24
SIZE = 32


@pytest.fixture(scope="module")
def brats(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic BraTS 2020 data set (real NIfTI files and name_mapping.csv), all patients HGG.

    Tumour detection from slice labels generalises across a handful of patients; grading
    (LGG vs HGG) does not at this size, so validation would measure noise. Tumours are at least
    25 mm in radius (3 pixels at 32 x 32, 7.5 mm per pixel): the generator's smallest lesions would be
    sub-pixel labels at this size (with the family's own sizes, the best validation macro-F1 was 0.65).
    """
    from gpedge.data import write_synthetic_brats

    root = tmp_path_factory.mktemp("brats") / "BraTS2020"
    write_synthetic_brats(root, PATIENTS, seed=5, size=64, slices=20, lgg_fraction=0.0, min_lesion_mm=25.0)
    return root


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: on a shared 2-core machine, spinning OpenMP threads slow training by orders of magnitude."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPEDGE_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def _options(data: Path, out: Path, **overrides) -> TrainOptions:
    settings = dict(
        arch="gp-unet",
        data=data,
        out=out,
        image_size=SIZE,
        model_options={"width": 4},
        epochs=2,
        max_steps=None,
        batch_size=8,
        accumulate=2,
        workers=0,
        progress=False,
    )
    settings.update(overrides)
    return TrainOptions(**settings)


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoint.pt", weights_only=True)["model"]


def _history(run_dir: Path) -> list[dict]:
    """Per-epoch metrics without the wall-clock fields."""
    epochs = json.loads((run_dir / "metrics.json").read_text())["epochs"]
    return [{k: v for k, v in e.items() if k not in ("slices_per_s", "seconds")} for e in epochs]


@pytest.mark.slow
def test_same_seed_gives_identical_weights_and_resume_continues_exactly(brats, tmp_path):
    first = train(_options(brats, tmp_path / "a"))
    second = train(_options(brats, tmp_path / "b"))
    train(_options(brats, tmp_path / "c", epochs=1))
    resumed = train(_options(brats, tmp_path / "c", resume=True))
    reference = _weights(first)
    for other in (second, resumed):
        other_weights = _weights(other)
        assert reference.keys() == other_weights.keys()
        assert all(torch.equal(reference[k], other_weights[k]) for k in reference)
    assert _history(resumed) == _history(first)
    assert [e["epoch"] for e in _history(resumed)] == [1, 2]
    different = train(_options(brats, tmp_path / "d", seed=7))
    assert not all(torch.equal(reference[k], _weights(different)[k]) for k in reference)


def test_map_scores_average_the_top_share_of_each_class_map():
    heatmaps = torch.randn(3, 2, 40, 50, generator=torch.Generator().manual_seed(3))
    k = int(np.ceil(TOP_FRACTION * 40 * 50))
    flat = heatmaps.flatten(2).numpy()
    expected = np.sort(flat, axis=2)[..., -k:].mean(axis=2)
    np.testing.assert_allclose(map_scores(heatmaps).numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(map_scores(heatmaps, 1e-9).numpy(), flat.max(axis=2), rtol=1e-6)


def test_map_loss_is_part_of_the_objective_and_recorded(brats, tmp_path):
    """--map-loss changes the updates (the heatmaps get a gradient of their own) and is recorded in config.json."""
    without = train(_options(brats, tmp_path / "a", epochs=1, max_steps=2, map_loss=0.0))
    with_map = train(_options(brats, tmp_path / "b", epochs=1, max_steps=2, map_loss=1.0))
    a, b = _weights(without), _weights(with_map)
    assert not all(torch.equal(a[k], b[k]) for k in a)
    assert load_run(with_map)[1].train["map_loss"] == 1.0 and load_run(without)[1].train["map_loss"] == 0.0
    assert TrainOptions(arch="gp-unet", data=brats, out=tmp_path, recipe="paper").resolved().map_loss == 0.0
    with pytest.raises(GpedgeError, match="--map-loss must be 0"):
        train(_options(brats, tmp_path / "c", map_loss=-1.0))


def test_map_top_sets_the_share_the_heatmap_term_averages(brats, tmp_path):
    """--map-top changes the updates (a wider top share scores other pixels) and is recorded; out of (0, 1] is refused."""
    default = train(_options(brats, tmp_path / "a", epochs=1, max_steps=2, map_loss=1.0))
    wider = train(_options(brats, tmp_path / "b", epochs=1, max_steps=2, map_loss=1.0, map_top=0.2))
    a, b = _weights(default), _weights(wider)
    assert not all(torch.equal(a[k], b[k]) for k in a)
    assert load_run(default)[1].train["map_top"] == TOP_FRACTION and load_run(wider)[1].train["map_top"] == 0.2
    for bad in (0.0, 1.5):
        with pytest.raises(GpedgeError, match="--map-top must be a share"):
            train(_options(brats, tmp_path / "c", map_top=bad))


def test_min_tumour_px_leaves_small_sections_out_of_training_only(brats, tmp_path):
    """Tumour slices whose mask is under the threshold leave the training split, and only them; validation keeps all."""
    data = open_dataset(brats, image_size=SIZE)
    areas = np.array([int(data.mask(i).sum()) for i in range(len(data))])
    tumour = data.labels != data.no_tumour_class
    threshold = int(np.median(areas[tumour]))
    kept, left_out = visible_tumours(data, threshold)
    assert left_out == int((tumour & (areas < threshold)).sum()) > 0
    kept_keys = {(r.patient, r.slice) for r in kept.records}
    assert kept_keys == {(r.patient, r.slice) for r, t, a in zip(data.records, tumour, areas) if not t or a >= threshold}
    assert visible_tumours(data, 0) == (data, 0)

    run = train(_options(brats, tmp_path / "run", epochs=1, max_steps=1, min_tumour_px=threshold))
    config = load_run(run)[1]
    train_slices = open_dataset(brats, image_size=SIZE).subset(config.split["train"])
    assert config.dataset["training_slices_left_out"] == visible_tumours(train_slices, threshold)[1] > 0
    assert config.train["min_tumour_px"] == threshold
    with pytest.raises(DataError, match="leaves no HGG slice"):
        train(_options(brats, tmp_path / "none", min_tumour_px=SIZE * SIZE + 1))
    assert not (tmp_path / "none" / "model.safetensors").exists()


def test_init_from_starts_from_another_runs_weights_and_refuses_another_network(brats, tmp_path):
    source = train(_options(brats, tmp_path / "source", epochs=1, max_steps=1))
    trained, config = load_run(source)
    model = build_model(config)
    assert not all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), trained.state_dict().values()))
    start_from(model, _options(brats, tmp_path / "unused", init_from=source), open_dataset(brats, image_size=SIZE))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), trained.state_dict().values()))

    run = train(_options(brats, tmp_path / "run", epochs=1, max_steps=1, image_size=SIZE // 2, init_from=source))
    assert load_run(run)[1].train["init_from"] == str(source.resolve())
    for overrides, what in (({"model_options": {"width": 8}}, "network options"), ({"channels": ["t1ce"]}, "--channels")):
        with pytest.raises(GpedgeError, match=what):
            train(_options(brats, tmp_path / "other", init_from=source, **overrides))
        assert not (tmp_path / "other").exists()
    with pytest.raises(GpedgeError, match="--init-from"):
        train(_options(brats, tmp_path / "other", init_from=tmp_path / "missing"))


@pytest.mark.parametrize("name", sorted(pretrained.PRETRAINED))
def test_init_from_a_bundled_network_verifies_and_loads_it(brats, tmp_path, monkeypatch, name):
    folder = pretrained.resolve_init(name)
    shipped, config = load_run(folder)
    model = build_model(config)
    options = _options(brats, tmp_path / "run", epochs=1, max_steps=1, model_options=config.model_options,
                       channels=config.channels, init_from=name)
    start_from(model, options, open_dataset(brats, image_size=SIZE, channels=config.channels))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), shipped.state_dict().values()))
    assert load_run(train(options))[1].train["init_from"] == name

    copy = tmp_path / "assets" / name
    shutil.copytree(folder, copy)
    (copy / "model.safetensors").write_bytes((copy / "model.safetensors").read_bytes()[:-1] + b"\0")
    monkeypatch.setattr(pretrained, "PRETRAINED_ROOT", tmp_path / "assets")
    with pytest.raises(GpedgeError, match=f"--init-from {name}: .*sha256"):
        pretrained.resolve_init(name)
    with pytest.raises(GpedgeError, match=f"--distil-from {name}: .*sha256"):
        Teacher.load(name, ["t1ce"], config.class_names, torch.device("cpu"))


def test_a_run_written_before_an_option_existed_loads_as_the_default(brats, tmp_path):
    source = train(_options(brats, tmp_path / "source", epochs=1, max_steps=1))
    written = json.loads((source / "config.json").read_text())
    assert written["model_options"]["norm"] == "none"
    del written["model_options"]["norm"]
    (source / "config.json").write_text(json.dumps(written))
    assert RunConfig.load(source).model_options == load_run(source)[0].config["options"]
    run = train(_options(brats, tmp_path / "run", epochs=1, max_steps=1, init_from=source))
    assert load_run(run)[1].model_options["norm"] == "none"


def test_amp_on_the_cpu_trains_in_bfloat16_and_keeps_float32_weights(brats, tmp_path, monkeypatch):
    """Where the CPU has bfloat16 in hardware ``--amp`` autocasts to it (forced here, so the test runs on any CPU):
    the run records it, the weights stay float32 and differ from the float32 run of the same seed, and a
    resumed run ends where the uninterrupted one does."""
    monkeypatch.setattr(trainer, "native_bf16", lambda: True)
    mixed = train(_options(brats, tmp_path / "bf16", device="cpu", amp=True))
    plain = train(_options(brats, tmp_path / "fp32", device="cpu"))
    train(_options(brats, tmp_path / "resumed", device="cpu", amp=True, epochs=1))
    resumed = train(_options(brats, tmp_path / "resumed", device="cpu", amp=True, resume=True))
    assert all(torch.equal(v, _weights(resumed)[k]) for k, v in _weights(mixed).items())
    assert RunConfig.load(mixed).train["amp"] == "bfloat16" and RunConfig.load(plain).train["amp"] is None
    mixed_weights, plain_weights = _weights(mixed), _weights(plain)
    assert all(v.dtype == plain_weights[k].dtype for k, v in mixed_weights.items())
    assert not all(torch.equal(v, plain_weights[k]) for k, v in mixed_weights.items())
    assert all(math.isfinite(e["train_loss"]) and math.isfinite(e["val_loss"]) for e in _history(mixed))


def test_amp_on_a_cpu_without_bfloat16_is_refused_or_ignored(brats, tmp_path, monkeypatch):
    monkeypatch.setattr(trainer, "native_bf16", lambda: False)
    with pytest.raises(GpedgeError, match="--amp on the CPU needs bfloat16 in hardware .* drop --amp"):
        train(_options(brats, tmp_path / "cpu", device="cpu", amp=True))
    assert not (tmp_path / "cpu").exists()
    if not torch.cuda.is_available():
        out = io.StringIO()
        run = train(_options(brats, tmp_path / "auto", device="auto", amp=True, max_steps=1), Console(file=out))
        assert "--amp ignored, training in float32" in out.getvalue()
        assert RunConfig.load(run).train["amp"] is None


def test_compiled_steps_train_the_eager_network(brats, tmp_path):
    """``--compile`` runs the training steps through TorchInductor (GP-UNet's default sinc upsampling included,
    whose matrices are built at the first call): the run records it, and its weights after four optimizer steps
    match the eager run of the same seed to within a thousandth of one step's size (AdamW moves a weight by
    up to lr = 1e-3 per step)."""
    options = dict(epochs=1, max_steps=4, accumulate=1, clip_value=0.0, recipe="cpu", warmup_steps=0)
    eager = train(_options(brats, tmp_path / "eager", **options))
    compiled = train(_options(brats, tmp_path / "compiled", compile=True, **options))
    assert RunConfig.load(compiled).train["compile"] is True and RunConfig.load(eager).train["compile"] is False
    eager_weights, compiled_weights = _weights(eager), _weights(compiled)
    assert eager_weights.keys() == compiled_weights.keys()
    for key, value in eager_weights.items():
        torch.testing.assert_close(compiled_weights[key], value, rtol=0, atol=1e-6)


def test_a_diverging_run_stops_with_an_error_that_names_the_step_and_the_fix(brats, tmp_path):
    """A learning rate of 1e30 sends the weights to overflow within a few steps: the run stops at the first
    non-finite loss instead of saving a network of NaNs as its best."""
    with pytest.raises(GpedgeError, match=r"training loss is not finite at optimizer step \d+ of epoch 1: .* lower --lr"):
        train(_options(brats, tmp_path / "run", epochs=1, lr=1e30, accumulate=1, clip_value=0.0))
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_max_steps_stops_training_and_accumulation_counts_optimizer_steps(brats, tmp_path):
    run = train(_options(brats, tmp_path / "run", epochs=5, max_steps=3, accumulate=2))
    history = _history(run)
    assert len(history) == 1 and history[0]["step"] == 3
    saved = torch.load(run / "checkpoint.pt", weights_only=True)
    assert saved["state"]["step"] == 3
    assert all(s["step"] == 3 for s in saved["optimizer"]["state"].values())


@pytest.mark.slow
def test_cli_training_learns_tumour_slices_from_image_labels(brats, tmp_path):
    run_dir = tmp_path / "run"
    args = ["train", "--arch", "gp-reconresnet", "--data", str(brats), "--out", str(run_dir), "--image-size", str(SIZE),
            "--width", "8", "--epochs", "6", "--batch-size", "8", "--accumulate", "1", "--workers", "0"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "best validation macro-F1" in result.output

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert len(metrics["epochs"]) == 6
    best = metrics["best"]
    assert best["val_macro_f1"] == max(e["val_macro_f1"] for e in metrics["epochs"])
    # Healthy vs HGG slices: a uniform guess scores 0.5, one class for everything at most 0.4.
    assert best["val_macro_f1"] >= 0.7, metrics

    model, config = load_run(run_dir)
    assert config.arch == "gp-reconresnet" and config.model_options["width"] == 8
    assert config.channels == ["t1", "t2", "t1ce", "flair"] and config.class_names == ["Healthy", "LGG", "HGG"]
    assert config.image_size == SIZE and config.no_tumour_class == 0
    assert config.train["lr"] == 1e-3 and config.train["weight_decay"] == 5e-4 and config.train["seed"] == 1701
    parts = [set(config.split[name]) for name in ("train", "val", "test")]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert set().union(*parts) == {p.name for p in brats.iterdir() if p.is_dir()}

    best_state = load_file(str(run_dir / "model.safetensors"))
    assert all(torch.equal(best_state[k], v) for k, v in model.state_dict().items())
    val = open_dataset(brats, image_size=SIZE).subset(config.split["val"])
    images = torch.as_tensor(np.stack([val[i]["image"] for i in range(len(val))]))
    with torch.no_grad():
        predicted = model(images).logits.argmax(dim=1).numpy()
    from sklearn.metrics import f1_score
    assert f1_score(val.labels, predicted, average="macro") == pytest.approx(best["val_macro_f1"], abs=1e-6)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"arch": "gp-vnet"}, "unknown --arch 'gp-vnet'; choose one of gp-unet, gp-shuffle-unet, gp-reconresnet"),
        ({"channels": ["t1", "dwi"]}, "dwi"),
        ({"image_size": 30}, "--image-size 30 does not suit gp-unet: it must be a multiple of 4"),
        ({"model_options": {"levels": 2}}, "valid options: width, depth, upsample, dropout"),
        ({"batch_size": 0}, "--batch-size must be a positive integer"),
        ({"resume": True}, "nothing to resume|not found; run without --resume"),
    ],
)
def test_bad_settings_raise_clear_errors(brats, tmp_path, overrides, message):
    with pytest.raises(GpedgeError, match=message):
        train(_options(brats, tmp_path / "run", **overrides))
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_missing_data_is_reported_with_its_path(tmp_path):
    missing = tmp_path / "no-such-folder"
    with pytest.raises(GpedgeError, match=f"{missing}.*does not exist"):
        train(_options(missing, tmp_path / "run"))


def test_existing_run_is_not_overwritten_and_resume_checks_settings(brats, tmp_path):
    run = train(_options(brats, tmp_path / "run", max_steps=1))
    with pytest.raises(GpedgeError, match="already holds a training run; pass --resume"):
        train(_options(brats, run))
    with pytest.raises(GpedgeError, match="was trained with model_options="):
        train(_options(brats, run, resume=True, model_options={"width": 8}))


def test_cli_network_options_reach_the_network_and_a_foreign_one_is_refused(brats, tmp_path):
    common = ["--data", str(brats), "--image-size", str(SIZE), "--width", "4", "--epochs", "1", "--max-steps", "1",
              "--workers", "0"]
    result = CliRunner().invoke(app, ["train", "--arch", "gp-reconresnet", "--num-res-blocks", "2", "--dropout", "0",
                                      "--out", str(tmp_path / "run"), *common])
    assert result.exit_code == 0, result.output
    options = load_run(tmp_path / "run")[0].config["options"]
    assert (options["num_res_blocks"], options["dropout"], options["width"]) == (2, 0.0, 4)
    result = CliRunner().invoke(app, ["train", "--arch", "gp-unet", "--num-res-blocks", "2", "--out", str(tmp_path / "u"),
                                      *common])
    assert result.exit_code != 0 and "does not take option(s) num_res_blocks" in str(result.exception)
    assert not (tmp_path / "u").exists()


def test_cli_reports_user_errors_in_one_line_with_exit_code_2(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "gpedge.cli", "train", "--arch", "gp-unet", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "does not exist" in lines[0]


def test_train_command_module_does_not_import_torch():
    code = "import sys, gpedge.commands.train; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_dead_layer_check_names_killed_layers_and_is_silent_on_a_trained_model(tiny_run_dir):
    model, _ = load_run(tiny_run_dir)
    from conftest import make_slices
    from gpedge.preprocess import normalise_slice_max

    images = torch.from_numpy(normalise_slice_max(make_slices(8, seed=4).images))
    assert dead_layers(check_layers(model, images)) == {}

    with torch.no_grad():
        model.body.down[1][0][0].weight.fill_(1e-40)  # sunk into denormals, as under Adam + L2
        model.body.up[0].conv[1][0].bias.fill_(-1e3)  # its ReLU never fires
    reports = {r.layer: r for r in check_layers(model, images)}
    dead = dead_layers(reports.values())
    assert reports["body.down.1.0.0"].denormal_weights == 1.0
    assert "of its weights are ~0" in " ".join(dead["body.down.1.0.0"])
    assert dead["body.up.0.conv.1.1"] == ["100% of its output channels are constant"]
    assert "body.up.0.conv.1.0" not in dead and "body.down.0.0.0" not in dead
    assert model.training is False


def test_training_warns_about_dead_layers_and_records_them(brats, tmp_path):
    run = train(_options(brats, tmp_path / "run", epochs=1, max_steps=2))
    assert json.loads((run / "metrics.json").read_text())["health"]["dead_layers"] == {}
    checkpoint = torch.load(run / "checkpoint.pt", weights_only=True)
    checkpoint["model"]["body.down.1.1.0.weight"].zero_()
    torch.save(checkpoint, run / "checkpoint.pt")

    output = io.StringIO()
    train(_options(brats, run, epochs=2, max_steps=4, lr=1e-12, resume=True), console=Console(file=output, width=400))
    assert "warning: 2 dead layer(s)" in output.getvalue() and "body.down.1.1.0: 100% of its weights are ~0" in output.getvalue()
    metrics = json.loads((run / "metrics.json").read_text())
    killed = ["body.down.1.1.0", "body.down.1.1.1"]  # the convolution and the ReLU it feeds
    assert list(metrics["epochs"][-1]["dead_layers"]) == killed
    assert list(metrics["health"]["dead_layers"]) == killed
    layers = {entry["layer"]: entry for entry in metrics["health"]["layers"]}
    assert layers["body.down.1.1.0"]["dead"] and not layers["body.down.1.0.0"]["dead"]


def test_scanner_augmentation_varies_each_contrast_and_keeps_the_paper_stream():
    """``scanner`` zooms and changes each channel's gamma and gain, reproducibly; ``paper`` draws exactly what it drew
    before (its stream of rotations and flips is untouched by the new options)."""
    from gpedge.train.augment import AUGMENTATIONS

    images = torch.rand(16, 2, 32, 32) + 0.1
    paper = augment_batch(images, torch.Generator().manual_seed(5), max_degrees=0.0)
    scanner = [augment_batch(images, torch.Generator().manual_seed(5), 0.0, intensity=AUGMENTATIONS["scanner"]) for _ in range(2)]
    assert torch.equal(scanner[0], scanner[1])
    assert torch.allclose(scanner[0].amax(dim=(1, 2, 3)), torch.ones(16))
    flips_only = augment_batch(images, torch.Generator().manual_seed(5), max_degrees=0.0, intensity=AUGMENTATIONS["paper"])
    assert torch.equal(paper, flips_only)
    # per channel, the ratio of the two contrasts' brightness changes from slice to slice
    ratio = lambda x: x[:, 0].mean(dim=(1, 2)) / x[:, 1].mean(dim=(1, 2))  # noqa: E731
    assert (ratio(scanner[0]) / ratio(paper)).std() > 0.05
    # gamma and gain keep the order of intensities within a channel (same seed: the same flips as the paper's)
    one = AUGMENTATIONS["scanner"].__class__(gamma=0.4, gain=0.2)
    graded = torch.linspace(0.1, 1.0, 32 * 32).reshape(1, 1, 32, 32).repeat(4, 1, 1, 1)
    out = augment_batch(graded, torch.Generator().manual_seed(2), max_degrees=0.0, intensity=one).reshape(4, -1)
    ref = augment_batch(graded, torch.Generator().manual_seed(2), max_degrees=0.0).reshape(4, -1)
    assert not torch.allclose(out, ref, atol=1e-3)
    assert all(torch.equal(torch.argsort(a), torch.argsort(b)) for a, b in zip(out, ref))


def test_gain_augmentation_only_rescales_each_channel():
    """``gain`` multiplies each channel of each slice by its own factor in [e^-0.9, e^0.9] (then the joint maximum
    divides): within a channel the image is the paper's flipped image times a constant."""
    from gpedge.train.augment import AUGMENTATIONS

    images = torch.rand(32, 3, 16, 16) + 0.1
    flipped = augment_batch(images, torch.Generator().manual_seed(4), max_degrees=0.0)
    gained = augment_batch(images, torch.Generator().manual_seed(4), 0.0, intensity=AUGMENTATIONS["gain"])
    factor = gained / flipped
    per_channel = factor.mean(dim=(2, 3), keepdim=True)
    assert torch.allclose(factor, per_channel.expand_as(factor), rtol=1e-4)
    relative = per_channel[:, :, 0, 0] / per_channel[:, :1, 0, 0]  # each channel against the first, per slice
    assert relative.min() >= math.exp(-1.8) - 1e-4 and relative.max() <= math.exp(1.8) + 1e-4
    assert relative[:, 1:].log().std() > 0.3


def test_distil_loss_is_zero_for_the_teachers_own_outputs_whatever_its_maps_scale():
    from types import SimpleNamespace

    gen = torch.Generator().manual_seed(0)
    logits, maps = torch.randn(4, 3, generator=gen), torch.randn(4, 3, 16, 16, generator=gen)
    student = SimpleNamespace(logits=logits.clone().requires_grad_(), heatmaps=maps.clone().requires_grad_())
    same = SimpleNamespace(logits=logits, heatmaps=3.0 * maps + 2.0)
    assert distil_loss(student, same).item() == pytest.approx(0.0, abs=1e-5)
    coarse = SimpleNamespace(logits=logits, heatmaps=torch.nn.functional.avg_pool2d(maps, 2))
    assert distil_loss(student, coarse).item() > 0  # compared at the student's resolution
    other = SimpleNamespace(logits=torch.randn(4, 3, generator=gen), heatmaps=torch.randn(4, 3, 16, 16, generator=gen))
    loss = distil_loss(student, other)
    loss.backward()
    assert loss.item() > 1.0 and student.heatmaps.grad.abs().sum() > 0 and student.logits.grad.abs().sum() > 0


def test_the_students_input_is_its_channels_of_the_teachers_slice_normalised_alone(brats):
    full = open_dataset(brats, image_size=SIZE, channels=["t1", "t2", "t1ce", "flair"])
    alone = open_dataset(brats, image_size=SIZE, channels=["flair", "t1ce"])
    teacher = Teacher(torch.nn.Identity(), full.channels, alone.channels)
    for index in (0, 7, len(full) - 1):
        derived = teacher.student_input(torch.as_tensor(full[index]["image"])[None])[0]
        torch.testing.assert_close(derived, torch.as_tensor(alone[index]["image"]), rtol=1e-6, atol=1e-6)


def test_distillation_teaches_a_one_channel_student_the_teachers_maps_and_refuses_a_teacher_it_cannot_use(brats, tmp_path):
    contrasts = ["t1", "t2", "t1ce", "flair"]
    source = train(_options(brats, tmp_path / "teacher", epochs=1, channels=contrasts))
    common = dict(epochs=1, max_steps=48, accumulate=1, channels=["t1ce"], distil_from=str(source))
    taught = train(_options(brats, tmp_path / "taught", distil_weight=10.0, **common))
    plain = train(_options(brats, tmp_path / "plain", distil_weight=0.0, **common))
    assert load_run(taught)[1].train["distil_from"] == str(source.resolve())

    teacher = Teacher.load(source, ["t1ce"], load_run(source)[1].class_names, torch.device("cpu"))
    data = open_dataset(brats, image_size=SIZE, channels=contrasts)
    full = torch.as_tensor(np.stack([data[i]["image"] for i in range(0, len(data), 5)]))
    images = teacher.student_input(full)
    with torch.no_grad():
        target = teacher(full)
        gaps = {name: distil_loss(load_run(run)[0].eval()(images), target).item() for name, run in (("taught", taught), ("plain", plain))}
    assert gaps["taught"] < 0.7 * gaps["plain"], gaps

    one_channel = train(_options(brats, tmp_path / "t1ce-teacher", epochs=1, max_steps=1, channels=["t1ce"]))
    with pytest.raises(GpedgeError, match=r"--distil-from .*without \['flair'\]"):
        train(_options(brats, tmp_path / "other", channels=["flair"], distil_from=str(one_channel)))
    with pytest.raises(GpedgeError, match="--distil-from"):
        train(_options(brats, tmp_path / "other", channels=["t1ce"], distil_from=str(tmp_path / "missing")))
    with pytest.raises(GpedgeError, match="--distil-weight"):
        train(_options(brats, tmp_path / "other", channels=["t1ce"], distil_from=str(source), distil_weight=-1.0))
    assert not (tmp_path / "other").exists()
