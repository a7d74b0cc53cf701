"""Serving half of the product: ONNX Runtime inference engine and HTTP service."""
