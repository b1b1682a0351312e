"""ONNX Runtime backend: CPU, or the CUDA execution provider when it is available."""
from __future__ import annotations

import logging
import os
from functools import lru_cache

import numpy as np

from gpedge.errors import BackendUnavailable, PackageError
from gpedge.package import ModelPackage
from gpedge.runtime.backends.base import OUTPUT_NAMES, Backend

log = logging.getLogger(__name__)

CUDA_EP = "CUDAExecutionProvider"
CPU_EP = "CPUExecutionProvider"


@lru_cache(maxsize=1)
def physical_cores() -> int:
    """Physical CPU cores this process may run on (hyper-threads counted once)."""
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    cores: set[tuple[str, str]] = set()
    try:
        with open("/proc/cpuinfo") as fh:
            blocks = fh.read().strip().split("\n\n")
    except OSError:
        return max(1, len(allowed))
    for block in blocks:
        fields = dict(line.split(":", 1) for line in block.splitlines() if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        if int(fields.get("processor", -1)) in allowed:
            cores.add((fields.get("physical id", "0"), fields.get("core id", fields.get("processor", "0"))))
    return max(1, len(cores) or len(allowed))


def cuda_provider_available() -> bool:
    """Whether this onnxruntime build offers the CUDA execution provider."""
    import onnxruntime as ort

    return CUDA_EP in ort.get_available_providers()


def _device_index(device: str | int | None) -> int:
    if isinstance(device, int):
        return device
    if device and ":" in device:
        return int(device.split(":", 1)[1])
    return 0


class OnnxRuntimeBackend(Backend):
    """Runs ``model.onnx`` (FP32) in one shared, thread-safe ``InferenceSession``.

    ``device``: ``None`` (CUDA when available, else CPU, saying so), ``"cpu"``, or
    ``"cuda"`` / ``"cuda:N"`` / an int (an error if the CUDA provider cannot be used).
    """

    name = "onnxruntime"

    def __init__(self, package: ModelPackage, device: str | int | None = None) -> None:
        super().__init__(package)
        import onnxruntime as ort

        wants_cuda = device is not None and (isinstance(device, int) or str(device).startswith("cuda"))
        if device is not None and not wants_cuda and str(device) != "cpu":
            raise BackendUnavailable(f"onnxruntime backend: unknown device {device!r}; use 'cpu', 'cuda' or 'cuda:N'")
        if wants_cuda and not cuda_provider_available():
            raise BackendUnavailable(
                "onnxruntime backend: device 'cuda' needs the CUDA execution provider, which this onnxruntime "
                "build lacks; install 'onnxruntime-gpu' (matching your CUDA version) or use device='cpu'"
            )
        use_cuda = wants_cuda or (device is None and cuda_provider_available())
        providers: list = [CPU_EP]
        if use_cuda:
            providers.insert(0, (CUDA_EP, {"device_id": _device_index(device)}))

        options = ort.SessionOptions()
        options.intra_op_num_threads = physical_cores()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only; provider fallbacks are checked and reported below
        path = package.file("model.onnx")
        try:
            self._session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types for damaged graphs
            raise PackageError(
                f"{path} cannot be loaded by onnxruntime ({str(exc).splitlines()[0]}); re-export the package"
            ) from exc
        active = self._session.get_providers()
        if use_cuda and CUDA_EP not in active:
            if wants_cuda:
                raise BackendUnavailable(
                    "onnxruntime backend: the CUDA execution provider failed to initialise (see onnxruntime's log "
                    "above: usually a CUDA/cuDNN library mismatch); fix the CUDA install or use device='cpu'"
                )
            log.warning("onnxruntime: the CUDA execution provider failed to initialise; running on the CPU instead")
        self.providers = active
        self.device = "cuda" if CUDA_EP in active else "cpu"
        names = {o.name for o in self._session.get_outputs()}
        missing = [n for n in OUTPUT_NAMES if n not in names]
        inputs = [i.name for i in self._session.get_inputs()]
        inputs += [i.name for i in self._session.get_overridable_initializers() if i.name not in inputs]
        self.accepts_offset = "offset" in inputs
        if missing or "image" not in inputs or not set(inputs) <= {"image", "offset"}:
            raise PackageError(
                f"{path}: graph I/O does not follow the gpedge contract (missing outputs {missing}); re-export the package"
            )

    @property
    def description(self) -> str:
        threads = f", {physical_cores()} threads" if self.device == "cpu" else ""
        return f"onnxruntime {self._ort_version()} on {self.device} ({', '.join(self.providers)}{threads})"

    @staticmethod
    def _ort_version() -> str:
        import onnxruntime as ort

        return ort.__version__

    def run(self, batch: np.ndarray, offset: float | None = None) -> dict[str, np.ndarray]:
        feed = {"image": np.ascontiguousarray(batch, dtype=np.float32)}
        if self.accepts_offset:
            feed["offset"] = np.array([self.effective_offset(offset)], dtype=np.float32)
        outputs = self._session.run(list(OUTPUT_NAMES), feed)
        return self.apply_host_offset(dict(zip(OUTPUT_NAMES, outputs)), offset)

    def close(self) -> None:
        self._session = None
