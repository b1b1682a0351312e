"""gpedge.export: turn a training run into a deployable model package (fused ONNX FP32/FP16, TensorRT engines)."""
