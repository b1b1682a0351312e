"""PyTorch timing adapters: eager FP32 (the reference code's way of running, on CUDA when present) and, on CUDA,
FP16 channels-last replayed from a CUDA graph (a measured GPU path without TensorRT).

Both run ``gpedge.export.fused.FusedModel`` (the same function as the exported graph), so
their outputs are comparable with the ONNX backends'. Only the network runs in FP16; the
normalisation, softmax and mask rule stay FP32, as in ``model.fp16.onnx``.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from gpedge.package import ModelPackage
from gpedge.graph.contract import OUTPUTS as OUTPUT_NAMES
from gpedge.runtime.backends.torch import load_fused_model


class TorchEagerAdapter:
    """Eager FP32 PyTorch with default settings, as the reference code runs it: on the GPU when
    CUDA is available (PyTorch defaults, so cuDNN may use TF32), else on the CPU with ``threads``
    intra-op threads."""

    name = "torch"

    def __init__(self, package: ModelPackage, threads: int) -> None:
        torch.set_num_threads(threads)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self._model = load_fused_model(package).to(self.device)
        self._offset = torch.tensor(package.offset, dtype=torch.float32, device=self.device)
        where = torch.cuda.get_device_name() if self.device == "cuda" else f"cpu ({threads} threads)"
        self.description = f"torch {torch.__version__} eager FP32 on {where}"
        self.last_device_ms: float | None = None

    @torch.inference_mode()
    def infer(self, batch: np.ndarray, outputs: Sequence[str] = OUTPUT_NAMES) -> dict[str, np.ndarray]:
        image = torch.from_numpy(batch).to(self.device)
        if self.device == "cpu":
            result = self._model(image, self._offset)._asdict()
            return {name: result[name].numpy() for name in outputs}
        with _DeviceTimer(self):
            result = self._model(image, self._offset)._asdict()
        return {name: result[name].cpu().numpy() for name in outputs}  # .cpu() synchronises

    def device_memory_mb(self) -> float | None:
        return torch.cuda.max_memory_allocated() / 2**20 if self.device == "cuda" else None

    def reset_peak_memory(self) -> None:
        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()


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


class TorchFp16GraphAdapter:
    """FP16 channels-last network on CUDA, captured once per batch size in a CUDA graph.

    ``infer`` copies the host batch into the graph's static input (pinned memory), replays the
    graph, copies the requested outputs back and synchronises: the latency is end to end.
    """

    name = "torch-fp16"
    device = "cuda"

    def __init__(self, package: ModelPackage, threads: int) -> None:
        torch.set_num_threads(threads)
        torch.backends.cudnn.benchmark = True
        model = load_fused_model(package)
        model.network = _HalfChannelsLast(model.network)
        self._model = model.cuda().eval()
        self._offset = torch.tensor(package.offset, dtype=torch.float32, device="cuda")
        self._graphs: dict[int, tuple] = {}
        self.description = f"torch {torch.__version__} FP16 channels-last CUDA graph on {torch.cuda.get_device_name()}"
        self.last_device_ms: float | None = None

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
                    self._model(static, self._offset)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.inference_mode(), torch.cuda.graph(graph):
                out = self._model(static, self._offset)._asdict()
            host_out = {name: torch.empty(t.shape, dtype=t.dtype, pin_memory=True) for name, t in out.items()}
            self._graphs[key] = (graph, host, static, out, host_out)
        return self._graphs[key]

    def infer(self, batch: np.ndarray, outputs: Sequence[str] = OUTPUT_NAMES) -> dict[str, np.ndarray]:
        graph, host, static, out, host_out = self._graph(batch)
        host.numpy()[...] = batch
        static.copy_(host, non_blocking=True)
        with _DeviceTimer(self):
            graph.replay()
        for name in outputs:
            host_out[name].copy_(out[name], non_blocking=True)
        torch.cuda.synchronize()
        # copies: the pinned buffers are reused by the next call
        return {name: host_out[name].numpy().copy() for name in outputs}

    def device_memory_mb(self) -> float | None:
        return torch.cuda.max_memory_allocated() / 2**20

    def reset_peak_memory(self) -> None:
        torch.cuda.reset_peak_memory_stats()
