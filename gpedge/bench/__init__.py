"""gpedge.bench: latency, throughput, memory and accuracy of every inference backend.

``runner.benchmark_package`` (and ``benchmark_volume``) time each backend in its own child
process (``worker``) through a timing adapter (``backends``, ``torch_backends``), compare its
outputs with ONNX Runtime FP32 (``accuracy``), and count FLOPs from the ONNX graph (``flops``).
``quantize`` makes the static INT8 model; ``arch`` exports untrained paper networks to time.
"""
