"""Load test of ``gpedge serve`` on loopback, driven by dcmtk.

Several ``storescu`` processes send in parallel (one association per series, each series its own
study); the node processes every series and sends SEG + Parametric Map + SR to a ``storescp``
destination. Checks that nothing is lost (every series gives ``result.json`` and three objects at
the destination, none fails, the spool ends empty) and reports per-series latency:

- ``e2e_s``: from the end of the series' ``storescu`` run to the destination holding all three
  results (includes the idle timeout);
- ``wait_s``: last instance received -> processing started (idle timeout + queue wait);
- ``process_s``: processing started -> results sent (read, infer, write SEG/PMAP/SR, C-STORE).

    python benchmarks/serve_load.py [--series 16] [--parallel 4] [--workers 2] [--slices 12]
                                    [--idle-timeout 0.5] [--out benchmarks/results/serve-load.json]

Needs the [serve] extra and dcmtk. Uses the tests' series writer (tests/mr_series.py) and dcmtk
helpers (tests/dcmtk.py). Only loopback addresses are used; every loop is bounded in time.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pydicom

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from dcmtk import StoreSCP, store_responses, storescu  # noqa: E402
from mr_series import example_series  # noqa: E402
from serve_process import ServeProcess  # noqa: E402

from gpedge.cpus import cpu_description  # noqa: E402


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]  # noqa: E731
    return {"p50": round(statistics.median(ordered), 3), "p90": round(pick(0.9), 3), "max": round(ordered[-1], 3),
            "mean": round(statistics.fmean(ordered), 3)}


def _machine() -> dict[str, object]:
    return {"cpu": cpu_description(), "python": platform.python_version(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


class Arrivals:
    """Watches the destination folder: when each study has all three result objects."""

    def __init__(self, dest: StoreSCP) -> None:
        self.dest = dest
        self.complete: dict[str, float] = {}
        self._seen: dict[Path, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        counts: dict[str, int] = {}
        while not self._stop.wait(0.05):
            for path in self.dest.received():
                if path in self._seen:
                    continue
                study = str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)  # stored in full
                self._seen[path] = study
                counts[study] = counts.get(study, 0) + 1
                if counts[study] == 3:
                    self.complete[study] = time.time()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def run(series: int, parallel: int, workers: int, slices: int, idle_timeout: float, work: Path) -> dict:
    inputs = [example_series(work / "in" / f"s{n:03d}", count=slices, first=n % 8) for n in range(series)]
    studies = [str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID) for files in inputs]
    out = work / "out"
    sent_at: dict[str, float] = {}
    with StoreSCP(work / "dest") as dest, ServeProcess(
        ["--out", str(out), "--destination", f"DEST@127.0.0.1:{dest.port}", "--idle-timeout", str(idle_timeout),
         "--workers", str(workers), "--queue-size", str(series), "--no-http"], work / "serve.log",
    ) as server:
        arrivals = Arrivals(dest)

        def send(n: int) -> list[str]:
            responses = store_responses(storescu(server.dicom_port, inputs[n], calling=f"LOAD{n % parallel}"))
            sent_at[studies[n]] = time.time()
            return responses

        start = time.time()
        with ThreadPoolExecutor(parallel) as pool:
            responses = list(pool.map(send, range(series)))
        sending_s = time.time() - start
        deadline = time.monotonic() + 120 + 30 * series
        while len(arrivals.complete) < series and time.monotonic() < deadline:
            time.sleep(0.1)
        total_s = time.time() - start
        arrivals.stop()
    refused = sum(r != "Success" for rs in responses for r in rs)
    results = {}
    for path in out.glob("*/*/result.json"):
        record = json.loads(path.read_text())
        results[record["study_uid"]] = record
    errors = [json.loads(p.read_text())["error"] for p in out.glob("*/*/error.json")]
    spool_left = [p.name for p in (out / "spool").iterdir()]
    lost = [s for s in studies if s not in results or s not in arrivals.complete]
    rows = []
    for study in studies:
        if study in lost:
            continue
        timing = results[study]["timing"]
        rows.append({
            "study": study,
            "e2e_s": arrivals.complete[study] - sent_at[study],
            "wait_s": timing["started"] - timing["received_last"],
            "process_s": timing["sent"] - timing["started"],
        })
    return {
        "machine": _machine(),
        "settings": {"series": series, "slices_per_series": slices, "parallel_associations": parallel,
                     "workers": workers, "idle_timeout_s": idle_timeout, "image": "240x240 uint16, MR Image Storage",
                     "model": "bundled default (GP-UNet width 16, 128x128), onnxruntime CPU"},
        "instances_sent": series * slices,
        "refused_instances": refused,
        "series_processed": len(results),
        "series_failed": len(errors),
        "errors": errors,
        "objects_at_destination": len(dest.received()),
        "lost_series": len(lost),
        "spool_left": spool_left,
        "sending_s": round(sending_s, 2),
        "total_s": round(total_s, 2),
        "series_per_minute": round(60 * len(rows) / total_s, 2),
        "latency_s": {key: _percentiles([r[key] for r in rows]) for key in ("e2e_s", "wait_s", "process_s")} if rows else {},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=int, default=16)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--slices", type=int, default=12)
    parser.add_argument("--idle-timeout", type=float, default=0.5)
    parser.add_argument("--out", type=Path, default=None, help="Write the summary JSON here.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gpedge-serve-load-") as tmp:
        summary = run(args.series, args.parallel, args.workers, args.slices, args.idle_timeout, Path(tmp))
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    ok = (summary["lost_series"] == 0 and summary["series_failed"] == 0 and summary["refused_instances"] == 0
          and not summary["spool_left"] and summary["objects_at_destination"] == 3 * args.series)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
