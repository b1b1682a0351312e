"""ONNX Runtime backend: CPU, or the CUDA execution provider when it is available."""
from __future__ import annotations

import logging
import threading
from functools import lru_cache

import numpy as np

from gpedge.cpus import physical_cores
from gpedge.errors import BackendUnavailable, PackageError
from gpedge.graph.contract import INPUT, OUTPUTS
from gpedge.package import GRAPHS, ModelPackage
from gpedge.runtime.backends.base import Backend, check_graph, check_io, check_precision

log = logging.getLogger(__name__)

CUDA_EP = "CUDAExecutionProvider"
CPU_EP = "CPUExecutionProvider"
#: Graph optimisation levels by name -> ``onnxruntime.GraphOptimizationLevel`` member.
OPTIMIZATIONS = {"disabled": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
                 "all": "ORT_ENABLE_ALL"}
DEFAULT_OPTIMIZATION = "all"
#: ONNX Runtime's tensor type names -> numpy dtype names.
_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int32)": "int32",
              "tensor(int64)": "int64", "tensor(uint8)": "uint8", "tensor(bool)": "bool"}


#: Distributions that all install the ``onnxruntime`` module: only one may be installed at a time.
ORT_DISTRIBUTIONS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml", "onnxruntime-qnn")


@lru_cache(maxsize=1)
def install_conflict() -> str | None:
    """A sentence naming the ONNX Runtime builds installed side by side (they overwrite each other's
    ``onnxruntime`` module, typically leaving the CPU build), or None when there is one."""
    from importlib import metadata

    found = []
    for name in ORT_DISTRIBUTIONS:
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        found.append(name)
    if len(found) < 2:
        return None
    keep = next((name for name in found if name != "onnxruntime"), found[0])
    return (
        f"{' and '.join(found)} are installed together and share one 'onnxruntime' module, so the wrong build may "
        f"run; keep one: pip uninstall -y {' '.join(found)} && pip install {keep}"
    )


def cuda_provider_available() -> bool:
    """Whether this onnxruntime build offers the CUDA execution provider."""
    import onnxruntime as ort

    return CUDA_EP in ort.get_available_providers()


def _new_session(path: str, options, providers: list):
    """An ``InferenceSession`` created on a short-lived helper thread.

    With ``session.set_denormal_as_zero`` ONNX Runtime switches the thread that creates the session
    (and its own pool threads) to flush-to-zero / denormals-are-zero; creating it elsewhere keeps
    that floating-point mode out of the application's threads (a scanner's own numerics).
    """
    import onnxruntime as ort

    made: dict[str, object] = {}

    def create() -> None:
        try:
            made["session"] = ort.InferenceSession(path, sess_options=options, providers=providers)
        except Exception as exc:  # re-raised on the caller's thread
            made["error"] = exc

    worker = threading.Thread(target=create, name="gpedge-onnxruntime-session")
    worker.start()
    worker.join()
    if "error" in made:
        raise made["error"]  # type: ignore[misc]
    return made["session"]


def _device_index(device: str | int | None) -> int:
    if isinstance(device, int):
        return device
    if device and ":" in device:
        return int(device.split(":", 1)[1])
    return 0


class OnnxRuntimeBackend(Backend):
    """Runs a fused ONNX graph of the package in one shared, thread-safe ``InferenceSession``.

    ``device``: ``None`` (CUDA when available, else CPU, saying so), ``"cpu"``, or
    ``"cuda"`` / ``"cuda:N"`` / an int (an error if the CUDA provider cannot be used).
    ``threads``: intra-op threads (default: the physical cores). ``optimization``: graph
    optimisation level, one of :data:`OPTIMIZATIONS` (``all`` adds the NCHWc layout transforms).
    ``spinning``: whether idle pool threads busy-wait for work (ONNX Runtime's default; faster
    by a fraction of a millisecond per call on an idle machine, but it takes CPU from everything
    else on it, so off by default). Denormal activations are always flushed to zero
    (``session.set_denormal_as_zero``) in ONNX Runtime's pool threads: they are numerically irrelevant
    and slow on Intel cores. The session is created on a helper thread so that this mode does not
    leak into the caller's thread (see :func:`_new_session`).
    ``precision``: the package graph to run, ``fp32`` (``model.onnx``), ``fp16`` or ``int8``; ``auto``
    runs the INT8 graph on the CPU when the package has one (it exists only where it passed the
    export's agreement gate), the FP32 graph otherwise. The graph is sha256-checked.
    """

    name = "onnxruntime"

    def __init__(
        self,
        package: ModelPackage,
        device: str | int | None = None,
        *,
        threads: int | None = None,
        optimization: str = DEFAULT_OPTIMIZATION,
        spinning: bool = False,
        precision: str = "auto",
    ) -> None:
        super().__init__(package)
        check_precision(precision, tuple(GRAPHS), self.name)
        import onnxruntime as ort

        wants_cuda = device is not None and (isinstance(device, int) or str(device).startswith("cuda"))
        if device is not None and not wants_cuda and str(device) != "cpu":
            raise BackendUnavailable(f"onnxruntime backend: unknown device {device!r}; use 'cpu', 'cuda' or 'cuda:N'")
        conflict = install_conflict()
        if wants_cuda and not cuda_provider_available():
            raise BackendUnavailable(
                "onnxruntime backend: device 'cuda' needs the CUDA execution provider, which this onnxruntime "
                "build lacks; " + (conflict or "install onnxruntime-gpu with pip install 'gpedge[gpu]' (after "
                                   "pip uninstall -y onnxruntime) or use device='cpu'")
            )
        if conflict:
            log.warning("onnxruntime: %s", conflict)
        if optimization not in OPTIMIZATIONS:
            raise BackendUnavailable(f"onnxruntime backend: optimization {optimization!r} is not one of {', '.join(OPTIMIZATIONS)}")
        use_cuda = wants_cuda or (device is None and cuda_provider_available())
        providers: list = [CPU_EP]
        if use_cuda:
            providers.insert(0, (CUDA_EP, {"device_id": _device_index(device)}))

        self.threads = threads or physical_cores()
        self.optimization = optimization
        self.spinning = spinning
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPTIMIZATIONS[optimization])
        options.log_severity_level = 3  # errors only; provider fallbacks are checked and reported below
        spin = "1" if spinning else "0"
        options.add_session_config_entry("session.intra_op.allow_spinning", spin)
        options.add_session_config_entry("session.inter_op.allow_spinning", spin)
        options.add_session_config_entry("session.set_denormal_as_zero", "1")
        self.precision = self._resolve(precision, use_cuda)
        path = self.package.file(GRAPHS[self.precision])
        self.graph = path.name
        try:
            self._session = _new_session(str(path), options, providers)
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
        tensors = self._session.get_inputs() + self._session.get_outputs()
        check_io([i.name for i in self._session.get_inputs()], [o.name for o in self._session.get_outputs()], str(path))
        check_graph({t.name: (_ORT_TYPES.get(t.type, t.type), t.shape) for t in tensors}, package, str(path))

    def _resolve(self, precision: str, use_cuda: bool) -> str:
        if precision == "auto":
            precision = "int8" if not use_cuda and self.package.has_file(GRAPHS["int8"]) else "fp32"
        if not self.package.has_file(GRAPHS[precision]):
            hint = {"int8": "re-export it with 'gpedge export --int8'", "fp16": "re-export it with --fp16"}.get(precision, "")
            raise PackageError(f"onnxruntime backend: {self.package.root} has no {GRAPHS[precision]} for precision "
                               f"{precision}; {hint or 're-export it'} or choose another --precision")
        return precision

    @property
    def description(self) -> str:
        threads = f", {self.threads} threads{', spinning' if self.spinning else ''}" if self.device == "cpu" else ""
        return (
            f"onnxruntime {self._ort_version()} {self.graph} on {self.device} ({', '.join(self.providers)}{threads}, "
            f"optimization {self.optimization})"
        )

    @property
    def provider(self) -> str:
        return f"onnxruntime {self.providers[0]}"

    @staticmethod
    def _ort_version() -> str:
        import onnxruntime as ort

        return ort.__version__

    def run(self, batch: np.ndarray, offset: float | None = None, rule: str | None = None) -> dict[str, np.ndarray]:
        feed = {INPUT: np.ascontiguousarray(batch, dtype=np.float32), **self.rule_inputs(offset, rule)}
        return dict(zip(OUTPUTS, self._session.run(list(OUTPUTS), feed)))

    def close(self) -> None:
        self._session = None
