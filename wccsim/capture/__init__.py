"""Trace capture from real networks: ONNX models via onnxruntime (`onnx`), PyTorch via hooks (`torch`),
image loading and per-model preprocessing (`images`). See docs/traces.md."""
