"""``gpedge serve`` as a real process for tests: start it on free ports, read its ports from its log, stop it."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path


class ServeProcess:
    """Runs ``python -m gpedge.cli serve ARGS`` with ``--port 0 --http-port 0`` unless given,
    logging into ``log_path``; ``dicom_port`` and ``http_url`` come from its start-up lines."""

    def __init__(self, args: Sequence[str], log_path: Path) -> None:
        self.args = list(args)
        if "--no-dicom" not in self.args and "--port" not in self.args:
            self.args += ["--port", "0"]
        if "--no-http" not in self.args and "--http-port" not in self.args:
            self.args += ["--http-port", "0"]
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.dicom_port: int | None = None
        self.http_url: str | None = None

    def start(self, timeout: float = 120) -> "ServeProcess":
        self._log = open(self.log_path, "a")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "gpedge.cli", "serve", *self.args],
                                     stdout=self._log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log()
            dicom = re.search(r"DICOM node \S+ listening on \S+:(\d+)", text)
            http = re.search(r"HTTP API and web page on (http://\S+/)", text)
            if (dicom or "--no-dicom" in self.args) and (http or "--no-http" in self.args):
                self.dicom_port = int(dicom[1]) if dicom else None
                self.http_url = http[1].rstrip("/") if http else None
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"gpedge serve exited with {self.proc.returncode}:\n{text}")
            time.sleep(0.05)
        self.stop(signal.SIGKILL)
        raise RuntimeError(f"gpedge serve did not start in {timeout:.0f} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        """Send ``sig`` and wait for the exit code (killed after ``timeout`` seconds)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def __enter__(self) -> "ServeProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.stop()
