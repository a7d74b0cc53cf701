"""Write a complete, validated bundle directory (graphs, tokenizer, model.json)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import onnx
import onnxruntime
import torch
import transformers

from inference.bundle import GRAPH_FILES, MANIFEST, Manifest, sha256_of
from training.errors import UserError
from training.export.graphs import ENCODER_INPUTS, EXPORT_REVISION, GraphPlan, export_graphs
from training.export.head import add_top_k_head, with_top_k
from training.export.parity import max_differences
from training.export.sources import Source

TOLERANCE = 1e-4


def versions() -> dict[str, str]:
    """Library versions that produced the bundle."""
    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}


def base_manifest(source: Source, plan: GraphPlan, *, name: str, langs: tuple[str, str],
                  opset: int) -> Manifest:
    """The fp32 manifest, before checksums."""
    return Manifest(
        name=name, architecture=source.arch, source_lang=langs[0], target_lang=langs[1],
        special_tokens=source.special_tokens, vocab_size=source.vocab_size,
        max_positions=source.max_positions, dtype="float32", opset=opset,
        encoder_inputs=list(ENCODER_INPUTS), encoder_outputs=plan.encoder_outputs,
        decoder=plan.contract, versions=versions(),
        metadata={**source.metadata, "export_revision": EXPORT_REVISION})


def finish_bundle(directory: Path, manifest: Manifest) -> Manifest:
    """Record the sha256 of every file and write ``model.json``."""
    files = {p.name: sha256_of(p) for p in sorted(directory.iterdir())
             if p.is_file() and p.name != MANIFEST}
    manifest = replace(manifest, files=files)
    (directory / MANIFEST).write_text(manifest.to_json(), encoding="utf-8")
    return manifest


def write_fp32(source: Source, plan: GraphPlan, directory: Path, manifest: Manifest) -> Manifest:
    """Export, check parity against PyTorch, save the tokenizer, write the manifest."""
    export_graphs(plan, directory, opset=manifest.opset, max_positions=source.max_positions)
    diffs = max_differences(source, plan, directory)
    if max(diffs.values()) > TOLERANCE:
        raise UserError(f"exported graphs disagree with PyTorch (max abs diff {diffs}); "
                        "please report this with the model's config")
    add_top_k_head(directory / "decoder.onnx", manifest.decoder.log_probs,
                   required=manifest.decoder.graph_writes)
    source.tokenizer.save_pretrained(str(directory))
    meta = {**manifest.metadata, "parity_max_abs_diff": diffs}
    return finish_bundle(directory, replace(manifest, metadata=meta,
                                            decoder=with_top_k(manifest.decoder)))


def write_variant(fp32: Path, directory: Path, manifest: Manifest, dtype: str,
                  convert: Callable[[Path, Path], Any]) -> Manifest:
    """A complete bundle whose graphs are ``convert``-ed from the fp32 ones."""
    directory.mkdir()
    convert(fp32, directory)
    for item in fp32.iterdir():
        if item.is_file() and item.name not in (*GRAPH_FILES, MANIFEST):
            shutil.copy2(item, directory / item.name)
    return finish_bundle(directory, replace(manifest, dtype=dtype, files={}))
