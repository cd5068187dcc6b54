"""Export of the trained networks to TorchScript and ONNX, and the Triton model repository."""
