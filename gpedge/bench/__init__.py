"""gpedge.bench: latency, throughput, memory and accuracy of every inference backend.

``runner.benchmark_package`` (and ``benchmark_volume``) time each backend in its own child
process (``worker``) inside the runtime's ``Predictor``: the runtime's own ONNX Runtime and
TensorRT backends, or the benchmark's PyTorch backends (``torch_backends``), opened by
``backends``; results are compared with ONNX Runtime FP32 (``accuracy``) and FLOPs counted from
the ONNX graph (``flops``). ``quantize`` makes the static INT8 model.
"""
