"""``gpedge serve``: a DICOM node (storage SCP) and an HTTP API with a web page, in one process.

- :mod:`~gpedge.serve.spool`: received instances on disk, durably, with a state file per series;
- :mod:`~gpedge.serve.scp`: the storage SCP (pynetdicom) writing into the spool;
- :mod:`~gpedge.serve.worker`: complete series to jobs, a bounded pool of worker threads;
- :mod:`~gpedge.serve.processing`: a job through ``gpedge.dicom.process_study``;
- :mod:`~gpedge.serve.sender`: results to the destination node (C-STORE);
- :mod:`~gpedge.serve.http`: the Starlette app (``/predict``, ``/health``, the page in ``static/``);
- :mod:`~gpedge.serve.node`: configuration, start-up and shutdown on SIGTERM.

Needs the ``[serve]`` extra (pynetdicom, Starlette, uvicorn); :func:`require_extra` says so clearly.
"""
from __future__ import annotations

import importlib.util

from gpedge.errors import GpedgeError

_EXTRA = ("pynetdicom", "starlette", "uvicorn")


def require_extra() -> None:
    """Raise a clear error naming the ``[serve]`` extra when one of its packages is missing."""
    missing = [name for name in _EXTRA if importlib.util.find_spec(name) is None]
    if missing:
        raise GpedgeError(
            f"gpedge serve needs the [serve] extra ({', '.join(missing)} not installed): pip install 'gpedge[serve]'"
        )
