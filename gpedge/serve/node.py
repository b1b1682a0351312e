"""Configuration and life cycle of ``gpedge serve``: the DICOM node and the HTTP server, until SIGTERM."""
from __future__ import annotations

import logging
import signal
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpedge.errors import GpedgeError
from gpedge.serve.scp import StorageSCP
from gpedge.serve.sender import Destination
from gpedge.serve.spool import PROCESSING, QUEUED, RECEIVING, Spool
from gpedge.serve.worker import Dispatcher, Process

log = logging.getLogger("gpedge.serve")


@dataclass
class ServeConfig:
    """Everything ``gpedge serve`` can be told. ``port``/``http_port`` ``None``: that side is off;
    ``0``: any free port (the bound one is logged)."""

    out_dir: Path = Path("gpedge-serve")
    ae_title: str = "GPEDGE"
    host: str = "127.0.0.1"
    port: int | None = 11112
    http_host: str = "127.0.0.1"
    http_port: int | None = 8000
    allowed_callers: list[str] = field(default_factory=list)
    destination: Destination | None = None
    idle_timeout: float = 5.0
    workers: int = 1
    queue_size: int = 32
    spool_dir: Path | None = None
    max_upload_mb: float = 64.0
    shutdown_grace: float = 5.0

    def validate(self) -> None:
        """Raise a clear :class:`GpedgeError` for a setting that cannot work."""
        destination = [self.destination.ae_title] if self.destination else []
        for name in [self.ae_title, *self.allowed_callers, *destination]:
            if not 0 < len(name) <= 16 or "\\" in name or not name.isascii() or not name.isprintable() or not name.strip():
                raise GpedgeError(f"AE title {name!r} is invalid: 1 to 16 printable ASCII characters, no backslash")
        for what, port in (("--port", self.port), ("--http-port", self.http_port)):
            if port is not None and not 0 <= port < 65536:
                raise GpedgeError(f"{what} {port} is not a TCP port (0 to 65535; 0 picks a free one)")
        if self.port is None and self.http_port is None:
            raise GpedgeError("both the DICOM node and the HTTP server are off; enable at least one")
        if self.workers < 1 or self.queue_size < 1:
            raise GpedgeError(f"--workers and --queue-size must be at least 1 (got {self.workers}, {self.queue_size})")
        if self.idle_timeout < 0:
            raise GpedgeError(f"--idle-timeout must not be negative (got {self.idle_timeout})")
        if not self.max_upload_mb > 0:
            raise GpedgeError(f"--max-upload-mb must be positive (got {self.max_upload_mb})")


class DicomNode:
    """The spool, the storage SCP and the workers, started and stopped together."""

    def __init__(self, config: ServeConfig, process: Process) -> None:
        self.config = config
        self.spool = Spool(config.spool_dir or config.out_dir / "spool")
        self.dispatcher = Dispatcher(
            self.spool, process, config.out_dir, workers=config.workers, idle_timeout=config.idle_timeout,
            destination=config.destination, calling_ae=config.ae_title,
        )
        self.scp = StorageSCP(
            self.spool, config.ae_title, config.host, config.port or 0, config.allowed_callers,
            max_pending=config.queue_size,
        )

    def start(self) -> int:
        """Take up what an earlier run left in the spool, start the workers, listen; returns the port."""
        recovered = self.spool.recover()
        if recovered:
            log.info("spool: %d series left by an earlier run will be processed", sum(s.state != "failed" for s in recovered))
        self.dispatcher.start()
        return self.scp.start()

    def stop(self) -> None:
        """Refuse new associations, let open ones finish (``shutdown_grace``), finish the jobs in
        progress; series not yet processed stay in the spool for the next start."""
        self.scp.stop(self.config.shutdown_grace)
        self.dispatcher.stop()

    def status(self) -> dict[str, Any]:
        states = [s.state for s in self.spool.all()]
        return {
            "ae_title": self.config.ae_title,
            "port": self.scp.port,
            "allowed_callers": self.config.allowed_callers or None,
            "destination": str(self.config.destination) if self.config.destination else None,
            "associations": self.scp.active_associations,
            "series": {state: states.count(state) for state in (RECEIVING, QUEUED, PROCESSING, "failed")},
            "jobs_completed": self.dispatcher.completed,
            "jobs_failed": self.dispatcher.failed,
        }


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise GpedgeError(f"HTTP port {host}:{port} cannot be opened ({exc}); choose another with --http-port") from exc
    sock.listen(128)
    return sock


def run(config: ServeConfig, predictor, process: Process) -> None:
    """Serve until SIGTERM or SIGINT, then stop cleanly (see :meth:`DicomNode.stop`)."""
    import uvicorn

    from gpedge.serve.http import create_app

    config.validate()
    stop = threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    node = DicomNode(config, process) if config.port is not None else None
    sock = _listen(config.http_host, config.http_port) if config.http_port is not None else None
    try:
        log.info("model %s on %s", predictor.package.root, predictor.backend_description)
        if node is not None:
            port = node.start()
            callers = ", ".join(config.allowed_callers) or "any calling AE"
            log.info("DICOM node %s listening on %s:%d (MR storage from %s)", config.ae_title, config.host, port, callers)
        if sock is not None:
            host, port = sock.getsockname()[:2]
            app = create_app(
                predictor, max_upload_bytes=int(config.max_upload_mb * 2**20), concurrency=config.workers,
                node_status=node.status if node is not None else None,
            )
            server = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="off", access_log=False,
                                                   timeout_graceful_shutdown=int(config.shutdown_grace)))
            threading.Thread(target=lambda: (stop.wait(), setattr(server, "should_exit", True)), daemon=True).start()
            log.info("HTTP API and web page on http://%s:%d/", host if ":" not in host else f"[{host}]", port)
            server.run(sockets=[sock])
        else:
            stop.wait()
        log.info("stopping")
    finally:
        if sock is not None:
            sock.close()
        if node is not None:
            node.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        log.info("stopped")
