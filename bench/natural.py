"""``python -m bench.natural``: issue 4's setting 2, the bundled English→French Transformer
translating the test split with natural output lengths, side by side in one run:

- ``engine-fp32`` / ``engine-int8``: this engine on ``models/transformer-en-fr`` and its
  ``int8/`` bundle (``Translator.translate``);
- ``generate``: ``transformers``' ``generate`` on the same weights in PyTorch;
- ``ct2-float32`` / ``ct2-int8``: CTranslate2 converted from the same ``MarianMTModel``.

Same weights: the bundle was exported from ``models/<name>/weights`` (fp16 safetensors, the
fp32 graphs hold exactly those values upcast), so ``generate`` and CTranslate2 load that model
directory into an fp32 ``MarianMTModel`` too; ``runs/<run>/best`` (fp32, before the fp16
rounding) differs from the bundle by up to ~6e-5 per weight and is only used if asked for.

Sources: the first ``--limit`` test examples with source version ``k`` and reference version
``l`` (KJV -> Segond, the model card's pairs), tokenized by the bundle's tokenizer. Every system
gets the same batches (``--batch-size`` sentences, sorted longest first), the same beam, the
same length penalty (1.0) and the same per-batch length cap: the engine's default rule
``2 * source_tokens + 10`` (clipped to the model's maximum positions) applied to the batch's
longest source, passed explicitly to all three. Timing includes tokenization and
detokenization (after a one-batch warm-up). Each system runs in its own process, the systems
taking turns, ``--repeats`` rounds; figures are medians over rounds (``seconds_min``: the
fastest). One process for all was tried first: after CTranslate2 and ONNX Runtime had run in
it, ``generate`` took 7x longer than on its own (probably their spinning thread pools against
PyTorch's OpenMP threads on 2 cores), so the systems are kept apart.
Prints one JSON line per system and a summary line (ratios, BLEU agreement); ``--out`` saves
them as JSONL.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# "-es": the engine with early stopping, CTranslate2's stopping rule (its default patience 1)
SYSTEMS = ["engine-fp32", "engine-int8", "generate", "ct2-float32", "ct2-int8",
           "engine-fp32-es", "engine-int8-es"]
BLEU_TOLERANCE = 0.3
RATIOS = {"fp32 / ct2-float32": ("engine-fp32", "ct2-float32"),
          "fp32 / generate": ("engine-fp32", "generate"),
          "int8 / ct2-int8": ("engine-int8", "ct2-int8"),
          "fp32-es / ct2-float32": ("engine-fp32-es", "ct2-float32"),
          "int8-es / ct2-int8": ("engine-int8-es", "ct2-int8")}

# texts, length cap -> (translations, target tokens computed: generated ids, eos included)
Translate = Callable[[list[str], int], tuple[list[str], int]]


def load_pairs(data: Path, limit: int, src_version: str = "k", ref_version: str = "l"
               ) -> tuple[list[str], list[str]]:
    """Sources and references of the first ``limit`` matching test examples."""
    from training.data import read_examples

    sources: list[str] = []
    refs: list[str] = []
    for example in read_examples(data):
        if example.src_version == src_version and example.tgt_version == ref_version:
            sources.append(example.src)
            refs.append(example.tgt)
            if len(sources) == limit:
                break
    return sources, refs


def make_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices sorted longest first, cut into batches of ``batch_size``."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def length_cap(longest_source: int, model_max: int) -> int:
    """The engine's default length rule (``length_limits``) for a batch's longest source."""
    import numpy as np

    from inference.options import DecodeOptions
    from inference.translator import length_limits

    return int(length_limits(np.array([longest_source]), DecodeOptions(), model_max)[0])


def engine_runner(bundle: Path, beam: int, threads: int, early_stopping: bool = False
                  ) -> Translate:
    from inference import Translator

    tr = Translator.load(bundle, threads=threads, max_batch_tokens=1 << 30)

    def run(texts: list[str], cap: int) -> tuple[list[str], int]:
        results = tr.translate(texts, beam_size=beam, max_length=cap, length_penalty=1.0,
                               early_stopping=early_stopping)
        # target_tokens counts eos even for a hypothesis cut at the cap, which has none
        tokens = sum(r.target_tokens - (r.finish_reason == "length") for r in results)
        return [r.text for r in results], tokens

    return run


def load_marian(weights: Path) -> Any:
    """The project model directory as an fp32 ``MarianMTModel`` in eval mode."""
    import torch

    from training.checkpoint import load_model_dir
    from training.models.marian import MarianSeq2Seq

    model, _ = load_model_dir(weights)
    if not isinstance(model, MarianSeq2Seq):
        raise SystemExit(f"{weights} is not a Transformer (MarianMT) model directory")
    marian: Any = model.model  # fp32 parameters: fp16 files are upcast when loaded
    return marian.to(torch.float32).eval()


def generate_runner(marian: Any, tokenizer: Any, beam: int, threads: int) -> Translate:
    import torch

    torch.set_num_threads(threads)
    pad, eos = marian.config.pad_token_id, marian.config.eos_token_id

    def run(texts: list[str], cap: int) -> tuple[list[str], int]:
        enc = tokenizer(texts, return_tensors="pt", padding=True)
        with torch.no_grad():
            out = marian.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                                  num_beams=beam, max_new_tokens=cap, do_sample=False,
                                  length_penalty=1.0, early_stopping=False,
                                  forced_eos_token_id=None)
        rows = [row[1:] for row in out.tolist()]  # drop the decoder start token
        kept = [row[: row.index(eos) + 1] if eos in row else row for row in rows]
        tokens = sum(len(row) for row in kept)
        texts_out = tokenizer.batch_decode([[t for t in row if t not in (pad, eos)]
                                            for row in kept], skip_special_tokens=True)
        return list(texts_out), tokens

    return run


def convert_ct2(marian: Any, tokenizer: Any, out_dir: Path) -> None:
    """CTranslate2 conversion of the same weights (float32 on disk; int8 is chosen at load).

    CTranslate2's Marian loader assumes OPUS-MT's layout (``<pad>`` the last id, dropped with
    its weight rows; the decoder starting from a zero embedding). This project's Marian has
    ``<pad>`` = 0 = the decoder start, so a variant of the loader keeps every row and starts
    the decoder from the start token's embedding, as ``generate`` and the engine do."""
    import ctranslate2
    from ctranslate2.converters import transformers as ct2_hf

    class ProjectMarianLoader(ct2_hf.MarianMTLoader):
        def get_model_spec(self, model: Any) -> Any:
            model.config.normalize_before = False
            model.config.normalize_embedding = False
            return ct2_hf.BartLoader.get_model_spec(self, model)

        def set_config(self, config: Any, model: Any, tokenizer: Any) -> None:
            config.eos_token = tokenizer.eos_token
            config.unk_token = tokenizer.unk_token
            config.decoder_start_token = tokenizer.convert_ids_to_tokens(
                model.config.decoder_start_token_id)

        def set_decoder(self, spec: Any, decoder: Any) -> None:
            spec.start_from_zero_embedding = False
            ct2_hf.BartLoader.set_decoder(self, spec, decoder)

        def get_vocabulary(self, model: Any, tokenizer: Any) -> list[str]:
            return list(ct2_hf.BartLoader.get_vocabulary(self, model, tokenizer))

    hf_dir = out_dir.parent / "hf"
    marian.save_pretrained(str(hf_dir))
    tokenizer.save_pretrained(str(hf_dir))
    loaders = ct2_hf._MODEL_LOADERS  # registry keyed by config class; restored below
    original = loaders["MarianConfig"]
    loaders["MarianConfig"] = ProjectMarianLoader()
    try:
        ctranslate2.converters.TransformersConverter(str(hf_dir)).convert(str(out_dir))
    finally:
        loaders["MarianConfig"] = original


def ct2_runner(model_dir: Path, compute_type: str, tokenizer: Any, beam: int, threads: int
               ) -> Translate:
    import ctranslate2

    translator = ctranslate2.Translator(str(model_dir), device="cpu", compute_type=compute_type,
                                        intra_threads=threads, inter_threads=1)

    def run(texts: list[str], cap: int) -> tuple[list[str], int]:
        ids = tokenizer(texts)["input_ids"]
        results = translator.translate_batch(
            [tokenizer.convert_ids_to_tokens(row) for row in ids], beam_size=beam,
            max_decoding_length=cap, min_decoding_length=0, length_penalty=1.0,
            max_batch_size=len(texts))
        hyps = [tokenizer.convert_tokens_to_ids(r.hypotheses[0]) for r in results]
        # the end token is not returned: a hypothesis shorter than the cap ended with it
        tokens = sum(len(h) + (len(h) < cap) for h in hyps)
        return list(tokenizer.batch_decode(hyps, skip_special_tokens=True)), tokens

    return run


def scores(hyps: list[str], refs: list[str]) -> tuple[float, float]:
    """sacreBLEU BLEU and chrF (defaults, one reference)."""
    import sacrebleu

    return (round(sacrebleu.corpus_bleu(hyps, [refs]).score, 2),
            round(sacrebleu.corpus_chrf(hyps, [refs]).score, 2))


def plan(args: argparse.Namespace) -> dict[str, Any]:
    """Sources, references and the batches every system gets: ``[indices, length cap]``."""
    from transformers import AutoTokenizer

    from inference.bundle import load_bundle_manifest

    sources, refs = load_pairs(args.data, args.limit)
    if not sources:
        raise SystemExit(f"{args.data}: no examples with source version k and reference l")
    tokenizer = AutoTokenizer.from_pretrained(str(args.bundle))
    lengths = [len(ids) for ids in tokenizer(sources)["input_ids"]]
    model_max = load_bundle_manifest(args.bundle).max_positions
    batches = [[index, length_cap(max(lengths[i] for i in index), model_max)]
               for index in make_batches(lengths, args.batch_size)]
    return {"sources": sources, "refs": refs, "batches": batches,
            "source_tokens": sum(lengths)}


def run_system(args: argparse.Namespace) -> dict[str, Any]:
    """In a child process: build one system, warm it up, time one pass over the batches."""
    work = json.loads((args.work / "plan.json").read_text())
    sources, batches = work["sources"], work["batches"]
    system = args.only
    translate: Translate
    if system.startswith("engine"):
        bundle = args.bundle / "int8" if "int8" in system else args.bundle
        translate = engine_runner(bundle, args.beam, args.threads, system.endswith("-es"))
    else:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(args.bundle))
        if system == "generate":
            translate = generate_runner(load_marian(args.weights), tokenizer, args.beam,
                                        args.threads)
        else:
            translate = ct2_runner(args.work / "ct2", system.split("-", 1)[1], tokenizer,
                                   args.beam, args.threads)
    smallest = min(batches, key=lambda b: len(b[0]))
    translate([sources[i] for i in smallest[0][:4]], smallest[1])  # warm-up
    hyps = [""] * len(sources)
    tokens = 0
    started = time.perf_counter()
    for index, cap in batches:
        texts, count = translate([sources[i] for i in index], cap)
        tokens += count
        for i, text in zip(index, texts, strict=True):
            hyps[i] = text
    return {"seconds": time.perf_counter() - started, "tokens": tokens, "hyps": hyps}


def run_benchmark(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every system in its own process, round-robin ``repeats`` times; then scores."""
    systems = args.systems.split(",")
    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        raise SystemExit(f"unknown systems {sorted(unknown)}; choose from {SYSTEMS}")
    work = plan(args)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-natural-") as tmp:
        folder = Path(tmp)
        (folder / "plan.json").write_text(json.dumps(work))
        convert_models(args, folder, systems)
        runs = run_rounds(args, folder, systems)
    base = runs.outputs.get("engine-fp32")
    rows = [system_row(args, work, runs, system, base) for system in systems]
    for row in rows:
        print(json.dumps(row), flush=True)
    rows.append({**summary(rows), "loadavg_1_5_15_before": [round(x, 2) for x in load_before],
                 "loadavg_1_5_15_after": [round(x, 2) for x in os.getloadavg()]})
    print(json.dumps(rows[-1]), flush=True)
    return rows


def convert_models(args: argparse.Namespace, folder: Path, systems: list[str]) -> None:
    """What the systems need besides the bundle: a CTranslate2 model."""
    if any(s.startswith("ct2") for s in systems):
        from transformers import AutoTokenizer

        convert_ct2(load_marian(args.weights),
                    AutoTokenizer.from_pretrained(str(args.bundle)), folder / "ct2")


@dataclass
class Runs:
    """Each system's seconds per round, translations and target tokens."""

    times: dict[str, list[float]]
    outputs: dict[str, list[str]] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)


def run_rounds(args: argparse.Namespace, folder: Path, systems: list[str]) -> Runs:
    """``args.repeats`` rounds, each system once per round in a process of its own; a system
    whose translations change between rounds is an error."""
    runs = Runs({system: [] for system in systems})
    for _ in range(args.repeats):
        for system in systems:
            result = folder / "result.json"
            command = [sys.executable, "-m", "bench.natural", "--only", system,
                       "--work", str(folder), "--result", str(result),
                       "--bundle", str(args.bundle), "--weights", str(args.weights),
                       "--beam", str(args.beam), "--threads", str(args.threads)]
            subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL if args.quiet else None)
            done = json.loads(result.read_text())
            runs.times[system].append(done["seconds"])
            if system in runs.outputs and runs.outputs[system] != done["hyps"]:
                raise SystemExit(f"{system}: outputs changed between repeats")
            runs.outputs[system], runs.tokens[system] = done["hyps"], done["tokens"]
    return runs


def system_row(args: argparse.Namespace, work: dict[str, Any], runs: Runs, system: str,
               base: list[str] | None) -> dict[str, Any]:
    """One system's JSON row: median speed, scores, and agreement with ``base`` (the fp32
    engine's translations, when it ran)."""
    refs = work["refs"]
    times, outputs = runs.times[system], runs.outputs[system]
    seconds = statistics.median(times)
    bleu, chrf = scores(outputs, refs)
    base_bleu = scores(base, refs)[0] if base is not None else None
    return {
        "system": system, "setting": f"natural beam{args.beam} b{args.batch_size}",
        "sentences": len(refs), "source_tokens": work["source_tokens"], "beam": args.beam,
        "batch_size": args.batch_size, "threads": args.threads, "repeats": args.repeats,
        "seconds": round(seconds, 2), "seconds_all": [round(t, 2) for t in times],
        "seconds_min": round(min(times), 2),
        "sentences_per_s": round(len(refs) / seconds, 2),
        "target_tokens": runs.tokens[system],
        "target_tokens_per_s": round(runs.tokens[system] / seconds, 1),
        "bleu": bleu, "chrf": chrf,
        "bleu_diff_vs_engine_fp32": round(bleu - base_bleu, 2) if base_bleu is not None else None,
        "same_text_as_engine_fp32": (round(sum(a == b for a, b in zip(outputs, base, strict=True))
                                           / len(refs), 3) if base is not None else None),
        "weights": os.path.relpath(args.weights, ROOT), "versions": versions()}


def versions() -> dict[str, str]:
    """The versions of the libraries the systems run on."""
    import ctranslate2
    import onnxruntime
    import torch
    import transformers

    return {"onnxruntime": onnxruntime.__version__, "ctranslate2": ctranslate2.__version__,
            "torch": torch.__version__, "transformers": transformers.__version__}


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Speed ratios (sentences/s, and target tokens/s) and whether every BLEU is within the
    tolerance of the fp32 engine's."""
    by = {row["system"]: row for row in rows}
    pairs = [(name, a, b) for name, (a, b) in RATIOS.items() if a in by and b in by]
    ratios = {name: round(by[a]["sentences_per_s"] / by[b]["sentences_per_s"], 2)
              for name, a, b in pairs}
    token_ratios = {name: round(by[a]["target_tokens_per_s"] / by[b]["target_tokens_per_s"], 2)
                    for name, a, b in pairs}
    diffs = [abs(r["bleu_diff_vs_engine_fp32"]) for r in rows
             if r["bleu_diff_vs_engine_fp32"] is not None]
    return {"system": "summary", "ratios": ratios, "ratios_target_tokens_per_s": token_ratios,
            "max_abs_bleu_diff": max(diffs, default=None),
            "bleu_within_tolerance": bool(diffs) and max(diffs) <= BLEU_TOLERANCE,
            "tolerance": BLEU_TOLERANCE}


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(prog="python -m bench.natural", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--bundle", type=Path, default=Path("models/transformer-en-fr"))
    cli.add_argument("--weights", type=Path, default=Path("models/transformer-en-fr/weights"),
                     help="project model dir for generate and CTranslate2 (the bundle's source)")
    cli.add_argument("--data", type=Path, default=Path("data/en-fr/test.jsonl"))
    cli.add_argument("--limit", type=int, default=300, help="number of test sentences")
    cli.add_argument("--beam", type=int, default=4)
    cli.add_argument("--batch-size", type=int, default=32)
    cli.add_argument("--threads", type=int, default=2)
    cli.add_argument("--repeats", type=int, default=3)
    cli.add_argument("--systems", default=",".join(SYSTEMS))
    cli.add_argument("--out", type=Path)
    cli.add_argument("--quiet", action="store_true", help="hide the child processes' stderr")
    cli.add_argument("--only", help=argparse.SUPPRESS)  # internal: time one system here
    cli.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    cli.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = cli.parse_args(argv)
    args.bundle, args.weights = args.bundle.resolve(), args.weights.resolve()
    if args.only:
        args.result.write_text(json.dumps(run_system(args)))
        return 0
    rows = run_benchmark(args)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
