"""The HTTP API and web page (Starlette): ``POST /predict``, ``GET /health``, ``GET /``.

``POST /predict`` takes the scan as the raw request body — PNG, JPEG, TIFF, DICOM (Part 10
file) or NIfTI (``.nii``/``.nii.gz``), recognised by its content — or, for a model of several
contrasts, as ``multipart/form-data`` with one file part per contrast, named after it (``t1``,
``t2``, ``t1ce``, ``flair``; ``curl -F t1=@t1.nii.gz -F t2=@t2.nii.gz ...``) — and answers
``{"file", "results": [...], "key_slice", "speed_ms"}`` where each element of ``results`` is the
record ``gpedge infer --json`` prints for that image or slice, and ``speed_ms`` holds the key
slice's stages plus ``upload`` (reading the body), ``render`` (mask/overlay PNGs, when asked)
and ``server_total``. Query parameters: ``name`` (file
name reported back), ``mask=png`` (each record gets ``mask_png``, a base64 PNG, 255 inside the
mask), ``overlay=png`` (``overlay_png`` of the key slice: scan, heatmap, mask outline). Errors
are JSON ``{"error": message}``: 400 empty or malformed request, 413 body over the limit, 415
unrecognised format, 422 a file that cannot be read or does not fit the model.
"""
from __future__ import annotations

import base64
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from gpedge.errors import GpedgeError
from gpedge.runtime.io import TIFF_MAGIC

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
_FORMATS = "PNG, JPEG, TIFF, DICOM (Part 10 file with the DICM preamble) or NIfTI (.nii, .nii.gz)"


class _HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def sniff_suffix(data: bytes) -> str:
    """The file suffix matching an upload's content; raises a 415 error for anything else."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return ".png"
    if data.startswith(b"\xff\xd8\xff"):
        return ".jpg"
    if data[:4] in TIFF_MAGIC:
        return ".tif"
    if data[128:132] == b"DICM":
        return ".dcm"
    if data.startswith(b"\x1f\x8b"):
        return ".nii.gz"
    for size, magic_at in ((348, 344), (540, 4)):
        if any(int.from_bytes(data[:4], order) == size for order in ("little", "big")) and data[
            magic_at : magic_at + 3
        ] in (b"n+1", b"ni1", b"n+2", b"ni2"):
            return ".nii"
    raise _HTTPError(415, f"the body is not a recognised scan; send a {_FORMATS} file")


def _png_base64(image: np.ndarray) -> str:
    import cv2

    arr = np.ascontiguousarray(image)
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", arr)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return base64.b64encode(buf.tobytes()).decode("ascii")


def _safe_name(name: str | None) -> str:
    """The reported file name: the upload's base name, printable, at most 128 characters."""
    base = Path(name or "upload").name
    return "".join(c for c in base if c.isprintable())[:128] or "upload"


def contrast_parts(body: bytes, content_type: str, channels: list[str]) -> dict[str, bytes]:
    """The files of a ``multipart/form-data`` body by the contrast each part is named after, one per channel."""
    from email import policy
    from email.parser import BytesParser

    header = b"Content-Type: " + content_type.encode("latin-1", "replace") + b"\r\n\r\n"
    message = BytesParser(policy=policy.HTTP).parsebytes(header + body)
    if not message.is_multipart():
        raise _HTTPError(400, "the multipart/form-data body has no parts (boundary missing or wrong)")
    expected = ", ".join(channels)
    parts: dict[str, bytes] = {}
    for part in message.iter_parts():
        name = (part.get_param("name", header="content-disposition") or "").lower()
        if name not in channels:
            raise _HTTPError(400, f"form part {name!r} is not a contrast of this model; name one file part after each of {expected}")
        if name in parts:
            raise _HTTPError(400, f"form part {name!r} is sent twice; send one file per contrast")
        parts[name] = part.get_payload(decode=True) or b""
    missing = [c for c in channels if c not in parts]
    if missing:
        raise _HTTPError(400, f"no form part for {', '.join(missing)}; this model reads {expected}, one file part each")
    empty = [c for c in channels if not parts[c]]
    if empty:
        raise _HTTPError(400, f"form part {empty[0]!r} is empty; send the scan file of that contrast")
    return parts


def _write_upload(directory: Path, stem: str, content: bytes, part: str | None) -> Path:
    """Write one uploaded file under the suffix its content shows; ``part`` names its form part in errors."""
    try:
        suffix = sniff_suffix(content)
    except _HTTPError as exc:
        raise _HTTPError(exc.status, f"form part {part!r}: {exc}" if part else str(exc)) from None
    path = directory / f"{stem}{'_' + part if part else ''}{suffix}"
    path.write_bytes(content)
    return path


def predict_bytes(predictor, data: bytes | dict[str, bytes], name: str, mask_png: bool, overlay_png: bool) -> dict[str, Any]:
    """Run ``predictor`` on an uploaded scan (one file, or one per contrast by name) and build the response
    (blocking: call off the event loop)."""
    from gpedge.runtime.save import key_slice

    with tempfile.TemporaryDirectory(prefix="gpedge-upload-") as tmp:
        folder, stem = Path(tmp), Path(name).name.split(".")[0] or "upload"
        if isinstance(data, dict):
            source: Path | dict[str, Path] = {c: _write_upload(folder, stem, content, c) for c, content in data.items()}
            labels = {str(path): f"{name} ({c})" for c, path in source.items()}
        else:
            source = _write_upload(folder, stem, data, None)
            labels = {str(source): name}
        try:
            scan = predictor.read_scan(source, name=stem)
            results = predictor.predict_scans([scan])[0]
        except GpedgeError as exc:
            message = str(exc)
            for path, label in labels.items():
                message = message.replace(path, label)
            raise _HTTPError(422, message) from exc
    start = time.perf_counter()
    records = []
    for result in results:
        record = {**result.to_dict(), "file": name}
        if mask_png:
            record["mask_png"] = _png_base64(result.mask.astype(np.uint8) * 255)
        records.append(record)
    key = key_slice(results)
    response: dict[str, Any] = {
        "file": name,
        "results": records,
        "key_slice": key.source.slice,
        "speed_ms": dict(key.speed),
    }
    if overlay_png:
        response["overlay_png"] = _png_base64(key.plot())
    if mask_png or overlay_png:
        response["speed_ms"]["render"] = (time.perf_counter() - start) * 1e3
    return response


async def _read_body(request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise _HTTPError(400, f"Content-Length {declared!r} is not a number")
        if int(declared) > limit:
            raise _HTTPError(413, _too_large(int(declared), limit))
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _HTTPError(413, _too_large(size, limit))
        chunks.append(chunk)
    if not size:
        raise _HTTPError(400, f"empty body; POST the scan file itself ({_FORMATS}) as the request body")
    return b"".join(chunks)


def _too_large(size: int, limit: int) -> str:
    return (
        f"the body ({size / 2**20:.1f} MiB or more) exceeds this server's limit of {limit / 2**20:.1f} MiB; "
        "send a smaller scan or start the server with a larger --max-upload-mb"
    )


def model_info(predictor) -> dict[str, Any]:
    """What /health says about the loaded model."""
    manifest = predictor.package.manifest
    return {
        "path": str(predictor.package.root),
        "arch": manifest.get("model", {}).get("arch"),
        "classes": list(predictor.classes),
        "channels": list(predictor.channels),
        "image_size": list(predictor.image_size),
        "created": manifest.get("created"),
        "gpedge_version": manifest.get("gpedge_version"),
    }


def create_app(
    predictor,
    *,
    max_upload_bytes: int = 64 * 2**20,
    concurrency: int = 2,
    node_status: Callable[[], dict[str, Any]] | None = None,
):
    """The Starlette application serving ``predictor``.

    ``concurrency`` bounds the predictions running at once (others wait); ``node_status``
    adds the DICOM node's state to ``/health``.
    """
    import anyio
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    from gpedge._version import __version__

    limiter = anyio.CapacityLimiter(concurrency)

    async def index(request: Request) -> FileResponse:
        return FileResponse(STATIC / "index.html")

    async def health(request: Request) -> JSONResponse:
        body = {
            "status": "ok",
            "gpedge_version": __version__,
            "model": model_info(predictor),
            "backend": predictor.backend_name,
            "backend_description": predictor.backend_description,
            "max_upload_bytes": max_upload_bytes,
        }
        if node_status is not None:
            body["dicom"] = node_status()
        return JSONResponse(body)

    async def predict(request: Request) -> JSONResponse:
        start = time.perf_counter()
        data = await _read_body(request, max_upload_bytes)
        received = time.perf_counter()
        params = request.query_params
        for key, allowed in (("mask", ("png",)), ("overlay", ("png",))):
            if key in params and params[key] not in allowed:
                raise _HTTPError(400, f"{key}={params[key]!r} is not supported; use {key}=png or leave it out")
        name = _safe_name(params.get("name"))
        content_type = request.headers.get("content-type", "")
        channels = list(predictor.channels)
        if content_type.lower().startswith("multipart/form-data"):
            upload: bytes | dict[str, bytes] = contrast_parts(data, content_type, channels)
        elif len(channels) > 1:
            raise _HTTPError(422, f"this model reads {len(channels)} contrasts ({', '.join(channels)}); POST them as "
                                  "multipart/form-data with one file part per contrast, named after it "
                                  f"(curl {' '.join(f'-F {c}=@{c}.nii.gz' for c in channels)})")
        else:
            upload = data
        response = await anyio.to_thread.run_sync(
            predict_bytes, predictor, upload, name, "mask" in params, "overlay" in params, limiter=limiter
        )
        response["speed_ms"]["upload"] = (received - start) * 1e3
        response["speed_ms"]["server_total"] = (time.perf_counter() - start) * 1e3
        return JSONResponse(response)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        status = exc.status if isinstance(exc, _HTTPError) else exc.status_code
        message = str(exc) if isinstance(exc, _HTTPError) else exc.detail
        return JSONResponse({"error": message}, status_code=status)

    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s: unexpected %s: %s", request.method, request.url.path, type(exc).__name__, exc)
        log.debug("traceback", exc_info=exc)
        return JSONResponse({"error": "internal error while processing the request; see the server log"}, status_code=500)

    return Starlette(
        routes=[
            Route("/", index),
            Route("/health", health),
            Route("/predict", predict, methods=["POST"]),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        exception_handlers={_HTTPError: http_error, HTTPException: http_error, Exception: server_error},
    )
