"""Processing complete series: a scheduler that notices them and a bounded pool of worker threads.

A job is one study's complete series (see :meth:`Spool.take_complete`). A worker hands the
job's files to the processing function, writes ``result.json`` (or ``error.json``) into the
job's output folder ``<out>/<StudyInstanceUID>/<first SeriesInstanceUID>/``, sends the DICOM
objects to the destination when there is one, then removes the series from the spool. Every
outcome is one log line.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpedge.errors import GpedgeError
from gpedge.atomic import atomic_write_json
from gpedge.serve.sender import Destination, send_files
from gpedge.serve.spool import PROCESSING, Series, Spool

log = logging.getLogger(__name__)


@dataclass
class Processed:
    """What a processing function made of a job: DICOM files to send and a JSON-ready summary."""

    dicom_files: list[Path]
    summary: dict[str, Any] = field(default_factory=dict)


#: ``process(files, out_dir)``: read the received instances, write the results into ``out_dir``.
Process = Callable[[Sequence[Path], Path], Processed]


class Dispatcher:
    """Turns complete series into jobs and runs them on ``workers`` threads.

    ``stop()`` lets each worker finish the job it is on; jobs not started stay ``queued`` in the
    spool and are taken up by the next start.
    """

    def __init__(
        self,
        spool: Spool,
        process: Process,
        out_dir: str | Path,
        *,
        workers: int = 1,
        idle_timeout: float = 5.0,
        destination: Destination | None = None,
        calling_ae: str = "GPEDGE",
        poll: float = 0.1,
    ) -> None:
        if workers < 1:
            raise GpedgeError(f"workers must be at least 1, got {workers}")
        if idle_timeout < 0:
            raise GpedgeError(f"idle timeout must not be negative, got {idle_timeout}")
        self.spool = spool
        self.process = process
        self.out_dir = Path(out_dir)
        self.workers = workers
        self.idle_timeout = idle_timeout
        self.destination = destination
        self.calling_ae = calling_ae
        self.poll = poll
        self.completed = 0
        self.failed = 0
        self._jobs: queue.Queue[list[Series] | None] = queue.Queue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._counts = threading.Lock()

    def start(self) -> None:
        self._threads = [threading.Thread(target=self._schedule, name="gpedge-scheduler", daemon=True)]
        self._threads += [
            threading.Thread(target=self._work, name=f"gpedge-worker-{i}", daemon=True) for i in range(self.workers)
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop scheduling, let workers finish their current job, and wait for them."""
        self._stop.set()
        for _ in range(self.workers):
            self._jobs.put(None)
        for thread in self._threads:
            thread.join()
        self._threads = []

    def _schedule(self) -> None:
        while not self._stop.wait(self.poll):
            for job in self.spool.take_complete(self.idle_timeout):
                self._jobs.put(job)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None or self._stop.is_set():  # a job not started stays queued in the spool
                return
            try:
                self.run_job(job)
            except Exception as exc:  # e.g. the output disk is full: the series are retried at the next start
                log.error("study %s: could not record the outcome (%s: %s)", job[0].study_uid, type(exc).__name__, exc)

    def run_job(self, job: list[Series]) -> None:
        """Process, send, record (``result.json`` or ``error.json``) and release one job; errors of the
        processing and the sending are recorded, not raised."""
        study_uid = job[0].study_uid
        out = self.out_dir / study_uid / job[0].uid
        generations = {s.uid: s.generation for s in job}
        for series in job:
            self.spool.set_state(series, PROCESSING)
        timing = {
            "received_first": min(s.first_received for s in job),
            "received_last": max(s.last_received for s in job),
            "started": time.time(),
        }
        files = [f for s in job for f in s.files()]
        where = f"study {study_uid} ({len(job)} series, {len(files)} instances from {job[0].calling_ae or '?'})"
        error = None
        try:
            processed = self.process(files, out)
            timing["processed"] = time.time()
            if self.destination is not None and processed.dicom_files:
                send_files(processed.dicom_files, self.destination, self.calling_ae)
                timing["sent"] = time.time()
        except GpedgeError as exc:
            error = str(exc)
        except Exception as exc:  # a bug or an unexpected library error: one line, the node keeps running
            log.debug("%s: unexpected error", where, exc_info=True)
            error = f"unexpected {type(exc).__name__}: {exc}"
        timing["finished"] = time.time()
        record: dict[str, Any] = {"study_uid": study_uid, "series": [s.uid for s in job], "instances": len(files),
                                  "calling_ae": job[0].calling_ae, "timing": timing}
        if error is None:
            record.update(processed.summary, dicom=[str(p) for p in processed.dicom_files],
                          destination=str(self.destination) if self.destination else None)
            atomic_write_json(out / "result.json", record)
            (out / "error.json").unlink(missing_ok=True)  # from an earlier, failed try
            seconds = timing["finished"] - timing["received_last"]
            sent = f", sent {len(processed.dicom_files)} objects to {self.destination}" if "sent" in timing else ""
            log.info("%s: %s in %.2f s after the last instance%s", where, _describe(processed.summary), seconds, sent)
        else:
            atomic_write_json(out / "error.json", {**record, "error": error})
            (out / "result.json").unlink(missing_ok=True)
            log.error("%s: failed: %s", where, error)
        for series in job:
            self.spool.finish(series, generations[series.uid], error)
        with self._counts:
            if error is None:
                self.completed += 1
            else:
                self.failed += 1


def _describe(summary: dict[str, Any]) -> str:
    if "label" not in summary:
        return "processed"
    probability = summary.get("probabilities", {}).get(summary["label"])
    text = f"{summary['label']}" + (f" (p={probability:.2f})" if probability is not None else "")
    if summary.get("mask_volume_ml") is not None:
        text += f", mask {summary['mask_volume_ml']:.2f} mL"
    return text
