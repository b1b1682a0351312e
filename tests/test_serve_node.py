"""The DICOM node in-process, driven by dcmtk: C-ECHO, C-STORE statuses, calling-AE checks, the
queue bound, failures, and sending results to a storescp destination.

The processing function here is a small stand-in (it records what it got and returns a copy of
one instance as "result"), so these tests are about the node; tests/test_serve_cli.py runs the
real ``gpedge serve`` end to end.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from dcmtk import StoreSCP, echoscu, need, store_responses, storescu, tool, wait_until
from gpedge.errors import InputError
from gpedge.serve.node import DicomNode, ServeConfig
from gpedge.serve.sender import Destination
from gpedge.serve.spool import FAILED
from gpedge.serve.worker import Processed
from mr_series import example_series, make_ct


class Recorder:
    """Processing stand-in: records each job's files; returns a re-identified copy of the first."""

    def __init__(self, fail: bool = False) -> None:
        self.jobs: list[list[Path]] = []
        self.fail = fail

    def __call__(self, files, out_dir: Path) -> Processed:
        self.jobs.append([Path(f).name for f in files])
        if self.fail:
            raise InputError(f"{out_dir.name}: no usable slices")
        ds = pydicom.dcmread(files[0])
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.SeriesInstanceUID = generate_uid()
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "result.dcm"
        ds.save_as(path)
        return Processed([path], {"label": "HGG", "probabilities": {"HGG": 0.9}})


@pytest.fixture
def node_factory(tmp_path: Path):
    need("echoscu", "storescu", "storescp")
    nodes = []

    def start(process, **options) -> tuple[DicomNode, int]:
        config = ServeConfig(**{"out_dir": tmp_path / "out", "port": 0, "idle_timeout": 0.3, **options})
        node = DicomNode(config, process)
        port = node.start()
        nodes.append(node)
        return node, port

    yield start
    for node in nodes:
        node.stop()


def _results(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("*/*/result.json"))]


def test_echo_and_series_processed_once_complete(node_factory, tmp_path: Path) -> None:
    process = Recorder()
    node, port = node_factory(process)
    assert echoscu(port).returncode == 0
    files = example_series(tmp_path / "series", count=6)
    proc = storescu(port, files)
    assert proc.returncode == 0, proc.stderr
    assert store_responses(proc) == ["Success"] * 6
    wait_until(lambda: _results(tmp_path / "out"), what="result.json")
    (record,) = _results(tmp_path / "out")
    study_uid = pydicom.dcmread(files[0]).StudyInstanceUID
    assert record["study_uid"] == study_uid and record["instances"] == 6 and record["calling_ae"] == "SCANNER"
    assert record["timing"]["finished"] >= record["timing"]["received_last"]
    assert len(process.jobs) == 1 and len(process.jobs[0]) == 6
    wait_until(lambda: not node.spool.all(), what="the spool to empty")
    assert [p.name for p in (tmp_path / "out" / "spool").iterdir()] == []


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
def test_bad_objects_get_failure_statuses_and_one_log_line_each(node_factory, tmp_path: Path, caplog) -> None:
    process = Recorder()
    node, port = node_factory(process)
    ct = example_series(tmp_path / "ct", count=1)
    make_ct(ct[0])
    no_pixels = example_series(tmp_path / "nopix", count=1)
    ds = pydicom.dcmread(no_pixels[0])
    del ds.PixelData
    ds.save_as(no_pixels[0])
    bad_uid = example_series(tmp_path / "baduid", count=1)
    ds = pydicom.dcmread(bad_uid[0])
    ds.SeriesInstanceUID = "../../etc"
    ds.save_as(bad_uid[0])
    with caplog.at_level(logging.WARNING, logger="gpedge.serve"):
        proc = storescu(port, [*ct, *no_pixels, *bad_uid])
    assert store_responses(proc) == [
        "Refused: SOPClassNotSupported", "Error: DataSetDoesNotMatchSOPClass", "Error: DataSetDoesNotMatchSOPClass",
    ]
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 3 and all("\n" not in r.getMessage() for r in refusals)
    assert "SOP class 1.2.840.10008.5.1.4.1.1.2 is not MR" in refusals[0].getMessage()
    assert not node.spool.all()
    # the node keeps running: an echo and a good series still work
    assert echoscu(port).returncode == 0
    good = example_series(tmp_path / "good", count=2)
    assert store_responses(storescu(port, good)) == ["Success"] * 2
    wait_until(lambda: _results(tmp_path / "out"), what="the good series to be processed")


def test_only_allowed_callers_and_our_ae_title(node_factory) -> None:
    _, port = node_factory(Recorder(), allowed_callers=["SCANNER"])
    assert echoscu(port, calling="SCANNER").returncode == 0
    assert echoscu(port, calling="INTRUDER").returncode != 0
    assert echoscu(port, calling="SCANNER", called="OTHER").returncode != 0


def test_new_series_refused_while_queue_is_full(node_factory, tmp_path: Path) -> None:
    node, port = node_factory(Recorder(), queue_size=1, idle_timeout=30)  # the first series stays waiting
    first = example_series(tmp_path / "a", count=2)
    second = example_series(tmp_path / "b", count=2)
    assert store_responses(storescu(port, first)) == ["Success"] * 2
    assert store_responses(storescu(port, second)) == ["Refused: OutOfResources"] * 2
    assert store_responses(storescu(port, first[:1])) == ["Success"]  # more of a held series is fine


def test_processing_failure_is_recorded_and_the_node_goes_on(node_factory, tmp_path: Path, caplog) -> None:
    process = Recorder(fail=True)
    node, port = node_factory(process)
    files = example_series(tmp_path / "series", count=2)
    with caplog.at_level(logging.ERROR, logger="gpedge.serve"):
        storescu(port, files)
        wait_until(lambda: list((tmp_path / "out").glob("*/*/error.json")), what="error.json")
    (error,) = [json.loads(p.read_text()) for p in (tmp_path / "out").glob("*/*/error.json")]
    assert "no usable slices" in error["error"]
    (series,) = node.spool.all()
    assert series.state == FAILED and len(series.files()) == 2
    (line,) = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert "no usable slices" in line
    assert echoscu(port).returncode == 0


def test_results_are_sent_to_the_destination(node_factory, tmp_path: Path) -> None:
    with StoreSCP(tmp_path / "dest") as dest:
        node, port = node_factory(Recorder(), destination=Destination("DEST", "127.0.0.1", dest.port))
        files = example_series(tmp_path / "series", count=3)
        storescu(port, files)
        (received,) = dest.wait_for(1)
        wait_until(lambda: _results(tmp_path / "out"), what="result.json")
    (record,) = _results(tmp_path / "out")
    sent = pydicom.dcmread(record["dicom"][0])
    assert pydicom.dcmread(received).SOPInstanceUID == sent.SOPInstanceUID
    assert record["destination"] == f"DEST@127.0.0.1:{dest.port}"


def test_unreachable_destination_fails_the_job_without_losing_results(node_factory, tmp_path: Path) -> None:
    from dcmtk import free_port

    node, port = node_factory(Recorder(), destination=Destination("DEST", "127.0.0.1", free_port()))
    storescu(port, example_series(tmp_path / "series", count=1))
    wait_until(lambda: list((tmp_path / "out").glob("*/*/error.json")), timeout=60, what="error.json")
    (error_file,) = (tmp_path / "out").glob("*/*/error.json")
    assert "refused or did not answer" in json.loads(error_file.read_text())["error"]
    assert (error_file.parent / "result.dcm").is_file()


@pytest.mark.parametrize("syntax", ["RLE Lossless", "JPEG Lossless SV1"])
def test_compressed_series_is_stored_as_sent_and_processed(node_factory, tmp_path: Path, syntax: str) -> None:
    """RLE Lossless (decoded by pydicom itself) and JPEG Lossless (GDCM, with gpedge[dicom]), as PACS send MR,
    through the real processing function."""
    import subprocess

    from pydicom.pixels import get_decoder
    from pydicom.uid import JPEGLosslessSV1, RLELossless

    from gpedge.runtime.predictor import Predictor
    from gpedge.serve.processing import StudyProcessor

    uid, propose = {"RLE Lossless": (RLELossless, "-xr"), "JPEG Lossless SV1": (JPEGLosslessSV1, "-xs")}[syntax]
    if not get_decoder(uid).is_available:
        pytest.skip(f"no installed pydicom decoder for {syntax} (pip install gpedge[dicom])")
    if uid == JPEGLosslessSV1:
        need("dcmcjpeg")
        files = []
        for path in example_series(tmp_path / "series", count=4):
            files.append(path.with_suffix(".jpeg.dcm"))
            subprocess.run([tool("dcmcjpeg"), "+e1", str(path), str(files[-1])], check=True, capture_output=True)
            path.unlink()
    else:
        files = example_series(tmp_path / "series", count=4, transfer_syntax=uid)
    with Predictor() as predictor:
        node, port = node_factory(StudyProcessor(predictor), idle_timeout=2)  # check the spool before processing
        assert store_responses(storescu(port, files, options=[propose])) == ["Success"] * 4
        spooled = [p for p in (tmp_path / "out" / "spool").glob("*/*.dcm")]
        assert {str(pydicom.dcmread(p).file_meta.TransferSyntaxUID) for p in spooled} == {uid}
        wait_until(lambda: _results(tmp_path / "out"), timeout=120, what="result.json")
        node.stop()
    (record,) = _results(tmp_path / "out")
    assert record["label"] in ("Healthy", "LGG", "HGG") and record["slices"] == 4
    assert {Path(p).name.rsplit("_", 1)[1] for p in record["dicom"]} == {"seg.dcm", "pmap.dcm", "sr.dcm"}


@pytest.mark.parametrize("args, message", [
    (["--destination", "PACS:104"], "is not AE@host:port"),
    (["--ae-title", "A" * 17], "AE title 'AAAAAAAAAAAAAAAAA' is invalid"),
    (["--allow", "BAD\\AE"], "is invalid"),
    (["--port", "70000"], "--port 70000 is not a TCP port"),
    (["--no-dicom", "--no-http"], "enable at least one"),
])
def test_bad_options_get_one_clear_line(args: list[str], message: str) -> None:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "gpedge.cli", "serve", *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and message in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
