"""The node's durable spool: states, completeness, restart recovery, the bound on waiting series."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from gpedge.errors import GpedgeError
from gpedge.serve.spool import FAILED, QUEUED, RECEIVING, Spool, SpoolFull

STUDY, OTHER_STUDY = "1.2.3", "1.2.9"


def _store(spool: Spool, series: str, sop: str, study: str = STUDY, sender: int = 1, **kwargs):
    return spool.store(study, series, sop, b"DICM" + sop.encode(), "SCANNER", sender, **kwargs)


def test_store_writes_instance_and_state(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    series = _store(spool, "1.2.3.4", "1.2.3.4.1")
    assert (tmp_path / "1.2.3.4" / "1.2.3.4.1.dcm").read_bytes() == b"DICM1.2.3.4.1"
    state = json.loads((tmp_path / "1.2.3.4" / "state.json").read_text())
    assert state["state"] == RECEIVING and state["study_uid"] == STUDY and state["calling_ae"] == "SCANNER"
    assert series.instances == 1 and series.files() == [tmp_path / "1.2.3.4" / "1.2.3.4.1.dcm"]
    assert not [p for p in (tmp_path / "1.2.3.4").iterdir() if p.name.endswith(".tmp")]
    _store(spool, "1.2.3.4", "1.2.3.4.1")  # the same instance again replaces it
    assert series.instances == 1


@pytest.mark.parametrize("uid", ["../etc", "1.2.x", "", "1." * 40 + "1", "1..2"])
def test_store_refuses_uids_that_are_not_dicom_uids(tmp_path: Path, uid: str) -> None:
    spool = Spool(tmp_path)
    with pytest.raises(GpedgeError, match="not a valid DICOM UID"):
        _store(spool, uid, "1.2.3.4.1")
    with pytest.raises(GpedgeError, match="not a valid DICOM UID"):
        _store(spool, "1.2.3.4", uid)
    assert list(tmp_path.iterdir()) == []


def test_series_complete_only_when_released_and_idle(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    _store(spool, "1.2.3.4", "1.2.3.4.1", sender=7)
    assert spool.take_complete(0.0) == []  # association 7 still open
    spool.sender_closed(7)
    assert spool.take_complete(60.0) == []  # not idle long enough
    (job,) = spool.take_complete(0.0)
    assert [s.uid for s in job] == ["1.2.3.4"] and job[0].state == QUEUED
    assert spool.take_complete(0.0) == []  # handed out once


def test_study_series_are_handed_out_together(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    _store(spool, "1.2.3.4", "1.2.3.4.1", sender=1)
    _store(spool, "1.2.3.5", "1.2.3.5.1", sender=2)
    _store(spool, "1.2.9.4", "1.2.9.4.1", study=OTHER_STUDY, sender=2)
    spool.sender_closed(1)
    assert spool.take_complete(0.0) == []  # series 1.2.3.5 of the same study is still arriving
    spool.sender_closed(2)
    jobs = spool.take_complete(0.0)
    assert sorted([s.uid for s in job] for job in jobs) == [["1.2.3.4", "1.2.3.5"], ["1.2.9.4"]]


def test_finish_removes_but_late_instances_make_it_receive_again(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    series = _store(spool, "1.2.3.4", "1.2.3.4.1")
    generation = series.generation
    _store(spool, "1.2.3.4", "1.2.3.4.2")  # arrives while "processing"
    assert spool.finish(series, generation) is False
    assert series.state == RECEIVING and series.folder.is_dir()
    assert spool.finish(series, series.generation) is True
    assert not series.folder.exists() and spool.get("1.2.3.4") is None
    again = _store(spool, "1.2.3.4", "1.2.3.4.3")  # a new delivery after removal starts afresh
    assert again is not series and again.files() == [tmp_path / "1.2.3.4" / "1.2.3.4.3.dcm"]


def test_failed_series_is_kept_and_retried_when_received_again(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    series = _store(spool, "1.2.3.4", "1.2.3.4.1")
    spool.finish(series, series.generation, error="no usable slices")
    state = json.loads((series.folder / "state.json").read_text())
    assert state["state"] == FAILED and state["error"] == "no usable slices"
    assert spool.pending() == 0
    _store(spool, "1.2.3.4", "1.2.3.4.2")
    assert series.state == RECEIVING and series.error is None and len(series.files()) == 2


def test_new_series_refused_when_queue_is_full(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    _store(spool, "1.2.3.4", "1.2.3.4.1", max_pending=1)
    _store(spool, "1.2.3.4", "1.2.3.4.2", max_pending=1)  # more of a series already held: accepted
    with pytest.raises(SpoolFull, match="1 series are waiting"):
        _store(spool, "1.2.3.5", "1.2.3.5.1", max_pending=1)
    assert not (tmp_path / "1.2.3.5").exists()


def test_recover_takes_up_what_a_crash_left(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    done = _store(spool, "1.2.3.1", "1.2.3.1.1")
    _store(spool, "1.2.3.2", "1.2.3.2.1")
    spool.set_state(_store(spool, "1.2.3.3", "1.2.3.3.1"), QUEUED)
    spool.finish(_store(spool, "1.2.3.4", "1.2.3.4.1"), spool.get("1.2.3.4").generation, error="bad")
    spool.finish(done, done.generation)
    (tmp_path / "1.2.3.2" / ".1.2.3.2.9.dcm.abc.tmp").write_bytes(b"half written")
    lost_state = tmp_path / "1.2.3.3" / "state.json"
    os.remove(lost_state)  # a state file lost with the instance on disk: UIDs come from the instance
    (tmp_path / "1.2.3.3" / "1.2.3.3.1.dcm").write_bytes(_mr_instance("1.2.3", "1.2.3.3"))
    (tmp_path / "1.2.3.5").mkdir()  # a folder created just before a crash, nothing in it

    restarted = Spool(tmp_path)
    recovered = {s.uid: s for s in restarted.recover()}
    assert set(recovered) == {"1.2.3.2", "1.2.3.3", "1.2.3.4"}
    assert recovered["1.2.3.2"].state == RECEIVING and recovered["1.2.3.3"].state == RECEIVING
    assert recovered["1.2.3.3"].study_uid == "1.2.3"
    assert recovered["1.2.3.4"].state == FAILED
    assert not list((tmp_path / "1.2.3.2").glob(".*.tmp")) and not (tmp_path / "1.2.3.5").exists()
    time.sleep(0.01)
    (job,) = restarted.take_complete(0.0)
    assert [s.uid for s in job] == ["1.2.3.2", "1.2.3.3"]


def _mr_instance(study_uid: str, series_uid: str) -> bytes:
    from io import BytesIO

    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage

    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = series_uid + ".1"
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, series_uid + ".1"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    buf = BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def test_missing_serve_extra_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from gpedge.serve import require_extra

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pynetdicom" else real(name, *a))
    with pytest.raises(GpedgeError, match=r"needs the \[serve\] extra \(pynetdicom not installed\): pip install 'gpedge\[serve\]'"):
        require_extra()
