"""int8: post-training static quantization of the exported ONNX model with ONNX Runtime (QDQ)."""
