"""PyTorch reference backend: the fused model rebuilt from ``model.safetensors`` and the manifest.

Needs the ``train`` extra (torch, safetensors); torch is imported only when this backend is
created.
"""
from __future__ import annotations

import threading

import numpy as np

from gpedge.errors import BackendUnavailable, PackageError
from gpedge.package import ModelPackage
from gpedge.runtime.backends.base import OUTPUT_NAMES, Backend


class TorchBackend(Backend):
    """Runs the export helper's fused module in eval mode (FP32, CPU or CUDA)."""

    name = "torch"
    accepts_offset = True

    def __init__(self, package: ModelPackage, device: str | int | None = None) -> None:
        super().__init__(package)
        try:
            import torch
            from safetensors.torch import load_file

            from gpedge.export.fused import FusedModel
            from gpedge.models import create_model
        except ImportError as exc:
            raise BackendUnavailable(
                f"torch backend: {exc.name or exc} is not installed; install the train extra: pip install 'gpedge[train]'"
            ) from exc
        self._torch = torch
        self.device = torch.device("cpu" if device is None else f"cuda:{device}" if isinstance(device, int) else device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailable("torch backend: CUDA was requested but this torch build sees no GPU; use device='cpu'")
        spec = package.manifest["model"]
        path = package.file("model.safetensors")
        network = create_model(
            spec["arch"], in_channels=len(package.channels), num_classes=len(package.classes), **spec.get("options", {})
        )
        state = load_file(str(path))
        if all(key.startswith("network.") for key in state):
            state = {key[len("network."):]: value for key, value in state.items()}
        try:
            network.load_state_dict(state)
        except RuntimeError as exc:
            raise PackageError(f"{path} does not fit the model in manifest.json ({exc}); re-export the package") from exc
        self._model = FusedModel(network, package.no_tumour_class).to(self.device).eval()
        self._lock = threading.Lock()

    @property
    def description(self) -> str:
        return f"PyTorch {self._torch.__version__} (FP32 reference) on {self.device}"

    def run(self, batch: np.ndarray, offset: float | None = None) -> dict[str, np.ndarray]:
        torch = self._torch
        value = self.effective_offset(offset)
        image = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
        with self._lock, torch.inference_mode():
            out = self._model(image, torch.tensor([value], dtype=torch.float32, device=self.device))
        return {name: t.cpu().numpy() for name, t in zip(OUTPUT_NAMES, out)}

    def close(self) -> None:
        self._model = None
