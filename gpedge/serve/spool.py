"""Durable spool of received DICOM instances: what makes the node lose nothing.

Layout: one folder per series, ``<root>/<SeriesInstanceUID>/``, holding ``state.json`` and one
``<SOPInstanceUID>.dcm`` per instance. Every file is written under a temporary name, fsync'd,
renamed and its folder fsync'd before :meth:`Spool.store` returns, so an instance the node
acknowledged survives a crash or a power loss. ``state.json`` holds the series' study, sender
and state:

- ``receiving``: instances are arriving;
- ``queued``: complete (no association delivering it and idle for the idle timeout), waiting
  for a worker;
- ``processing``: a worker is on it;
- ``failed``: processing failed; kept for inspection, and receiving the series again retries it.

A processed series' folder is removed. :meth:`Spool.recover` takes up, at start-up, every
series that is not failed as if its last instance had just arrived.
"""
from __future__ import annotations

import json
import logging
import re
import shutil
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from gpedge.errors import GpedgeError
from gpedge.atomic import atomic_write_bytes, atomic_write_json, fsync_dir

log = logging.getLogger(__name__)

RECEIVING, QUEUED, PROCESSING, FAILED = "receiving", "queued", "processing", "failed"
STATE_FILE = "state.json"
#: A DICOM UID (VR UI): at most 64 characters, digits and dots, which also makes it a safe file name.
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


class SpoolFull(GpedgeError):
    """The node holds as many unprocessed series as its queue allows."""


def valid_uid(uid: object) -> bool:
    """Whether ``uid`` is a well-formed DICOM UID."""
    return isinstance(uid, str) and len(uid) <= 64 and bool(_UID.match(uid))


@dataclass(eq=False)
class Series:
    """One series in the spool. ``generation`` counts stored instances (not persisted): a worker
    compares it before and after processing to notice instances that arrived meanwhile."""

    uid: str
    study_uid: str
    folder: Path
    state: str
    calling_ae: str
    first_received: float
    last_received: float
    error: str | None = None
    instances: int = 0
    generation: int = 0
    senders: set[int] = field(default_factory=set)
    removed: bool = False
    last_activity: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def files(self) -> list[Path]:
        """The stored instances, sorted by name."""
        return sorted(self.folder.glob("*.dcm"))

    def record(self) -> dict[str, object]:
        return {
            "series_uid": self.uid,
            "study_uid": self.study_uid,
            "state": self.state,
            "calling_ae": self.calling_ae,
            "first_received": self.first_received,
            "last_received": self.last_received,
            "error": self.error,
        }


class Spool:
    """Received series on disk and their states; safe to use from several threads."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._series: dict[str, Series] = {}

    # -- receiving ---------------------------------------------------------------------------
    def store(
        self, study_uid: str, series_uid: str, sop_uid: str, data: bytes, calling_ae: str, sender: int,
        max_pending: int | None = None,
    ) -> Series:
        """Write one encoded instance (DICOM file format) durably and return its series.

        ``sender`` identifies the delivering association (see :meth:`sender_closed`). A new
        series is refused with :class:`SpoolFull` while ``max_pending`` series wait unprocessed.
        """
        for name, uid in (("StudyInstanceUID", study_uid), ("SeriesInstanceUID", series_uid), ("SOPInstanceUID", sop_uid)):
            if not valid_uid(uid):
                raise GpedgeError(f"{name} {uid!r} is not a valid DICOM UID")
        while True:
            series = self._open(study_uid, series_uid, calling_ae, max_pending)
            with series.lock:
                if not series.removed:
                    self._write(series, sop_uid, data, sender)
                    return series

    def _write(self, series: Series, sop_uid: str, data: bytes, sender: int) -> None:
        path = series.folder / f"{sop_uid}.dcm"
        new = not path.exists()
        atomic_write_bytes(path, data, durable=True)
        series.instances += new
        series.generation += 1
        series.last_received = time.time()
        series.last_activity = time.monotonic()
        series.senders.add(sender)
        if series.state == FAILED:
            self._set(series, RECEIVING, None)

    def _open(self, study_uid: str, series_uid: str, calling_ae: str, max_pending: int | None) -> Series:
        with self._lock:
            series = self._series.get(series_uid)
            if series is not None:
                return series
            if max_pending is not None and self._pending() >= max_pending:
                raise SpoolFull(f"{max_pending} series are waiting to be processed; send again later")
            now = time.time()
            series = Series(series_uid, study_uid, self.root / series_uid, RECEIVING, calling_ae, now, now)
            series.folder.mkdir(exist_ok=True)
            atomic_write_json(series.folder / STATE_FILE, series.record(), durable=True)
            fsync_dir(self.root)
            self._series[series_uid] = series
            return series

    def sender_closed(self, sender: int) -> None:
        """An association ended: its series may now become complete once idle."""
        with self._lock:
            for series in self._series.values():
                if sender in series.senders:
                    series.senders.discard(sender)
                    series.last_activity = time.monotonic()

    # -- scheduling ----------------------------------------------------------------------------
    def pending(self) -> int:
        """Series received but not yet being processed (receiving or queued)."""
        with self._lock:
            return self._pending()

    def _pending(self) -> int:
        return sum(s.state in (RECEIVING, QUEUED) for s in self._series.values())

    def take_complete(self, idle_timeout: float) -> list[list[Series]]:
        """Mark complete series ``queued`` and return them grouped by study.

        A series is complete when no association is delivering it and nothing arrived for
        ``idle_timeout`` seconds; a study's series are handed out together, once all of its
        receiving series are complete (so a multi-contrast study is processed as one input).
        """
        now = time.monotonic()
        with self._lock:
            studies: dict[str, list[Series]] = {}
            for series in self._series.values():
                if series.state == RECEIVING:
                    studies.setdefault(series.study_uid, []).append(series)
        jobs = []
        for members in studies.values():
            if all(not s.senders and now - s.last_activity >= idle_timeout for s in members):
                for series in members:
                    self.set_state(series, QUEUED)
                jobs.append(sorted(members, key=lambda s: s.uid))
        return jobs

    def set_state(self, series: Series, state: str, error: str | None = None) -> None:
        """Change a series' state and persist it."""
        with series.lock:
            self._set(series, state, error)

    def _set(self, series: Series, state: str, error: str | None) -> None:
        series.state, series.error = state, error
        atomic_write_json(series.folder / STATE_FILE, series.record(), durable=True)

    def finish(self, series: Series, generation: int, error: str | None = None) -> bool:
        """Remove a processed series, or mark it ``failed`` with ``error``.

        If instances arrived since ``generation``, the series is received again instead (and
        processed once more, whole) and False is returned.
        """
        with series.lock:
            if series.generation != generation:
                self._set(series, RECEIVING, None)
                return False
            if error is not None:
                self._set(series, FAILED, error)
                return True
            shutil.rmtree(series.folder)
            fsync_dir(self.root)
            series.removed = True
        with self._lock:
            self._series.pop(series.uid, None)
        return True

    def get(self, series_uid: str) -> Series | None:
        with self._lock:
            return self._series.get(series_uid)

    def all(self) -> list[Series]:
        with self._lock:
            return list(self._series.values())

    # -- restart -----------------------------------------------------------------------------
    def recover(self) -> list[Series]:
        """Load the series left on disk by an earlier run; those not failed are received again
        (complete after the idle timeout). Returns the recovered series."""
        recovered = []
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir()):
            for tmp in folder.glob(".*.tmp"):
                tmp.unlink()
            series = _load(folder)
            if series is None:
                log.warning("spool: removing %s (no state and no instances)", folder)
                shutil.rmtree(folder)
                continue
            if series.state != FAILED:
                series.state = RECEIVING
            with self._lock:
                self._series[series.uid] = series
            recovered.append(series)
        return recovered


def _load(folder: Path) -> Series | None:
    files = sorted(folder.glob("*.dcm"))
    try:
        record = json.loads((folder / STATE_FILE).read_text())
        study_uid, series_uid = record["study_uid"], record["series_uid"]
    except (OSError, ValueError, KeyError):
        record = {}
        study_uid, series_uid = _uids(files)
        if series_uid is None:
            return None
    now = time.time()
    return Series(
        uid=series_uid,
        study_uid=study_uid,
        folder=folder,
        state=record.get("state", RECEIVING),
        calling_ae=record.get("calling_ae", ""),
        first_received=record.get("first_received", now),
        last_received=record.get("last_received", now),
        error=record.get("error"),
        instances=len(files),
    )


def _uids(files: Iterable[Path]) -> tuple[str | None, str | None]:
    """Study and series UIDs of the first readable instance (a state file lost to a crash)."""
    import pydicom

    for path in files:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["StudyInstanceUID", "SeriesInstanceUID"])
            return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)
        except Exception:  # a damaged file: try the next one
            continue
    return None, None
