"""``--fp16``: an fp16 bundle exported from the trained model loads on the CPU and gives the
fp32 bundle's greedy ids."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from inference import Translator
from inference.bundle import read_manifest
from tests.conftest import synthetic_pairs
from training.export.__main__ import main as export_main


@pytest.fixture(scope="module")
def fp16_bundle(trained_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fp16") / "bundle"
    assert export_main([str(trained_bundle.parent / "run" / "best"), str(out), "--fp16"]) == 0
    return out / "fp16"


def test_fp16_bundle_has_fp16_weights_and_fp32_io(fp16_bundle: Path) -> None:
    assert read_manifest(fp16_bundle).dtype == "float16"
    for name in ("encoder.onnx", "decoder.onnx"):
        graph = onnx.load(str(fp16_bundle / name)).graph
        types = {init.data_type for init in graph.initializer}
        assert onnx.TensorProto.FLOAT16 in types, name
        floats = [v for v in [*graph.input, *graph.output]
                  if v.type.tensor_type.elem_type in (onnx.TensorProto.FLOAT,
                                                      onnx.TensorProto.FLOAT16)]
        assert all(v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for v in floats), name


def test_fp16_bundle_gives_the_fp32_greedy_ids_on_the_cpu(fp16_bundle: Path,
                                                          trained_bundle: Path) -> None:
    fp16 = Translator.load(fp16_bundle, providers=["CPUExecutionProvider"])
    fp32 = Translator.load(trained_bundle)
    sources = [fp32.tokenizer(src)["input_ids"] for src, _ in synthetic_pairs(24, seed=11)]
    expected = fp32.translate_ids(sources, max_length=20)
    got = fp16.translate_ids(sources, max_length=20)
    assert got == expected
