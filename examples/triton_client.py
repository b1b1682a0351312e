"""Send a scan to a gpedge model on Triton Inference Server and get label and mask back.

    python examples/triton_client.py examples/hgg_flair.png --model default_model           # HTTP, port 8000
    python examples/triton_client.py examples/lgg_flair.nii.gz --model default_model \\
        --protocol grpc --url localhost:8001 --out triton-out/

The repository comes from ``gpedge triton PKG REPO`` (see the README). The client needs
``tritonclient[all]`` and gpedge's runtime (numpy, OpenCV: reading scans, resizing, mapping the
mask back to the scan's resolution); no PyTorch, no ONNX Runtime. The model's config says what to
send: its inputs' shapes, the channels (``gpedge_channels``) and the package's mask offset
(``gpedge_mask_offset``), sent with every slice unless ``--offset`` overrides it.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gpedge.graph.contract import parse_mask_rule
from gpedge.preprocess import fit_image
from gpedge.runtime.io import Scan, load_input, write_png
from gpedge.runtime.maps import to_input_resolution

OUTPUTS = ("label", "probs", "heatmaps", "score", "threshold", "mask")
PORTS = {"http": 8000, "grpc": 8001}


@dataclass
class ModelInfo:
    """What the client reads from the model's config."""

    name: str
    batching: bool
    max_batch: int
    """Largest batch of one request (the package's; the engine's profile for a tensorrt_plan model)."""
    size: tuple[int, int]
    channels: list[str]
    classes: list[str]
    offset: float
    rule: np.ndarray | None
    """The ``mask_rule`` input to send (a tensorrt_plan model); None where the served graph fixes the rule."""
    post: str
    """The host-side step of the package's rule (``clean`` for ``+clean``, ``peak`` for ``+peak``, ``guided`` for
    ``+guided``, else ``""``), which the client applies at the scan's resolution."""


def model_info(config: dict[str, Any]) -> ModelInfo:
    """Parse a model config as Triton serves it in JSON (``get_model_config``, HTTP or gRPC ``as_json``)."""
    image = next(t for t in config["input"] if t["name"] == "image")
    dims = [int(d) for d in image["dims"]]
    parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
    max_batch = int(config.get("max_batch_size", 0))
    return ModelInfo(
        name=config["name"],
        batching=max_batch > 0,
        max_batch=int(parameters["gpedge_max_batch"]),
        size=(dims[-2], dims[-1]),
        channels=parameters["gpedge_channels"].split(","),
        classes=parameters["gpedge_classes"].split(","),
        offset=float(parameters["gpedge_mask_offset"]),
        rule=np.array([int(c) for c in parameters["gpedge_mask_rule_code"].split(",")], np.int32)
        if any(t["name"] == "mask_rule" for t in config["input"]) else None,
        post=parse_mask_rule(parameters["gpedge_mask_rule"]).post,
    )


def request_arrays(images: np.ndarray, info: ModelInfo, offset: float | None = None,
                   pixel_aspect: float = 1.0) -> dict[str, np.ndarray]:
    """The model inputs for raw (N, C, H, W) slices: fitted to the model size (``pixel_aspect``: the pixels'
    width over their height), one offset per slice (a model without Triton batching takes one offset per request)."""
    batch = np.stack([fit_image(image, info.size, pixel_aspect) for image in images]).astype(np.float32)
    value = info.offset if offset is None else offset
    shape = (len(batch), 1) if info.batching else (1,)
    arrays = {"image": batch, "offset": np.full(shape, value, dtype=np.float32)}
    return arrays if info.rule is None else {**arrays, "mask_rule": info.rule}


def results(scan: Scan, outputs: dict[str, np.ndarray], info: ModelInfo) -> list[dict[str, Any]]:
    """Label, probabilities and the mask at the scan's resolution (gpedge's one mask rule) per slice."""
    found = []
    for row in range(len(outputs["label"])):
        k = int(np.asarray(outputs["label"]).reshape(-1)[row])
        threshold = float(np.asarray(outputs["threshold"]).reshape(-1)[row])
        _, mask = to_input_resolution(outputs["heatmaps"][row], outputs["score"][row], threshold, outputs["mask"][row],
                                      scan.images.shape[-2:], post=info.post, image=scan.images[row], channels=info.channels,
                                      pixel_aspect=scan.pixel_aspect)
        found.append({"label": info.classes[k], "probabilities": dict(zip(info.classes, map(float, outputs["probs"][row]))),
                      "mask": mask})
    return found


class Client:
    """A thin wrapper over tritonclient's HTTP or gRPC client for one gpedge model."""

    def __init__(self, url: str, protocol: str, model: str) -> None:
        if protocol == "http":
            import tritonclient.http as api

            self._client = api.InferenceServerClient(url)
            config = self._client.get_model_config(model)
        else:
            import tritonclient.grpc as api

            self._client = api.InferenceServerClient(url)
            config = self._client.get_model_config(model, as_json=True)["config"]
        self._api = api
        self.info = model_info(config)

    def infer(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        inputs = []
        for name, array in arrays.items():
            tensor = self._api.InferInput(name, list(array.shape), "FP32")
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        outputs = [self._api.InferRequestedOutput(name) for name in OUTPUTS]
        response = self._client.infer(self.info.name, inputs, outputs=outputs)
        return {name: response.as_numpy(name) for name in OUTPUTS}

    def predict(self, scan: Scan, offset: float | None = None) -> list[dict[str, Any]]:
        """Every slice of ``scan``, at most the model's max batch per request."""
        found = []
        for start in range(0, len(scan.images), self.info.max_batch):
            part = Scan(images=scan.images[start : start + self.info.max_batch], pixel_spacing=scan.pixel_spacing)
            found += results(part, self.infer(request_arrays(part.images, self.info, offset, part.pixel_aspect)), self.info)
        return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scans", nargs="+", type=Path, help="PNG/JPEG/TIFF, DICOM, NIfTI files or BraTS patient folders")
    parser.add_argument("--model", required=True, help="model name in the Triton repository")
    parser.add_argument("--protocol", choices=tuple(PORTS), default="http")
    parser.add_argument("--url", help="server address (default localhost:8000 for HTTP, localhost:8001 for gRPC)")
    parser.add_argument("--offset", type=float, help="mask offset (default: the package's, from the model config)")
    parser.add_argument("--out", type=Path, help="folder for <scan>_mask.png (slice 0 of volumes)")
    args = parser.parse_args(argv)
    client = Client(args.url or f"localhost:{PORTS[args.protocol]}", args.protocol, args.model)
    for path in args.scans:
        scan = load_input(path, client.info.channels)
        found = client.predict(scan, args.offset)
        for index, result in enumerate(found):
            top = max(result["probabilities"].values())
            where = f"{path}" + (f" slice {index}" if len(found) > 1 else "")
            print(f"{where}: {result['label']} ({top:.1%}), mask {int(result['mask'].sum())} px")
        if args.out is not None:
            write_png(args.out / f"{scan.name or path.stem}_mask.png", found[0]["mask"].astype(np.uint8) * 255)
    return 0


if __name__ == "__main__":
    sys.exit(main())
