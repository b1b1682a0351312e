"""``gpedge serve``: a DICOM node (storage SCP) and an HTTP API with a web page, with one model loaded."""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Optional

import typer


def main(
    model: Optional[Path] = typer.Option(None, "--model", help="Model package folder, or a bundled model: default (one FLAIR slice), gp-unet-t1ce (one T1CE slice), gp-unet-synth (T1, T2, T1CE, FLAIR)."),
    backend: str = typer.Option("auto", "--backend", help="auto, onnxruntime, tensorrt or torch."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda or cuda:N (default: the backend's choice)."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Slices per model call."),
    out: Path = typer.Option(Path("gpedge-serve"), "--out", help="Output folder: <StudyUID>/<SeriesUID>/ per processed study."),
    spool: Optional[Path] = typer.Option(None, "--spool", help="Folder for received instances until processed (default: OUT/spool)."),
    ae_title: str = typer.Option("GPEDGE", "--ae-title", help="The node's AE title."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address the DICOM node listens on (0.0.0.0: every interface)."),
    port: int = typer.Option(11112, "--port", help="DICOM port (0: any free port)."),
    no_dicom: bool = typer.Option(False, "--no-dicom", help="Run the HTTP server only."),
    allow: Optional[list[str]] = typer.Option(None, "--allow", help="Calling AE title allowed to connect (repeatable; default: any)."),
    destination: Optional[str] = typer.Option(None, "--destination", help="Send SEG, Parametric Map and SR to AE@host:port."),
    idle_timeout: float = typer.Option(5.0, "--idle-timeout", help="Seconds without new instances, after the association ended, before a series is processed."),
    workers: int = typer.Option(1, "--workers", min=1, help="Series (and HTTP requests) processed at once."),
    queue_size: int = typer.Option(32, "--queue-size", min=1, help="Series that may wait unprocessed; a new series beyond gets status A700 (out of resources)."),
    http_host: str = typer.Option("127.0.0.1", "--http-host", help="Address the HTTP server listens on."),
    http_port: int = typer.Option(8000, "--http-port", help="HTTP port (0: any free port)."),
    no_http: bool = typer.Option(False, "--no-http", help="Run the DICOM node only."),
    max_upload_mb: float = typer.Option(64.0, "--max-upload-mb", help="Largest accepted HTTP upload (larger: 413)."),
) -> None:
    """Receive MR series over DICOM and scans over HTTP; classify them and write SEG, Parametric Map and SR.

    Stops cleanly on SIGTERM or Ctrl-C: series being processed are finished, the others stay in
    the spool and are processed at the next start.
    """
    from gpedge.serve import require_extra

    require_extra()
    from gpedge.runtime.predictor import Predictor
    from gpedge.serve.node import ServeConfig, run
    from gpedge.serve.processing import StudyProcessor
    from gpedge.serve.sender import Destination

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for name, level in (("pynetdicom", logging.WARNING), ("highdicom", logging.WARNING), ("pydicom", logging.ERROR)):
        logging.getLogger(name).setLevel(level)
    config = ServeConfig(
        out_dir=out,
        ae_title=ae_title,
        host=host,
        port=None if no_dicom else port,
        http_host=http_host,
        http_port=None if no_http else http_port,
        allowed_callers=list(allow or []),
        destination=Destination.parse(destination) if destination else None,
        idle_timeout=idle_timeout,
        workers=workers,
        queue_size=queue_size,
        spool_dir=spool,
        max_upload_mb=max_upload_mb,
    )
    config.validate()
    with Predictor(model, backend=backend, device=device, batch_size=batch_size) as predictor:
        run(config, predictor, StudyProcessor(predictor))
