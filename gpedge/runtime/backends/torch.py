"""PyTorch reference backend: the fused model rebuilt from ``model.safetensors`` and the manifest.

Needs the ``train`` extra (torch, safetensors); torch is imported only when this backend is
created.
"""
from __future__ import annotations

import threading

import numpy as np

from gpedge.errors import BackendUnavailable, PackageError
from gpedge.package import ModelPackage
from gpedge.runtime.backends.base import Backend, check_precision


def load_package_network(package: ModelPackage):
    """The package's torch network (``model.safetensors``, sha256-checked) rebuilt from the manifest, in eval mode.

    Needs the ``train`` extra; raises ``PackageError`` when the weights do not fit the manifest's model.
    """
    from safetensors.torch import load_file

    from gpedge.models import create_model

    info = package.manifest["model"]
    weights = package.file("model.safetensors")
    try:
        network = create_model(
            info["arch"], in_channels=len(package.channels), num_classes=len(package.classes), **info.get("options", {})
        )
        state = load_file(str(weights))
        if state and all(key.startswith("network.") for key in state):
            state = {key.removeprefix("network."): value for key, value in state.items()}
        network.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise PackageError(
            f"{weights} cannot be loaded into the network described by {package.root / 'manifest.json'} "
            f"(model {info.get('arch')!r}: {exc}); re-export the package"
        ) from exc
    return network.eval()


def load_fused_model(package: ModelPackage):
    """The package's network wrapped in the fused head (normalisation, softmax, mask rule), in eval mode."""
    from gpedge.graph.fused import FusedModel

    return FusedModel(load_package_network(package), package.no_tumour_class, package.image_size,
                      package.flip_average, package.class_bias).eval()


class TorchBackend(Backend):
    """Runs the fused torch module (the function the exported graphs compute) in eval mode (FP32, CPU or CUDA)."""

    name = "torch"

    def __init__(
        self, package: ModelPackage, device: str | int | None = None, *, threads: int | None = None, precision: str = "auto"
    ) -> None:
        super().__init__(package)
        check_precision(precision, ("fp32",), self.name)
        try:
            import safetensors  # noqa: F401
            import torch
        except ImportError as exc:
            raise BackendUnavailable(
                f"torch backend: {exc.name or exc} is not installed; install the train extra: pip install 'gpedge[train]'"
            ) from exc
        self._torch = torch
        self.device = torch.device("cpu" if device is None else f"cuda:{device}" if isinstance(device, int) else device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailable("torch backend: CUDA was requested but this torch build sees no GPU; use device='cpu'")
        if threads is not None:
            torch.set_num_threads(threads)  # process-wide in torch
        self._model = load_fused_model(package).to(self.device)
        self._lock = threading.Lock()

    @property
    def description(self) -> str:
        return f"PyTorch {self._torch.__version__} (FP32 reference) on {self.device}"

    def run(self, batch: np.ndarray, offset: float | None = None, rule: str | None = None) -> dict[str, np.ndarray]:
        torch = self._torch
        image = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
        inputs = [torch.from_numpy(v).to(self.device) for v in self.rule_inputs(offset, rule).values()]
        with self._lock, torch.inference_mode():
            out = self._forward(image, *inputs)
        return {name: t.cpu().numpy() for name, t in out._asdict().items()}

    def _forward(self, image, offset, rule):
        """The fused model on device tensors (a hook for timing subclasses)."""
        return self._model(image, offset, rule)

    def close(self) -> None:
        self._model = None
