"""Deployment: ONNX export of a config's model, checked in onnxruntime."""
