"""The HTTP API of a real ``gpedge serve`` process (uvicorn): results equal ``gpedge infer``'s, JSON errors."""
from __future__ import annotations

import base64
import gzip
import http.client
import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import numpy as np
import pytest

from mr_series import HGG_VOLUME
from conftest import EXAMPLES, EXAMPLE_SCAN

FILES = ["hgg_flair.png", "hgg_flair.dcm", "lgg_flair.nii.gz"]
#: Fields of a ``gpedge infer --json`` record that depend on the run, not on the prediction.
RUN_FIELDS = ("speed_ms", "file", "outputs")


def post(server, body: bytes, query: str = "", headers: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(f"{server.http_url}/predict{query}", data=body, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        text = exc.read().decode()
        assert exc.headers["content-type"] == "application/json", text
        assert "Traceback" not in text
        return exc.code, json.loads(text)


@pytest.fixture(scope="module")
def infer_records(tmp_path_factory) -> tuple[dict, Path]:
    """``gpedge infer --json --out`` on the example files: records by (file name, slice), output folder."""
    out = tmp_path_factory.mktemp("infer")
    proc = subprocess.run([sys.executable, "-m", "gpedge.cli", "infer", *(str(EXAMPLES / f) for f in FILES), "--json",
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    return {(Path(r["file"]).name, r.get("slice")): r for r in records}, out


def test_health_names_model_and_backend(http_server) -> None:
    with urllib.request.urlopen(f"{http_server.http_url}/health", timeout=30) as response:
        health = json.loads(response.read())
    assert health["status"] == "ok"
    assert health["model"]["arch"] == "gp-unet" and health["model"]["classes"] == ["Healthy", "LGG", "HGG"]
    assert health["model"]["path"].endswith("default_model")
    assert health["backend"] == "onnxruntime" and "onnxruntime" in health["backend_description"]
    assert health["max_upload_bytes"] == 2**20 and "dicom" not in health


@pytest.mark.parametrize("name", FILES)
def test_predict_matches_gpedge_infer(http_server, infer_records, name: str) -> None:
    records, _ = infer_records
    status, answer = post(http_server, (EXAMPLES / name).read_bytes(), f"?name={name}")
    assert status == 200, answer
    expected = [r for (file, _), r in records.items() if file == name]
    assert len(answer["results"]) == len(expected) > 0
    for got in answer["results"]:
        want = records[(name, got.get("slice"))]
        assert got["file"] == name
        assert {k: v for k, v in got.items() if k not in RUN_FIELDS} == {k: v for k, v in want.items() if k not in RUN_FIELDS}
        assert set(got["speed_ms"]) == {"load", "preprocess", "inference", "postprocess"}
    assert {"upload", "server_total", "inference"} <= set(answer["speed_ms"])


def _png(b64: str) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(base64.b64decode(b64), np.uint8), cv2.IMREAD_UNCHANGED)


def test_mask_and_overlay_on_request(http_server, infer_records) -> None:
    _, out = infer_records
    status, answer = post(http_server, (EXAMPLE_SCAN).read_bytes(), "?mask=png&overlay=png&name=a.png")
    assert status == 200
    (record,) = answer["results"]
    mask = _png(record["mask_png"])
    assert np.array_equal(mask, cv2.imread(str(out / "hgg_flair_mask.png"), cv2.IMREAD_UNCHANGED))
    assert int((mask > 0).sum()) == record["mask_area_px"] > 0
    overlay = _png(answer["overlay_png"])
    assert overlay.ndim == 3 and min(overlay.shape[:2]) >= 512
    status, plain = post(http_server, (EXAMPLE_SCAN).read_bytes())
    assert "mask_png" not in plain["results"][0] and "overlay_png" not in plain


def test_nifti_volume_key_slice(http_server) -> None:
    status, answer = post(http_server, HGG_VOLUME.read_bytes(), "?overlay=png&mask=png")
    assert status == 200
    areas = {r["slice"]: r["mask_area_px"] for r in answer["results"]}
    assert answer["key_slice"] == max(areas, key=areas.get) and areas[answer["key_slice"]] > 0
    assert all(int((_png(r["mask_png"]) > 0).sum()) == r["mask_area_px"] for r in answer["results"])


def test_bad_inputs_get_clear_json_errors(http_server) -> None:
    png = (EXAMPLE_SCAN).read_bytes()
    status, answer = post(http_server, b"")
    assert status == 400 and "empty body" in answer["error"]
    status, answer = post(http_server, b"%PDF-1.7 not a scan" * 20, "?name=report.pdf")
    assert status == 415 and "PNG, JPEG, TIFF, DICOM" in answer["error"]
    status, answer = post(http_server, png[: len(png) // 3], "?name=cut.png")
    assert status == 422 and answer["error"].startswith("cut.png: ") and "gpedge-upload" not in answer["error"]
    dicom = bytearray((EXAMPLES / "hgg_flair.dcm").read_bytes())
    status, answer = post(http_server, bytes(dicom[: len(dicom) - 40000]), "?name=cut.dcm")
    assert status == 422 and "cut.dcm" in answer["error"]
    status, answer = post(http_server, png, "?mask=rle")
    assert status == 400 and "mask='rle' is not supported" in answer["error"]


def _early_response(server, headers: dict[str, str], body: bytes) -> tuple[int, dict]:
    """Send headers and the first ``body`` bytes only, then read the answer: a server that refuses a
    body as too large answers without waiting for the rest (and closes the connection)."""
    url = urlsplit(server.http_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    try:
        connection.putrequest("POST", "/predict")
        for key, value in headers.items():
            connection.putheader(key, value)
        connection.endheaders()
        connection.send(body)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_request_size_limit(http_server) -> None:
    status, answer = _early_response(http_server, {"Content-Length": str(2 * 2**20)}, b"\x89PNG\r\n\x1a\n")
    assert status == 413 and "limit of 1.0 MiB" in answer["error"] and "--max-upload-mb" in answer["error"]
    # a chunked upload declares no length: the limit is enforced while reading
    chunk = bytes(2**16)
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(2**20 // len(chunk) + 1))
    status, answer = _early_response(http_server, {"Transfer-Encoding": "chunked"}, body)
    assert status == 413 and "exceeds" in answer["error"]
    status, answer = post(http_server, (EXAMPLE_SCAN).read_bytes())  # the server is still fine
    assert status == 200


def test_unknown_routes_and_methods_answer_json(http_server) -> None:
    for path, method, code in (("/nope", "GET", 404), ("/predict", "GET", 405)):
        request = urllib.request.Request(f"{http_server.http_url}{path}", method=method)
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request, timeout=30)
        assert info.value.code == code and "error" in json.loads(info.value.read())


def _multipart(parts: dict[str, bytes]) -> tuple[bytes, dict[str, str]]:
    """A multipart/form-data body with one file part per name, and its Content-Type header."""
    boundary = "gpedge-test-boundary-7f3a"
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}.png"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n"
        for name, data in parts.items()
    ) + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


@pytest.mark.slow
def test_four_contrast_model_takes_one_form_part_per_contrast(four_contrast_server) -> None:
    files = {c: EXAMPLES / f"lgg_heldout_{c}.png" for c in ("t1", "t2", "t1ce", "flair")}
    proc = subprocess.run([sys.executable, "-m", "gpedge.cli", "infer", "--model", "gp-unet-synth", "--json",
                           *(arg for c, path in files.items() for arg in (f"--{c}", str(path)))],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (want,) = [json.loads(line) for line in proc.stdout.splitlines()]
    parts = {c: path.read_bytes() for c, path in files.items()}
    body, headers = _multipart(dict(reversed(parts.items())))  # the parts' order does not matter
    status, answer = post(four_contrast_server, body, "?name=lgg", headers)
    assert status == 200, answer
    (got,) = answer["results"]
    assert {k: v for k, v in got.items() if k not in RUN_FIELDS} == {k: v for k, v in want.items() if k not in RUN_FIELDS}

    status, answer = post(four_contrast_server, parts["flair"])
    assert status == 422 and "multipart/form-data" in answer["error"] and "t1, t2, t1ce, flair" in answer["error"]
    for sent, message in (({c: parts[c] for c in ("t1", "t2")}, "no form part for t1ce, flair"),
                          ({**parts, "dwi": parts["t1"]}, "form part 'dwi' is not a contrast"),
                          ({**parts, "flair": b""}, "form part 'flair' is empty")):
        body, headers = _multipart(sent)
        status, answer = post(four_contrast_server, body, "", headers)
        assert status == 400 and message in answer["error"], answer
    body, headers = _multipart({**parts, "t2": b"%PDF-1.7 not a scan" * 20})
    status, answer = post(four_contrast_server, body, "", headers)
    assert status == 415 and answer["error"].startswith("form part 't2': ")


def test_uploads_are_recognised_by_content(tmp_path: Path) -> None:
    """Each documented format, BigTIFF and big-endian TIFF included, maps to the suffix its reader takes."""
    import tifffile

    from gpedge.serve.http import sniff_suffix

    image = np.arange(32 * 32, dtype=np.uint16).reshape(32, 32)
    for options in ({}, {"bigtiff": True}, {"byteorder": ">"}, {"bigtiff": True, "byteorder": ">"}):
        tifffile.imwrite(tmp_path / "a.tif", image, **options)
        assert sniff_suffix((tmp_path / "a.tif").read_bytes()) == ".tif", options
    assert sniff_suffix(cv2.imencode(".png", image)[1].tobytes()) == ".png"
    assert sniff_suffix(cv2.imencode(".jpg", (image // 256).astype(np.uint8))[1].tobytes()) == ".jpg"
    assert sniff_suffix((EXAMPLES / "hgg_flair.dcm").read_bytes()) == ".dcm"
    assert sniff_suffix(HGG_VOLUME.read_bytes()) == ".nii.gz"
    assert sniff_suffix(gzip.decompress(HGG_VOLUME.read_bytes())) == ".nii"
