"""C-STORE of result files to the destination node (pynetdicom as SCU)."""
from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gpedge.errors import GpedgeError

#: C-STORE statuses that mean "stored": success and the warnings (coercion, elements discarded...).
_STORED = {0x0000, 0x0001, 0x0107, 0x0116, 0xB000, 0xB006, 0xB007}


class SendError(GpedgeError):
    """The destination refused the association or an object."""


@dataclass(frozen=True)
class Destination:
    """A DICOM node to send results to: ``AE@host:port``."""

    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> "Destination":
        """Parse ``AE@host:port`` (e.g. ``PACS@10.0.0.5:104``)."""
        match = re.fullmatch(r"(?P<ae>[^@]{1,16})@(?P<host>[^:@]+|\[[0-9a-fA-F:]+\]):(?P<port>\d{1,5})", text.strip())
        if not match or not 0 < int(match["port"]) < 65536:
            raise GpedgeError(f"destination {text!r} is not AE@host:port (e.g. PACS@192.168.1.20:104)")
        return cls(match["ae"], match["host"].strip("[]"), int(match["port"]))

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


def send_files(
    files: Sequence[Path], destination: Destination, calling_ae: str, attempts: int = 3, backoff: float = 1.0
) -> None:
    """Send DICOM files to ``destination`` in one association, retrying the whole send up to
    ``attempts`` times (waiting ``backoff``, then twice as long...). Raises :class:`SendError`."""
    for attempt in range(1, attempts + 1):
        try:
            _send_once(files, destination, calling_ae)
            return
        except SendError:
            if attempt == attempts:
                raise
            time.sleep(backoff * 2 ** (attempt - 1))


def _send_once(files: Sequence[Path], destination: Destination, calling_ae: str) -> None:
    import pydicom
    from pynetdicom import AE

    ae = AE(ae_title=calling_ae)
    contexts: dict[str, set[str]] = {}
    for path in files:
        meta = pydicom.dcmread(path, stop_before_pixels=True).file_meta
        contexts.setdefault(str(meta.MediaStorageSOPClassUID), set()).add(str(meta.TransferSyntaxUID))
    for sop_class, syntaxes in contexts.items():
        ae.add_requested_context(sop_class, sorted(syntaxes))
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title)
    if not assoc.is_established:
        raise SendError(f"destination {destination} refused or did not answer the association")
    try:
        for path in files:
            status = assoc.send_c_store(path)
            code = int(status.get("Status", -1)) if status else -1
            if code not in _STORED:
                reason = "no answer" if code < 0 else f"status 0x{code:04X}"
                raise SendError(f"destination {destination} did not store {path.name} ({reason})")
    finally:
        if assoc.is_established:
            assoc.release()
