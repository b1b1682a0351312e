"""The DICOM storage SCP: C-ECHO, and C-STORE of MR images into the spool (pynetdicom)."""
from __future__ import annotations

import logging
import time

from gpedge.errors import GpedgeError
from gpedge.serve.spool import Spool, SpoolFull, valid_uid

log = logging.getLogger(__name__)

#: C-STORE statuses (DICOM PS3.4 B.2.3 and PS3.7 C).
SUCCESS = 0x0000
SOP_CLASS_NOT_SUPPORTED = 0x0122
OUT_OF_RESOURCES = 0xA700
DATASET_MISMATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000


def mr_storage_classes() -> tuple[str, ...]:
    """The SOP classes the node stores: MR Image Storage and Enhanced MR Image Storage."""
    from pynetdicom.sop_class import EnhancedMRImageStorage, MRImageStorage

    return (str(MRImageStorage), str(EnhancedMRImageStorage))


def decodable_transfer_syntaxes() -> list[str]:
    """Uncompressed transfer syntaxes plus the compressed ones pydicom's installed plugins decode."""
    from pydicom.pixels import get_decoder
    from pydicom.uid import AllTransferSyntaxes

    from pynetdicom import DEFAULT_TRANSFER_SYNTAXES

    found = list(DEFAULT_TRANSFER_SYNTAXES)
    for uid in AllTransferSyntaxes:
        if uid in found or not uid.is_compressed:
            continue
        try:
            available = get_decoder(uid).is_available
        except NotImplementedError:
            available = False
        if available:
            found.append(str(uid))
    return found


class StorageSCP:
    """Accepts associations addressed to ``ae_title`` from ``allowed_callers`` (any caller when
    empty) and stores MR images.

    Other storage SOP classes are negotiated so that they get a clear C-STORE status (0x0122,
    SOP class not supported) rather than a refused presentation context. An instance is
    acknowledged only once the spool has it on disk. ``max_pending`` bounds the series waiting
    unprocessed: a new series beyond it gets 0xA700 (out of resources) and may be sent again later.
    """

    def __init__(
        self,
        spool: Spool,
        ae_title: str,
        host: str = "127.0.0.1",
        port: int = 11112,
        allowed_callers: list[str] | None = None,
        max_pending: int | None = None,
        max_associations: int = 16,
    ) -> None:
        from pynetdicom import AE, AllStoragePresentationContexts
        from pynetdicom.sop_class import Verification

        self.spool = spool
        self.ae_title = ae_title
        self.host = host
        self.port = port
        self.max_pending = max_pending
        self._mr = set(mr_storage_classes())
        self._ae = AE(ae_title=ae_title)
        self._ae.maximum_associations = max_associations
        self._ae.require_calling_aet = list(allowed_callers or [])
        self._ae.require_called_aet = True
        self._ae.add_supported_context(Verification)
        syntaxes = decodable_transfer_syntaxes()
        for context in AllStoragePresentationContexts:
            uid = context.abstract_syntax
            self._ae.add_supported_context(uid, syntaxes if uid in self._mr else context.transfer_syntax)
        self._server = None

    def start(self) -> int:
        """Listen (non-blocking) and return the bound port (useful with port 0)."""
        from pynetdicom import evt

        handlers = [
            (evt.EVT_C_ECHO, lambda event: SUCCESS),
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_CONN_CLOSE, self._on_close),
            (evt.EVT_REJECTED, self._on_rejected),
        ]
        try:
            self._server = self._ae.start_server((self.host, self.port), block=False, evt_handlers=handlers)
        except OSError as exc:
            raise GpedgeError(f"DICOM port {self.host}:{self.port} cannot be opened ({exc}); choose another with --port") from exc
        self.port = self._server.server_address[1]
        return self.port

    @property
    def active_associations(self) -> int:
        return len(self._server.active_associations) if self._server is not None else 0

    def stop(self, grace: float = 5.0) -> None:
        """Stop accepting associations, let open ones finish for ``grace`` seconds, then abort them
        (their unacknowledged instances are the sender's to send again)."""
        if self._server is None:
            return
        server, self._server = self._server, None
        server.shutdown()
        deadline = time.monotonic() + grace
        while server.active_associations and time.monotonic() < deadline:
            time.sleep(0.05)
        for assoc in server.active_associations:
            assoc.abort()

    # -- handlers ------------------------------------------------------------------------------
    def _on_store(self, event) -> int:
        caller = event.assoc.requestor.ae_title
        sop_class = str(event.request.AffectedSOPClassUID)
        sop_uid = str(event.request.AffectedSOPInstanceUID)
        if sop_class not in self._mr:
            log.warning("C-STORE from %s refused: SOP class %s is not MR image storage (%s)", caller, sop_class, sop_uid)
            return SOP_CLASS_NOT_SUPPORTED
        try:
            ds = event.dataset
            study_uid = ds.get("StudyInstanceUID")
            series_uid = ds.get("SeriesInstanceUID")
            problem = _check(ds, sop_class, sop_uid)
        except Exception as exc:  # pydicom raises many types for a malformed data set
            log.warning("C-STORE from %s refused: data set %s cannot be decoded (%s)", caller, sop_uid, exc)
            return CANNOT_UNDERSTAND
        if problem:
            log.warning("C-STORE from %s refused: %s: %s", caller, sop_uid, problem)
            return DATASET_MISMATCH
        try:
            self.spool.store(
                str(study_uid), str(series_uid), sop_uid, event.encoded_dataset(include_meta=True), caller,
                id(event.assoc), self.max_pending,
            )
        except SpoolFull as exc:
            log.warning("C-STORE from %s refused: %s (series %s)", caller, exc, series_uid)
            return OUT_OF_RESOURCES
        except OSError as exc:
            log.error("C-STORE from %s refused: cannot write %s to the spool (%s)", caller, sop_uid, exc)
            return OUT_OF_RESOURCES
        return SUCCESS

    def _on_close(self, event) -> None:
        self.spool.sender_closed(id(event.assoc))

    def _on_rejected(self, event) -> None:
        log.warning("association from %s (%s) rejected", event.assoc.requestor.ae_title, event.assoc.requestor.address)


def _check(ds, sop_class: str, sop_uid: str) -> str | None:
    """What makes an MR data set unusable, or None."""
    if str(ds.get("SOPClassUID", "")) != sop_class:
        return f"SOPClassUID {ds.get('SOPClassUID')} differs from the request's {sop_class}"
    if str(ds.get("SOPInstanceUID", "")) != sop_uid:
        return f"SOPInstanceUID {ds.get('SOPInstanceUID')} differs from the request's {sop_uid}"
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID"):
        if not valid_uid(str(ds.get(keyword, ""))):
            return f"{keyword} {ds.get(keyword)!r} is missing or not a valid UID"
    if not valid_uid(sop_uid):
        return "SOPInstanceUID is not a valid UID"
    for keyword in ("Rows", "Columns", "PixelData"):
        if keyword not in ds:
            return f"no {keyword}: not an image"
    return None
