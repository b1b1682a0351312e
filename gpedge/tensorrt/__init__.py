"""TensorRT engines of the fused FP16 graph (TensorRT 10.x and 11.x, cuda-python; never torch).

One module, split as Polygraphy splits it, used by the runtime backend and the exporter alike:

- :mod:`~gpedge.tensorrt.cuda`: imports, CUDA call checking, the GPU (``gpu_info``, ``unavailable_reason``);
- :mod:`~gpedge.tensorrt.engines`: engine file names and the GPU/version compatibility policy;
- :mod:`~gpedge.tensorrt.builder`: build an engine from ONNX (profile, timing cache, precision check);
- :mod:`~gpedge.tensorrt.inspection`: I/O dtypes and layer precisions of a built engine;
- :mod:`~gpedge.tensorrt.loader`: deserialise a verified plan; find, verify or build a package's engine;
- :mod:`~gpedge.tensorrt.runner`: ``EngineRunner`` runs an engine on host arrays (``DeviceBuffer``s).

Importing this package imports nothing heavy; TensorRT and cuda-python are imported on use.
"""
