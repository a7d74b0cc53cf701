"""``python -m training.export SRC OUT [--int8] [--fp16] [--opset N] [--force]``.

SRC is this project's model directory, a local MarianMT checkpoint (an OPUS-MT download), or
a Hugging Face hub id of one (``Helsinki-NLP/opus-mt-en-fr``: from the local hub cache,
downloaded into it where the network allows). OUT receives the fp32
bundle; ``--int8`` and ``--fp16`` add complete variant bundles in ``OUT/int8`` and ``OUT/fp16``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from training.errors import run_cli
from training.export.bundle_writer import base_manifest, write_fp32, write_variant
from training.export.graphs import DEFAULT_OPSET, plan_for
from training.export.hub import resolve_source
from training.export.languages import (
    api_code,
    checkpoint_code,
    served_codes,
    source_language_index,
    source_prefix,
)
from training.export.sources import Source, load_source
from training.export.variants import convert_fp16, quantize_int8
from training.io import atomic_directory


def parser() -> argparse.ArgumentParser:
    """Command-line interface."""
    cli = argparse.ArgumentParser(prog="python -m training.export", description=__doc__)
    cli.add_argument("src", help="model directory, MarianMT checkpoint directory, or hub id")
    cli.add_argument("out", type=Path, help="bundle directory to create")
    cli.add_argument("--int8", action="store_true", help="add a dynamic-int8 bundle (CPU)")
    cli.add_argument("--fp16", action="store_true", help="add an fp16 bundle (CUDA)")
    cli.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                     help=f"ONNX opset (default {DEFAULT_OPSET})")
    cli.add_argument("--name", help="model name (default: OUT's folder name)")
    cli.add_argument("--src-lang", help="source language code (default: from SRC's tokenizer "
                     "config, else und)")
    cli.add_argument("--tgt-lang", help="target language code (default: from SRC's tokenizer "
                     "config, else und); picks a multi-target OPUS-MT model's >>xxx<< token")
    cli.add_argument("--force", action="store_true", help="replace an existing OUT")
    return cli


def pick_languages(source: Source, wanted: tuple[str, str]) -> tuple[str, str]:
    """A multilingual (M2M100, NLLB) checkpoint's exported pair, as the API serves it, and its
    languages (``inference/languages.py``): the tokenizer puts the source language's token in
    every source, the target's is forced as the first generated token; the bundle serves any
    two of its languages."""
    src = checkpoint_code(source.language_ids, wanted[0], "--src-lang")
    tgt = checkpoint_code(source.language_ids, wanted[1], "--tgt-lang")
    source.tokenizer.src_lang, source.tokenizer.tgt_lang = src, tgt
    served = served_codes(list(source.language_ids))
    source.metadata["target_prefix"] = [source.language_ids[tgt]]
    source.metadata["language_tokens"] = {served[code]: index
                                          for code, index in source.language_ids.items()}
    source.metadata["source_language_index"] = source_language_index(
        source.tokenizer, source.language_ids[src])
    full = {short: code for code, short in served.items() if short != code}
    if full:  # NLLB's fra_Latn: accepted by the API besides fr
        source.metadata["language_codes"] = full
    return served[src], served[tgt]


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = parser().parse_args(argv)
    path = resolve_source(args.src)
    source = load_source(path)
    if path != Path(args.src):  # a hub id: name it, not its snapshot folder
        source.metadata["checkpoint"] = args.src
    plan = plan_for(source)
    wanted = (args.src_lang or source.metadata.get("src_lang", "und"),
              args.tgt_lang or source.metadata.get("tgt_lang", "und"))
    langs = (pick_languages(source, wanted) if source.language_ids
             else (api_code(wanted[0]), api_code(wanted[1])))
    prefix = source_prefix(source.target_tokens, langs[1])
    if prefix:  # a multi-target OPUS-MT model serves each target it has a token for
        source.metadata["source_prefix"] = prefix
        source.metadata["target_tokens_in_source"] = dict(source.target_tokens)
    manifest = base_manifest(source, plan, name=args.name or args.out.name, langs=langs,
                             opset=args.opset)
    sizes = {}
    with atomic_directory(args.out, force=args.force) as tmp:
        manifest = write_fp32(source, plan, tmp, manifest)
        if args.int8:
            write_variant(tmp, tmp / "int8", manifest, "int8", quantize_int8)
        if args.fp16:
            write_variant(tmp, tmp / "fp16", manifest, "float16", convert_fp16)
        for bundle in [tmp, *(p for p in tmp.iterdir() if p.is_dir())]:
            sizes[bundle.name if bundle != tmp else "fp32"] = sum(
                p.stat().st_size for p in bundle.glob("*.onnx"))
    print(json.dumps({"out": str(args.out), "graph_bytes": sizes,
                      "parity": manifest.metadata["parity_max_abs_diff"]}))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
