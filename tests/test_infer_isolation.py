"""``gpedge infer`` processes each input on its own: a failure to read, run or write one input is one
line on stderr naming it, leaves none of its outputs, and the other inputs are still processed;
files gpedge did not write in this call are never replaced without ``--overwrite``."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import pytest

from conftest import EXAMPLE_SCAN

UNSHARE = shutil.which("unshare")


def infer(*args: str | Path, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    command = [*prefix, sys.executable, "-m", "gpedge.cli", "infer", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def error_lines(done: subprocess.CompletedProcess) -> list[str]:
    assert "Traceback" not in done.stderr, done.stderr
    return done.stderr.strip().splitlines()


@pytest.fixture(scope="module")
def noisy_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 256 x 256 image of noise inside a disc: its overlay PNG is large (about 0.6 MB)."""
    path = tmp_path_factory.mktemp("noisy") / "noisy.png"
    yy, xx = np.mgrid[:256, :256]
    disc = ((yy - 128) ** 2 + (xx - 128) ** 2) < 110**2
    image = np.random.default_rng(5).integers(40, 255, (256, 256)) * disc
    cv2.imwrite(str(path), image.astype(np.uint8))
    return path


def _mounted(mount: str, folder: Path, *args: str | Path) -> subprocess.CompletedProcess:
    """``gpedge infer`` in a private mount namespace where ``folder`` is a fresh tmpfs (``mount``: its options)."""
    if UNSHARE is None or subprocess.run([UNSHARE, "-rm", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare -rm (user and mount namespaces) is not available here: no private tmpfs for this test")
    folder.mkdir(parents=True, exist_ok=True)
    script = f'mount -t tmpfs -o {mount} tmpfs "{folder}" && exec "$@"'
    return infer(*args, prefix=(UNSHARE, "-rm", "sh", "-c", script, "sh"))


def test_out_is_a_file_fails_each_input_in_one_line(tmp_path: Path, noisy_png: Path) -> None:
    target = tmp_path / "results.txt"
    target.write_text("not a folder")
    done = infer(EXAMPLE_SCAN, noisy_png, "--out", target, "--backend", "onnxruntime")
    assert done.returncode == 2
    errors = error_lines(done)
    assert len(errors) == 2, done.stderr
    for line, name in zip(errors, ("hgg_flair", "noisy")):
        assert line.startswith("error: ") and name in line and "output folder" in line
    assert target.read_text() == "not a folder"
    assert "label" not in done.stdout  # no result, so no (empty) results table


def test_disk_full_leaves_no_partial_set_and_the_next_input_runs(tmp_path: Path, noisy_png: Path) -> None:
    """On a 400 kB file system the example's outputs (about 175 kB) fit, the noisy image's (about 0.8 MB) do not."""
    out = tmp_path / "small-disk"
    done = _mounted("size=400k", out, noisy_png, EXAMPLE_SCAN, "--out", out, "--json", "--backend", "onnxruntime")
    assert done.returncode == 2, done.stderr
    errors = error_lines(done)
    assert len(errors) == 1 and "noisy" in errors[0] and "No space left on device" in errors[0], done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [Path(r["file"]).name for r in records] == ["hgg_flair.png"]
    assert set(records[0]["outputs"]) == {"mask", "heatmap", "overlay", "json"}


def test_read_only_folder_fails_each_input_in_one_line(tmp_path: Path, noisy_png: Path) -> None:
    out = tmp_path / "read-only"
    done = _mounted("ro,size=1m", out, EXAMPLE_SCAN, noisy_png, "--out", out, "--backend", "onnxruntime")
    assert done.returncode == 2
    errors = error_lines(done)
    assert len(errors) == 2 and all("Read-only file system" in line for line in errors), done.stderr
    assert "hgg_flair" in errors[0] and "noisy" in errors[1]


def test_unreadable_inputs_do_not_abort_the_call(tmp_path: Path) -> None:
    too_long = tmp_path / ("x" * 300 + ".png")
    dangling = tmp_path / "gone.nii.gz"
    dangling.symlink_to(tmp_path / "nowhere.nii.gz")
    done = infer(too_long, dangling, EXAMPLE_SCAN, "--json", "--backend", "onnxruntime")
    assert done.returncode == 2
    errors = error_lines(done)
    assert len(errors) == 2, done.stderr
    assert "File name too long" in errors[0] and "gone.nii.gz" in errors[1]
    assert [Path(json.loads(line)["file"]).name for line in done.stdout.splitlines()] == ["hgg_flair.png"]


def test_ground_truth_beside_the_input_is_not_overwritten(tmp_path: Path) -> None:
    folder = tmp_path / "case"
    folder.mkdir()
    shutil.copy(EXAMPLE_SCAN, folder / "x.png")
    shutil.copy(EXAMPLE_SCAN, folder / "y.png")
    truth = np.zeros((240, 240), np.uint8)
    truth[100:140, 100:140] = 255
    cv2.imwrite(str(folder / "x_mask.png"), truth)
    before = (folder / "x_mask.png").read_bytes()
    done = infer(folder / "x.png", folder / "y.png", "--out", folder, "--backend", "onnxruntime")
    assert done.returncode == 2
    errors = error_lines(done)
    assert len(errors) == 1 and "x_mask.png already exists" in errors[0] and "--overwrite" in errors[0]
    assert (folder / "x_mask.png").read_bytes() == before
    assert not (folder / "x_overlay.png").exists() and not (folder / "x.json").exists()  # none of x's set
    assert (folder / "y_mask.png").is_file() and (folder / "y.json").is_file()
    again = infer(folder / "x.png", "--out", folder, "--overwrite", "--backend", "onnxruntime")
    assert again.returncode == 0, again.stderr
    assert (folder / "x_mask.png").read_bytes() != before


def test_outputs_of_one_call_never_clobber_each_other(tmp_path: Path) -> None:
    """``vol.nii.gz --every-slice`` writes ``vol_slice000_*``, which an input named ``vol_slice000.png`` also writes."""
    folder = tmp_path / "in"
    folder.mkdir()
    image = cv2.imread(str(EXAMPLE_SCAN), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(folder / "vol_slice000.png"), image)
    nib.save(nib.Nifti1Image(np.stack([image.T[:, ::-1]] * 2, axis=-1).astype(np.float32), np.eye(4)), folder / "vol.nii.gz")
    out = tmp_path / "out"
    done = infer(folder / "vol_slice000.png", folder / "vol.nii.gz", "--every-slice", "--out", out, "--backend", "onnxruntime")
    assert done.returncode == 0, done.stderr
    single = json.loads((out / "vol_slice000.json").read_text())
    assert single["file"] == str(folder / "vol_slice000.png") and "slice" not in single
    volume = json.loads((out / "vol_2.json").read_text())
    assert volume["file"] == str(folder / "vol.nii.gz") and volume["slices"] == 2
    assert (out / "vol_2_slice000_mask.png").is_file() and (out / "vol_2_slice001_overlay.png").is_file()


def test_output_files_are_all_or_nothing(tmp_path: Path) -> None:
    from gpedge.atomic import OutputFiles
    from gpedge.errors import OutputError

    with pytest.raises(RuntimeError):
        with OutputFiles() as files:
            files.write_bytes(tmp_path / "a.png", b"a")
            files.write_bytes(tmp_path / "b.png", b"b")
            raise RuntimeError("the third output failed")
    assert list(tmp_path.iterdir()) == []
    committed: set[Path] = set()
    with OutputFiles(committed=committed) as files:
        files.write_bytes(tmp_path / "a.png", b"a")
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"] and committed == {(tmp_path / "a.png").absolute()}
    with pytest.raises(OutputError, match="already an output of this call"):
        OutputFiles(overwrite=True, committed=committed).write_bytes(tmp_path / "a.png", b"again")
    with pytest.raises(OutputError, match="already exists"):
        OutputFiles().write_bytes(tmp_path / "a.png", b"again")


def test_backend_failure_on_one_input_spares_the_others(tiny_package: Path, synthetic_batch: np.ndarray) -> None:
    """A graph that refuses one input (here: ONNX Runtime's own shape check, on a batch one column short)
    is an InferenceError naming that input; ``predict(..., on_error=...)`` goes on with the others."""
    from gpedge.errors import InferenceError
    from gpedge.package import ModelPackage
    from gpedge.runtime.backends.onnxruntime import OnnxRuntimeBackend
    from gpedge.runtime.predictor import Predictor

    class RefusesWideInputs(OnnxRuntimeBackend):
        def run(self, batch, offset=None, rule=None):
            return super().run(batch[..., :-1] if batch.mean() > threshold else batch, offset, rule)

    threshold = 2 * max(float(image.mean()) for image in synthetic_batch[1:3])
    bright = synthetic_batch[0] * (2 * threshold / float(synthetic_batch[0].mean()))
    errors: list[Exception] = []
    with Predictor(backend=RefusesWideInputs(ModelPackage.load(tiny_package), "cpu")) as predictor:
        results = predictor.predict([synthetic_batch[1], bright, synthetic_batch[2]], on_error=errors.append)
        assert len(results) == 2 and len(errors) == 1
        assert isinstance(errors[0], InferenceError) and "array1" in str(errors[0]) and "image" in str(errors[0])
        with pytest.raises(InferenceError, match="array1"):
            predictor.predict([synthetic_batch[1], bright])
