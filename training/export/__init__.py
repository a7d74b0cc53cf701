"""ONNX export: encoder and one-step decoder graphs with an explicit state contract."""
