"""``python -m training.evaluate``: BLEU/chrF/ROUGE-L of a trained model on the test split.

Scores the single reference (e.g. KJV -> Louis Segond) and all target versions of the same
verses as multiple references, for greedy and beam decoding; writes a JSON report.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedTokenizerFast

from training.checkpoint import load_model_dir
from training.corpus import load_split
from training.data import Example
from training.decode import beam_decode, greedy_decode
from training.errors import UserError, run_cli
from training.metrics import corpus_scores
from training.models import ModelConfig, Seq2SeqModel
from training.tokenizer import load_tokenizer

Translate = Callable[[list[str]], list[str]]


def references_by_key(examples: list[Example], src_version: str, tgt_versions: list[str]
                      ) -> tuple[list[str], list[list[str]]]:
    """Sources of ``src_version`` whose verse has every target version; reference streams."""
    by_key: dict[str, dict[str, str]] = {}
    sources: dict[str, str] = {}
    for ex in examples:
        if ex.src_version == src_version:
            sources[ex.key] = ex.src
            by_key.setdefault(ex.key, {})[ex.tgt_version] = ex.tgt
    keys = [k for k in sources if all(v in by_key[k] for v in tgt_versions)]
    if not keys:
        raise UserError(f"no test verses with source {src_version!r} and targets "
                        f"{','.join(tgt_versions)}: check the versions in the data's manifest")
    return [sources[k] for k in keys], [[by_key[k][v] for k in keys] for v in tgt_versions]


def torch_translator(model: Seq2SeqModel, cfg: ModelConfig, tokenizer: PreTrainedTokenizerFast,
                     *, beam: int, max_length: int | None = None, batch_size: int = 32
                     ) -> Translate:
    """Text-to-text translation with the torch model (sorted by length, batched)."""
    def translate(texts: list[str]) -> list[str]:
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        outputs: dict[int, str] = {}
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            enc = tokenizer([texts[i] for i in chunk], padding=True, return_tensors="pt")
            args = {"start_id": cfg.decoder_start_id, "eos_id": cfg.eos_id,
                    "max_len": max_length or min(int(2 * enc["input_ids"].size(1) + 10),
                                                 cfg.max_positions)}
            ids = (greedy_decode(model, enc["input_ids"], enc["attention_mask"], **args)
                   if beam == 1 else
                   beam_decode(model, enc["input_ids"], enc["attention_mask"], beam=beam, **args))
            for i, text in zip(chunk, tokenizer.batch_decode(ids, skip_special_tokens=True),
                               strict=True):
                outputs[i] = text
        return [outputs[i] for i in range(len(texts))]
    return translate


def bundle_translator(bundle: Path, *, beam: int, threads: int | None,
                      max_length: int | None = None) -> Translate:
    """Text-to-text translation with the ONNX engine over an exported bundle."""
    from inference import Translator

    translator = Translator.load(bundle, threads=threads)
    return lambda texts: [t.text for t in translator.translate(texts, beam_size=beam,
                                                               max_length=max_length)]


def evaluate(translate: Translate, examples: list[Example], *, src_version: str,
             ref_version: str, multi_refs: list[str], limit: int = 0) -> dict[str, Any]:
    """Single- and multi-reference scores of one decoding setting."""
    sources, refs = references_by_key(examples, src_version, multi_refs)
    if limit:
        sources, refs = sources[:limit], [r[:limit] for r in refs]
    started = time.time()
    hyps = translate(sources)
    seconds = time.time() - started
    single = refs[multi_refs.index(ref_version)]
    return {
        "single_reference": {"ref": ref_version, **corpus_scores(hyps, [single])},
        "multi_reference": {"refs": multi_refs, **corpus_scores(hyps, refs)},
        "seconds": round(seconds, 1), "examples": list(zip(sources[:3], hyps[:3], strict=True)),
    }


def parser() -> argparse.ArgumentParser:
    """Command-line interface."""
    cli = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__)
    source = cli.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", type=Path, help="PyTorch model directory (run/best)")
    source.add_argument("--bundle", type=Path, help="exported ONNX bundle (models/<name>)")
    cli.add_argument("--data", type=Path, default=Path("data/en-fr"))
    cli.add_argument("--split", default="test", choices=["dev", "test"])
    cli.add_argument("--src-version", default="k")
    cli.add_argument("--ref-version", default="l")
    cli.add_argument("--multi-refs", default="l,o,5", help="comma-separated target versions")
    cli.add_argument("--beams", default="1,4", help="comma-separated beam sizes")
    cli.add_argument("--limit", type=int, default=0, help="score only the first N sentences")
    cli.add_argument("--threads", type=int, default=0)
    cli.add_argument("--max-length", type=int, help="cap on generated tokens (default: "
                     "2 * source length + 10, within the model's positions)")
    cli.add_argument("--out", type=Path, help="JSON report (default: MODEL/eval.json)")
    return cli


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    multi_refs = args.multi_refs.split(",")
    if args.ref_version not in multi_refs:
        raise UserError(f"--ref-version {args.ref_version} must be one of --multi-refs")
    examples = load_split(args.data, args.split)
    target = args.model or args.bundle
    report: dict[str, Any] = {"model": str(target), "split": args.split,
                              "src_version": args.src_version,
                              "runtime": "torch" if args.model else "onnxruntime"}
    for beam in (int(b) for b in args.beams.split(",")):
        translate = (torch_translator(*load_model_dir(args.model), load_tokenizer(args.model),
                                      beam=beam, max_length=args.max_length) if args.model else
                     bundle_translator(args.bundle, beam=beam, threads=args.threads or None,
                                       max_length=args.max_length))
        report[f"beam{beam}"] = evaluate(translate, examples, src_version=args.src_version,
                                         ref_version=args.ref_version, multi_refs=multi_refs,
                                         limit=args.limit)
    out = args.out or target / "eval.json"
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps({k: v["single_reference"]["bleu"] for k, v in report.items()
                      if k.startswith("beam")}))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
