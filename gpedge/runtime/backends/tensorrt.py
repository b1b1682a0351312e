"""TensorRT backend: the package's engine for this GPU (:mod:`gpedge.tensorrt.loader`), run by
:class:`gpedge.tensorrt.runner.EngineRunner` (one execution context, stream and buffer set per thread)."""
from __future__ import annotations

import numpy as np

from gpedge.errors import BackendUnavailable
from gpedge.graph.contract import INPUT
from gpedge.package import ModelPackage
from gpedge.runtime.backends.base import Backend, check_graph, check_io, check_precision
from gpedge.tensorrt.cuda import cuda_check, gpu_info, import_tensorrt
from gpedge.tensorrt.loader import package_engine
from gpedge.tensorrt.runner import EngineRunner


def _device_index(device: str | int | None) -> int:
    if isinstance(device, int):
        return device
    if device is None or str(device) == "cuda":
        return 0
    if str(device).startswith("cuda:"):
        return int(str(device).split(":", 1)[1])
    raise BackendUnavailable(f"tensorrt backend: device must be 'cuda', 'cuda:N' or an int, not {device!r}")


class TensorRTBackend(Backend):
    """Runs the package's TensorRT engine for this GPU and TensorRT version (FP32 I/O).

    ``precision``: ``fp16`` (``auto``: the engine of the FP16 graph) or ``int8`` (the engine of the
    package's Q/DQ graph, TensorRT's explicit quantization).
    """

    name = "tensorrt"

    def __init__(self, package: ModelPackage, device: str | int | None = None, precision: str = "auto") -> None:
        super().__init__(package)
        check_precision(precision, ("fp16", "int8"), self.name)
        self.precision = "fp16" if precision == "auto" else precision
        index = _device_index(device)
        trt, cudart = import_tensorrt()
        self.gpu = gpu_info(index)
        self.device = f"cuda:{index}"
        self.trt_version = trt.__version__
        cuda_check(cudart.cudaSetDevice(index), "cudaSetDevice")
        engine, self.engine_path, self.engine_meta = package_engine(package, self.gpu, self.max_batch, self.precision)
        self._runner = EngineRunner(engine, index)
        check_io(self._runner.inputs, self._runner.outputs, str(self.engine_path), "delete or rebuild the engine")
        check_graph(self._runner.io_specs(), package, str(self.engine_path), "delete or rebuild the engine")
        self.max_batch = min(self.max_batch, int(self._runner.max_shapes[INPUT][0]))

    @property
    def provider(self) -> str:
        return f"tensorrt {self.device}"

    @property
    def description(self) -> str:
        return (f"TensorRT {self.trt_version} {self.precision.upper()} on {self.gpu.name} (sm {self.gpu.compute_capability}), "
                f"engine {self.engine_path}")

    def run(self, batch: np.ndarray, offset: float | None = None, rule: str | None = None) -> dict[str, np.ndarray]:
        n = batch.shape[0]
        if not 1 <= n <= self.max_batch:
            raise ValueError(f"batch of {n} is outside the engine's range 1..{self.max_batch}")
        return self._runner.run({INPUT: batch, **self.rule_inputs(offset, rule)})

    def close(self) -> None:
        self._runner.close()
