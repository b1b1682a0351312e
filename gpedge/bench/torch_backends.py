"""The benchmark's PyTorch backends: eager FP32 (the reference code's way of running, on CUDA when
present) and, on CUDA, FP16 channels-last replayed from a CUDA graph (a measured GPU path without TensorRT).

Both run :class:`gpedge.graph.fused.FusedModel` (the function the exported graphs compute), so
their outputs are comparable with the other backends'. Only the network runs in FP16; the
normalisation, softmax and mask rule stay FP32, as in ``model.fp16.onnx``. ``last_device_ms``
holds the CUDA-event time of the last call's model work (None on the CPU).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from gpedge.bench.backends import DeviceMemory
from gpedge.package import ModelPackage
from gpedge.runtime.backends.base import Backend
from gpedge.runtime.backends.torch import TorchBackend, load_fused_model


class TorchCudaMemory(DeviceMemory):
    """``torch.cuda.max_memory_allocated`` on CUDA; nothing on the CPU."""

    def __init__(self, device: torch.device | str) -> None:
        self._cuda = torch.device(device).type == "cuda"

    def reset(self) -> None:
        if self._cuda:
            torch.cuda.reset_peak_memory_stats()

    def peak_mb(self) -> float | None:
        return torch.cuda.max_memory_allocated() / 2**20 if self._cuda else None


class TorchEager(TorchBackend):
    """Eager FP32 PyTorch with default settings, as the reference code runs it: on the GPU when
    CUDA is available (PyTorch defaults, so cuDNN may use TF32), else on the CPU with ``threads``
    intra-op threads."""

    def __init__(self, package: ModelPackage, threads: int) -> None:
        torch.set_num_threads(threads)
        super().__init__(package, "cuda" if torch.cuda.is_available() else "cpu")
        self.last_device_ms: float | None = None
        where = torch.cuda.get_device_name() if self.device.type == "cuda" else f"cpu ({threads} threads)"
        self._description = f"torch {torch.__version__} eager FP32 on {where}"

    @property
    def description(self) -> str:
        return self._description

    def _forward(self, image: torch.Tensor, offset: torch.Tensor, rule: torch.Tensor):
        if self.device.type == "cpu":
            return super()._forward(image, offset, rule)
        with _DeviceTimer(self):
            return super()._forward(image, offset, rule)


class _DeviceTimer:
    """CUDA events around a region; the owner's ``last_device_ms`` is set once the device has finished it."""

    def __init__(self, owner) -> None:
        self._owner = owner
        self._start = torch.cuda.Event(enable_timing=True)
        self._end = torch.cuda.Event(enable_timing=True)

    def __enter__(self) -> None:
        self._start.record()

    def __exit__(self, *exc: object) -> None:
        self._end.record()
        self._end.synchronize()
        self._owner.last_device_ms = self._start.elapsed_time(self._end)


class _HalfChannelsLast(nn.Module):
    """Runs a network in FP16 on channels-last input; returns its outputs as they come."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network.half().to(memory_format=torch.channels_last)

    def forward(self, image: torch.Tensor):
        return self.network(image.half().contiguous(memory_format=torch.channels_last))


class TorchFp16Graph(Backend):
    """FP16 channels-last network on CUDA, captured once per batch size in a CUDA graph.

    ``run`` copies the host batch and mask-rule inputs into the graph's static inputs (pinned memory),
    replays the graph, copies every output back and synchronises: the latency is end to end.
    Not thread-safe (one static buffer set per batch size): a benchmark runs one thread.
    """

    name = "torch-fp16"

    def __init__(self, package: ModelPackage, threads: int) -> None:
        super().__init__(package)
        torch.set_num_threads(threads)
        torch.backends.cudnn.benchmark = True
        model = load_fused_model(package)
        model.network = _HalfChannelsLast(model.network)
        self.device = torch.device("cuda")
        self._model = model.cuda().eval()
        self._offset = torch.zeros(1, dtype=torch.float32, device="cuda")
        self._rule = torch.zeros(3, dtype=torch.int32, device="cuda")
        self._graphs: dict[int, tuple] = {}
        self.last_device_ms: float | None = None

    @property
    def description(self) -> str:
        return f"torch {torch.__version__} FP16 channels-last CUDA graph on {torch.cuda.get_device_name()}"

    def _graph(self, batch: np.ndarray):
        key = batch.shape[0]
        if key not in self._graphs:
            host = torch.empty(batch.shape, dtype=torch.float32, pin_memory=True)
            static = torch.empty(batch.shape, dtype=torch.float32, device="cuda")
            static.copy_(torch.from_numpy(batch))
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.inference_mode(), torch.cuda.stream(stream):
                for _ in range(3):  # cuDNN picks its algorithms before capture
                    self._model(static, self._offset, self._rule)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.inference_mode(), torch.cuda.graph(graph):
                out = self._model(static, self._offset, self._rule)._asdict()
            host_out = {name: torch.empty(t.shape, dtype=t.dtype, pin_memory=True) for name, t in out.items()}
            self._graphs[key] = (graph, host, static, out, host_out)
        return self._graphs[key]

    def run(self, batch: np.ndarray, offset: float | None = None, rule: str | None = None) -> dict[str, np.ndarray]:
        graph, host, static, out, host_out = self._graph(batch)
        host.numpy()[...] = batch
        static.copy_(host, non_blocking=True)
        offset_input, rule_input = self.rule_inputs(offset, rule).values()
        self._offset.copy_(torch.from_numpy(offset_input))
        self._rule.copy_(torch.from_numpy(rule_input))
        with _DeviceTimer(self):
            graph.replay()
        for name, tensor in out.items():
            host_out[name].copy_(tensor, non_blocking=True)
        torch.cuda.synchronize()
        # copies: the pinned buffers are reused by the next call
        return {name: host_out[name].numpy().copy() for name in out}
