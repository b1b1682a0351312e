"""Third-party DICOM tools driving the node in tests: dcmtk (echoscu, storescu, storescp), dicom3tools (dciodvfy).

pynetdicom installs console scripts of the same names (``storescu``... with other options) that
may come first on PATH, so each tool is the first one on PATH that says it is dcmtk's (or, for
``dciodvfy``, dicom3tools'). Missing tools skip the test with the apt command that installs them
(``.ci/run`` installs them).
"""
from __future__ import annotations

import functools
import os
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import pytest


@functools.cache
def tool(name: str) -> str | None:
    """Path of the dcmtk (or dicom3tools, for dciodvfy) program ``name`` on PATH, or None."""
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        path = Path(folder) / name
        if not (path.is_file() and os.access(path, os.X_OK)):
            continue
        if name == "dciodvfy":
            return str(path)
        try:
            version = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.TimeoutExpired):
            continue
        if "dcmtk" in version:
            return str(path)
    return None


def need(*tools: str) -> None:
    missing = [name for name in tools if tool(name) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} (dcmtk/dicom3tools) not installed: apt-get install dcmtk dicom3tools")


def free_port() -> int:
    """A TCP port free on loopback right now (for tools that cannot bind port 0 themselves)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def echoscu(port: int, called: str = "GPEDGE", calling: str = "ECHOSCU") -> subprocess.CompletedProcess:
    return subprocess.run([tool("echoscu"), "-aet", calling, "-aec", called, "127.0.0.1", str(port)],
                          capture_output=True, text=True, timeout=60)


def storescu(
    port: int, files: Sequence[Path], called: str = "GPEDGE", calling: str = "SCANNER", options: Sequence[str] = ()
) -> subprocess.CompletedProcess:
    """Send files in one association; ``-nh``: go on after a refused instance; ``-v`` prints each
    response; ``options`` e.g. ``["-xr"]`` to propose RLE Lossless."""
    return subprocess.run([tool("storescu"), "-v", "-nh", *options, "-aet", calling, "-aec", called, "127.0.0.1", str(port),
                           *map(str, files)], capture_output=True, text=True, timeout=300)


def store_responses(proc: subprocess.CompletedProcess) -> list[str]:
    """The C-STORE responses storescu reported, e.g. ``Success`` or ``Refused: OutOfResources``."""
    return [line.split("(", 1)[1].rstrip(")") for line in (proc.stdout + proc.stderr).splitlines()
            if "Received Store Response" in line]


class StoreSCP:
    """``storescp`` as the destination node, writing what it receives into ``folder``.

    storescp writes each object under its final name while it receives it; after storing one it runs
    ``-xcr`` (synchronously, ``-xs``), which leaves a hidden marker: :meth:`received` lists only the
    objects whose marker exists, so a test never reads a file still being written.
    """

    def __init__(self, folder: Path, ae_title: str = "DEST") -> None:
        self.folder = folder
        self.ae_title = ae_title
        self.port = free_port()
        self._proc: subprocess.Popen | None = None

    def __enter__(self) -> "StoreSCP":
        self.folder.mkdir(parents=True, exist_ok=True)
        self._log = open(self.folder.parent / f"{self.folder.name}-storescp.log", "w")
        self._proc = subprocess.Popen([tool("storescp"), "-aet", self.ae_title, "-od", str(self.folder), "-uf",
                                       "-xcr", 'touch "#p/.#f.stored"', "-xs", str(self.port)],
                                      stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if echoscu(self.port, called=self.ae_title).returncode == 0:
                return self
            time.sleep(0.1)
        self.__exit__()
        raise RuntimeError("storescp did not start")

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        self._log.close()

    def received(self) -> list[Path]:
        """The objects storescp has finished storing."""
        return sorted(p for p in self.folder.iterdir()
                      if p.is_file() and not p.name.startswith(".") and (p.parent / f".{p.name}.stored").exists())

    def wait_for(self, count: int, timeout: float = 120) -> list[Path]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            files = self.received()
            if len(files) >= count:
                return files
            time.sleep(0.1)
        raise AssertionError(f"storescp received {len(self.received())} objects, expected {count}")


def dciodvfy(path: Path) -> list[str]:
    """The error lines ``dciodvfy`` prints for a file (warnings are not errors)."""
    proc = subprocess.run([tool("dciodvfy"), "-new", str(path)], capture_output=True, text=True, timeout=120)
    return [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("Error")]


def wait_until(predicate, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
