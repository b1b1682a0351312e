"""Runner: executes a deserialised engine on host arrays with cuda-python buffers, thread-safely.

Each thread gets its own execution context, CUDA stream and buffers, created on its first call
and sized for the largest shapes the engine accepts; later calls reuse them.
"""
from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gpedge.errors import BackendUnavailable
from gpedge.tensorrt.cuda import cuda_check, import_tensorrt


class DeviceBuffer:
    """A host array and a device allocation of the same size, for one I/O tensor of one context."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype) -> None:
        _, cudart = import_tensorrt()
        self.host = np.empty(shape, dtype=dtype)
        self.device = cuda_check(cudart.cudaMalloc(max(1, self.host.nbytes)), "cudaMalloc")

    def _view(self, shape: tuple[int, ...]) -> np.ndarray:
        size = int(np.prod(shape))
        if size > self.host.size:
            raise ValueError(f"shape {shape} exceeds the engine's largest shape {self.host.shape}")
        return self.host.reshape(-1)[:size].reshape(shape)

    def to_device(self, array: np.ndarray, stream: Any) -> None:
        """Stage ``array`` in the host buffer and copy it to the device on ``stream``."""
        _, cudart = import_tensorrt()
        view = self._view(array.shape)
        view[...] = array
        kind = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        cuda_check(cudart.cudaMemcpyAsync(self.device, view.ctypes.data, view.nbytes, kind, stream), "copy to device")

    def to_host(self, shape: tuple[int, ...], stream: Any) -> np.ndarray:
        """Queue the copy of ``shape`` elements back to the host buffer; valid after the stream syncs."""
        _, cudart = import_tensorrt()
        view = self._view(shape)
        kind = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        cuda_check(cudart.cudaMemcpyAsync(view.ctypes.data, self.device, view.nbytes, kind, stream), "copy to host")
        return view

    def free(self) -> None:
        _, cudart = import_tensorrt()
        cudart.cudaFree(self.device)


@dataclass
class _ThreadState:
    context: Any
    stream: Any
    buffers: dict[str, DeviceBuffer] = field(default_factory=dict)


class EngineRunner:
    """Runs an engine: ``run({input name: array})`` returns every output by name (host copies)."""

    def __init__(self, engine: Any, device: int = 0) -> None:
        trt, _ = import_tensorrt()
        self._trt = trt
        self.engine = engine
        self.device = device
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]
        self.max_shapes = {name: self._max_shape(name) for name in self.inputs}
        self._local = threading.local()
        self._states: list[_ThreadState] = []
        self._lock = threading.Lock()

    def io_specs(self) -> dict[str, tuple[str, tuple[int, ...]]]:
        """numpy dtype name and engine shape (-1 for dynamic dimensions) of every I/O tensor."""
        return {
            name: (np.dtype(self._trt.nptype(self.engine.get_tensor_dtype(name))).name,
                   tuple(self.engine.get_tensor_shape(name)))
            for name in self.inputs + self.outputs
        }

    def _max_shape(self, name: str) -> tuple[int, ...]:
        shape = tuple(self.engine.get_tensor_shape(name))
        if -1 not in shape:
            return shape
        return tuple(self.engine.get_tensor_profile_shape(name, 0)[2])

    def _state(self) -> _ThreadState:
        state = getattr(self._local, "state", None)
        if state is not None:
            return state
        _, cudart = import_tensorrt()
        cuda_check(cudart.cudaSetDevice(self.device), "cudaSetDevice")
        context = self.engine.create_execution_context()
        if context is None:
            raise BackendUnavailable("tensorrt: could not create an execution context (GPU out of memory?)")
        state = _ThreadState(context=context, stream=cuda_check(cudart.cudaStreamCreate(), "cudaStreamCreate"))
        for name, shape in self.max_shapes.items():
            context.set_input_shape(name, shape)
        for name in self.inputs + self.outputs:
            dtype = np.dtype(self._trt.nptype(self.engine.get_tensor_dtype(name)))
            state.buffers[name] = DeviceBuffer(tuple(context.get_tensor_shape(name)), dtype)
            context.set_tensor_address(name, int(state.buffers[name].device))
        with self._lock:
            self._states.append(state)
        self._local.state = state
        return state

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Copy ``feeds`` in, execute, copy every output back; blocks until the results are on the host."""
        _, cudart = import_tensorrt()
        missing = sorted(set(self.inputs) - set(feeds))
        if missing:
            raise ValueError(f"tensorrt: missing engine input(s) {missing}")
        state = self._state()
        for name in self.inputs:
            array = np.ascontiguousarray(feeds[name], dtype=state.buffers[name].host.dtype)
            state.buffers[name].to_device(array, state.stream)
            state.context.set_input_shape(name, array.shape)
        if not state.context.execute_async_v3(int(state.stream)):
            raise BackendUnavailable("tensorrt: execution failed (see TensorRT's log)")
        views = {name: state.buffers[name].to_host(tuple(state.context.get_tensor_shape(name)), state.stream)
                 for name in self.outputs}
        cuda_check(cudart.cudaStreamSynchronize(state.stream), "cudaStreamSynchronize")
        return {name: view.copy() for name, view in views.items()}

    def close(self) -> None:
        """Free every thread's buffers and streams; the runner is unusable afterwards."""
        _, cudart = import_tensorrt()
        with self._lock:
            for state in self._states:
                for buffer in state.buffers.values():
                    buffer.free()
                cudart.cudaStreamDestroy(state.stream)
                state.buffers.clear()
                state.context = None
            self._states.clear()
        self._local = threading.local()
        self.engine = None
