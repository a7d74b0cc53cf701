"""Append a top-k head to a decoder graph, and add it to bundles exported without one.

The head is one ``TopK`` node over the log-probs, with ``k`` an int64 input that defaults to 1
(an initializer that is also a graph input, so callers that do not feed it still work). The
engine then reads ``(rows, k)`` values and ids instead of copying and sorting ``(rows, vocab)``
log-probs at every step: with a 32,000-token vocabulary and 256 beam rows that is 32 MB and a
partial sort of 8 M numbers per step, in numpy.

``python -m training.export.top_k BUNDLE [BUNDLE ...]`` adds the head to existing bundles (and
their variant sub-bundles) in place: the graphs are otherwise unchanged, so their outputs and
evaluation figures stay valid.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from service.bundle import (
    MANIFEST,
    BundleError,
    DecoderContract,
    TopKSpec,
    load_bundle_manifest,
    sha256_of,
)
from training.errors import UserError, run_cli

DECODER = "decoder.onnx"
HEAD = TopKSpec()  # the names every exported head uses


def add_top_k_head(path: Path, log_probs: str, spec: TopKSpec = HEAD) -> None:
    """Rewrite the ONNX file at ``path`` with ``TopK(log_probs, k)`` outputs named by
    ``spec``; values keep the log-probs' element type."""
    model = onnx.load(str(path))
    graph = model.graph
    names = {o.name for o in graph.output}
    if spec.values in names:
        return
    source = next((o for o in graph.output if o.name == log_probs), None)
    if source is None:
        raise UserError(f"{path}: the decoder has no output {log_probs!r}")
    element = source.type.tensor_type.elem_type
    graph.initializer.append(numpy_helper.from_array(np.array([1], np.int64), spec.input))
    graph.input.append(helper.make_tensor_value_info(spec.input, TensorProto.INT64, [1]))
    graph.node.append(helper.make_node("TopK", [log_probs, spec.input],
                                       [spec.values, spec.indices], name="top_k_head",
                                       axis=-1, largest=1, sorted=1))
    graph.output.append(helper.make_tensor_value_info(spec.values, element, ["batch", "k"]))
    graph.output.append(helper.make_tensor_value_info(spec.indices, TensorProto.INT64,
                                                      ["batch", "k"]))
    onnx.checker.check_model(model)
    temporary = path.with_suffix(".onnx.tmp")
    onnx.save(model, str(temporary))
    temporary.replace(path)


def with_top_k(contract: DecoderContract) -> DecoderContract:
    """The contract with the default head recorded."""
    return replace(contract, top_k=HEAD)


def upgrade_bundle(directory: Path) -> bool:
    """Add the head to one bundle's decoder and record it (files, checksums); False when it
    already had one."""
    try:
        manifest = load_bundle_manifest(directory)  # refuse to touch a damaged bundle
    except BundleError as err:
        raise UserError(str(err)) from None
    if manifest.decoder.top_k is not None:
        return False
    add_top_k_head(directory / DECODER, manifest.decoder.log_probs)
    files = {**manifest.files, DECODER: sha256_of(directory / DECODER)}
    upgraded = replace(manifest, decoder=with_top_k(manifest.decoder), files=files)
    (directory / MANIFEST).write_text(upgraded.to_json(), encoding="utf-8")
    return True


def main(argv: list[str] | None = None) -> int:
    """Upgrade each bundle and its variant sub-bundles; print what changed."""
    cli = argparse.ArgumentParser(prog="python -m training.export.top_k", description=__doc__)
    cli.add_argument("bundles", type=Path, nargs="+")
    args = cli.parse_args(argv)
    for bundle in args.bundles:
        if not (bundle / MANIFEST).is_file():
            raise UserError(f"{bundle}: no {MANIFEST}; pass a bundle directory")
        for directory in [bundle, *sorted(p.parent for p in bundle.glob(f"*/{MANIFEST}"))]:
            print(json.dumps({"bundle": str(directory), "added": upgrade_bundle(directory)}))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
