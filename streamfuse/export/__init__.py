"""Export: ONNX graphs with fixed IO names, TensorRT engines and their cache."""
