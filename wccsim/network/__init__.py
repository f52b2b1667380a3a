"""Whole-network simulation: run an ONNX network with its 1x1 convolutions on the WCC datapath."""
