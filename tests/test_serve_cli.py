"""``gpedge serve`` end to end with real third-party DICOM tools.

dcmtk's storescu sends a series (or a study of four, to the four-contrast model), storescp receives
the results as the destination node, dicom3tools' dciodvfy validates them, and the SEG's mask equals
what ``gpedge infer --dicom-out`` writes for the same files. Also: restart after a crash (SIGKILL) loses nothing, and SIGTERM
finishes the series being processed.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from dcmtk import StoreSCP, dciodvfy, echoscu, need, store_responses, storescu, wait_until
from dicom_series import write_series
from gpedge.data import write_synthetic_brats
from mr_series import example_series
from serve_process import ServeProcess

SEG, PMAP, SR = "1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.30", "1.2.840.10008.5.1.4.1.1.88.33"


@pytest.fixture(autouse=True)
def _tools() -> None:
    need("echoscu", "storescu", "storescp", "dciodvfy")


def seg_masks(path: Path) -> dict[tuple[str, int | None], np.ndarray]:
    """A binary SEG's frames by the source image (SOPInstanceUID, frame number) each one covers."""
    seg = pydicom.dcmread(path)
    frames = seg.pixel_array.reshape(-1, seg.Rows, seg.Columns)
    masks = {}
    for frame, item in zip(frames, seg.PerFrameFunctionalGroupsSequence):
        source = item.DerivationImageSequence[0].SourceImageSequence[0]
        key = (str(source.ReferencedSOPInstanceUID), source.get("ReferencedFrameNumber"))
        assert key not in masks
        masks[key] = frame.astype(bool)
    return masks


def _health(server) -> dict:
    with urllib.request.urlopen(f"{server.http_url}/health", timeout=30) as response:
        return json.loads(response.read())


def _by_class(files: list[Path]) -> dict[str, Path]:
    return {str(pydicom.dcmread(f, stop_before_pixels=True).SOPClassUID): f for f in files}


def _uids_in(ds: pydicom.Dataset) -> set[str]:
    found = set()
    for element in ds.iterall():
        if element.VR == "UI" and element.value:
            found.add(str(element.value))
    return found


def _infer_seg(files: list[Path], out: Path) -> tuple[Path, list[dict]]:
    proc = subprocess.run([sys.executable, "-m", "gpedge.cli", "infer", str(files[0].parent), "--dicom-out", str(out),
                           "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (seg,) = out.glob("*_seg.dcm")
    return seg, [json.loads(line) for line in proc.stdout.splitlines()]


@pytest.mark.parametrize("enhanced", [False, True], ids=["mr", "enhanced-mr"])
def test_series_from_storescu_comes_back_as_valid_seg_pmap_sr(tmp_path: Path, enhanced: bool) -> None:
    files = example_series(tmp_path / "series", count=12, enhanced=enhanced)
    sources = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files}
    with StoreSCP(tmp_path / "dest") as dest, ServeProcess(
        ["--out", str(tmp_path / "out"), "--destination", f"DEST@127.0.0.1:{dest.port}", "--idle-timeout", "0.5",
         "--allow", "SCANNER"], tmp_path / "serve.log",
    ) as server:
        assert echoscu(server.dicom_port, calling="SCANNER").returncode == 0
        proc = storescu(server.dicom_port, sorted(set(files)))
        assert store_responses(proc) == ["Success"] * len(set(files)), proc.stderr
        received = _by_class(dest.wait_for(3, timeout=180))
        wait_until(lambda: _health(server)["dicom"]["jobs_completed"] == 1, what="/health to count the job")
        dicom = _health(server)["dicom"]
        assert dicom["ae_title"] == "GPEDGE" and dicom["port"] == server.dicom_port and dicom["allowed_callers"] == ["SCANNER"]
    assert set(received) == {SEG, PMAP, SR}
    for path in received.values():
        assert dciodvfy(path) == [], path.name

    seg = pydicom.dcmread(received[SEG])
    sr = pydicom.dcmread(received[SR])
    assert seg.StudyInstanceUID == sr.StudyInstanceUID == pydicom.dcmread(files[0]).StudyInstanceUID
    assert str(seg.SOPInstanceUID) in _uids_in(sr)  # the SR refers to the SEG it reports on
    node_masks = seg_masks(received[SEG])
    assert {uid for uid, _ in node_masks} <= sources

    infer_seg, records = _infer_seg(files, tmp_path / "infer")
    infer_masks = seg_masks(infer_seg)
    assert node_masks.keys() == infer_masks.keys()
    for uid, mask in node_masks.items():
        assert np.array_equal(mask, infer_masks[uid]), uid
    assert sum(m.sum() for m in node_masks.values()) == sum(r["mask_area_px"] for r in records) > 0

    (result_file,) = (tmp_path / "out").glob("*/*/result.json")
    result = json.loads(result_file.read_text())
    assert result["label"] in {"Healthy", "LGG", "HGG"} and result["mask_volume_ml"] > 0
    assert result["instances"] == len(set(files)) and result["destination"] == f"DEST@127.0.0.1:{dest.port}"
    assert not list((tmp_path / "out" / "spool").iterdir())


def test_crash_loses_nothing_and_sigterm_finishes_work_in_progress(tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = example_series(tmp_path / "first", count=4)
    second = example_series(tmp_path / "second", count=24, first=0)

    # 1. received, acknowledged, then the node is killed before the series is processed
    server = ServeProcess(["--out", str(out), "--idle-timeout", "600", "--no-http"], tmp_path / "serve1.log").start()
    assert store_responses(storescu(server.dicom_port, first)) == ["Success"] * 4
    server.stop(signal.SIGKILL)
    (state_file,) = (out / "spool").glob("*/state.json")
    assert json.loads(state_file.read_text())["state"] == "receiving"
    assert len(list(state_file.parent.glob("*.dcm"))) == 4

    # 2. a restart processes it
    server = ServeProcess(["--out", str(out), "--idle-timeout", "0.2", "--no-http"], tmp_path / "serve2.log").start()
    wait_until(lambda: list(out.glob("*/*/result.json")), timeout=180, what="the recovered series to be processed")
    assert "1 series left by an earlier run" in server.log()

    # 3. SIGTERM while a series is being processed: it is finished before the node exits
    assert store_responses(storescu(server.dicom_port, second)) == ["Success"] * 24
    spool_state = out / "spool" / str(pydicom.dcmread(second[0]).SeriesInstanceUID) / "state.json"
    wait_until(lambda: spool_state.exists() and json.loads(spool_state.read_text())["state"] == "processing",
               timeout=120, what="processing to start")
    assert server.stop(signal.SIGTERM) == 0
    assert len(list(out.glob("*/*/result.json"))) == 2
    assert not spool_state.parent.exists()
    assert "stopped" in server.log().splitlines()[-1]


def test_four_series_study_with_the_four_contrast_model(tmp_path: Path) -> None:
    """A held-out-family patient sent as one study of four series (T1, T2, T1CE, FLAIR, told apart by their
    descriptions) to ``gpedge serve --model gp-unet-synth``: one valid SEG, Parametric Map and SR, whose mask is
    what ``gpedge infer --model gp-unet-synth --dicom-out`` writes for the same files."""
    (pid,) = write_synthetic_brats(tmp_path / "brats", 1, seed=3, size=96, slices=16, family="heldout", skull_fraction=0)
    study_uid, frame_uid = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    files = []
    for number, (contrast, description) in enumerate(
        (("t1", "t1_se_tra"), ("t2", "T2W AX"), ("t1ce", "AX T1 POST GD"), ("flair", "AX FLAIR")), start=1
    ):
        img = nib.load(tmp_path / "brats" / pid / f"{pid}_{contrast}.nii.gz")
        files += write_series(tmp_path / "study" / contrast, np.asarray(img.dataobj), img.affine, description=description,
                              series_number=number, study_uid=study_uid, frame_of_reference_uid=frame_uid).files
    with StoreSCP(tmp_path / "dest") as dest, ServeProcess(
        ["--model", "gp-unet-synth", "--out", str(tmp_path / "out"), "--destination", f"DEST@127.0.0.1:{dest.port}",
         "--idle-timeout", "0.5", "--no-http"], tmp_path / "serve.log",
    ) as server:
        proc = storescu(server.dicom_port, sorted(files))
        assert store_responses(proc) == ["Success"] * len(files), proc.stderr
        received = _by_class(dest.wait_for(3, timeout=180))
    assert set(received) == {SEG, PMAP, SR}
    for path in received.values():
        assert dciodvfy(path) == [], path.name

    proc = subprocess.run([sys.executable, "-m", "gpedge.cli", "infer", str(tmp_path / "study"), "--model", "gp-unet-synth",
                           "--dicom-out", str(tmp_path / "infer"), "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(records) == 16
    (infer_seg,) = (tmp_path / "infer").glob("*_seg.dcm")
    node_masks, infer_masks = seg_masks(received[SEG]), seg_masks(infer_seg)
    assert node_masks.keys() == infer_masks.keys()
    for key, mask in node_masks.items():
        assert np.array_equal(mask, infer_masks[key]), key
    (result_file,) = (tmp_path / "out").glob("*/*/result.json")
    result = json.loads(result_file.read_text())
    assert result["instances"] == len(files) and result["label"] in {"Healthy", "LGG", "HGG"}
