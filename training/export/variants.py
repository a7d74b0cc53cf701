"""Reduced-precision variants of an fp32 bundle: dynamic int8 (CPU) and fp16 (CUDA)."""

from __future__ import annotations

from pathlib import Path

import onnx

from inference.bundle import GRAPH_FILES


def quantize_int8(src: Path, dst: Path) -> None:
    """Dynamic int8 quantization of both graphs: MatMul/Gemm weights, and embedding tables
    (Gather), which otherwise stay fp32 and dominate a small model's size."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    for name in GRAPH_FILES:
        quantize_dynamic(str(src / name), str(dst / name), weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul", "Gemm", "Gather"])


def convert_fp16(src: Path, dst: Path) -> None:
    """fp16 weights and compute; inputs/outputs stay fp32 so the engine feeds both alike."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    for name in GRAPH_FILES:
        model = convert_float_to_float16(onnx.load(str(src / name)), keep_io_types=True)
        onnx.save(model, str(dst / name))
