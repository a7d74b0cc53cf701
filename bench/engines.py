"""``python -m bench.engines``: this engine vs transformers ``generate`` vs CTranslate2,
side by side on the same weights (issue 4's harness).

Setting 1 ("forced"): a randomly initialised Marian of OPUS-MT shape, 64 source sentences of
10-40 tokens, every system forced to emit exactly 32 tokens; greedy/beam 4 x batch 64/batch 1.
Each system runs in its own subprocess (same thread count) so peak memory is its own.
Prints JSON lines and writes them to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from inference.bundle import BundleError, read_manifest

Item = TypeVar("Item")  # one input to translate: token ids or a text

SYSTEMS = ["engine-fp32", "engine-int8", "generate", "ct2-float32", "ct2-int8"]
# also accepted by --systems: engine-fp32-bound, engine-int8-bound (IO binding over CPU
# OrtValues), engine-fp32-nospin, engine-int8-nospin (the decoder's threads sleep between
# steps; every other engine system lets them spin, the default)
SETTINGS = [("greedy", 1, 64), ("greedy", 1, 1), ("beam4", 4, 64), ("beam4", 4, 1)]
FORCED = 32


def opus_shape(quick: bool) -> dict[str, int]:
    """Model sizes: OPUS-MT's, or tiny ones that check the harness runs."""
    if quick:
        return {"d_model": 32, "layers": 1, "heads": 2, "ffn": 64, "vocab": 500}
    return {"d_model": 512, "layers": 6, "heads": 8, "ffn": 2048, "vocab": 32000}


def build_model(directory: Path, shape: dict[str, int]) -> None:
    """Random Marian (pad = last id with a zero embedding, as in OPUS-MT) and a word tokenizer."""
    import torch
    from tokenizers import Tokenizer, models
    from transformers import MarianConfig, MarianMTModel, PreTrainedTokenizerFast

    vocab = shape["vocab"]
    config = MarianConfig(
        vocab_size=vocab, decoder_vocab_size=vocab, d_model=shape["d_model"],
        encoder_layers=shape["layers"], decoder_layers=shape["layers"],
        encoder_attention_heads=shape["heads"], decoder_attention_heads=shape["heads"],
        encoder_ffn_dim=shape["ffn"], decoder_ffn_dim=shape["ffn"], pad_token_id=vocab - 1,
        decoder_start_token_id=vocab - 1, eos_token_id=0, max_position_embeddings=512)
    torch.manual_seed(0)
    model = MarianMTModel(config).eval()
    with torch.no_grad():
        model.model.shared.weight[vocab - 1].zero_()
    model.save_pretrained(str(directory))
    words = {"</s>": 0, "<unk>": 1, **{f"w{i}": i for i in range(2, vocab - 1)}, "<pad>": vocab - 1}
    tokenizer = Tokenizer(models.WordLevel(words, unk_token="<unk>"))
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="</s>", unk_token="<unk>",
                            pad_token="<pad>").save_pretrained(str(directory))


def prepare(work: Path, quick: bool) -> None:
    """Model, our fp32/int8 bundles and the CTranslate2 conversion (cached in ``work``)."""
    model_dir, ct2 = work / "marian", work / "ct2"
    if not model_dir.exists():
        build_model(model_dir, opus_shape(quick))
    bundle = work / "bundle"
    if not bundle.exists() or stale(bundle):
        from training.export.__main__ import main as export

        export([str(model_dir), str(bundle), "--int8", "--src-lang", "xx", "--tgt-lang", "yy",
                "--force"])
    if not ct2.exists():
        import ctranslate2

        ctranslate2.converters.TransformersConverter(str(model_dir)).convert(str(ct2))


def stale(bundle: Path) -> bool:
    """Whether a cached bench bundle was exported differently from what the exporter writes
    now (bundle format, opset, form of the graphs)."""
    from training.export.graphs import DEFAULT_OPSET, EXPORT_REVISION

    try:
        manifest = read_manifest(bundle)
    except BundleError:
        return True
    return (manifest.opset != DEFAULT_OPSET
            or manifest.metadata.get("export_revision") != EXPORT_REVISION)


def sources(vocab: int, count: int = 64) -> list[list[int]]:
    """Deterministic source ids of 10-40 tokens, eos (0) last."""
    rng = np.random.default_rng(0)
    return [[*rng.integers(2, vocab - 1, int(n)).tolist(), 0]
            for n in rng.integers(10, 41, count)]


def runner(system: str, work: Path, threads: int) -> Callable[[list[list[int]], int], Any]:
    """A function (batch of source ids, beam) -> outputs, forced to FORCED tokens."""
    if system.startswith("engine"):
        from inference import Translator

        path = work / "bundle" / ("int8" if "int8" in system else "")
        return forced_ids(Translator.load(path, threads=threads, max_batch_tokens=1 << 20,
                                          io_binding=system.endswith("-bound"),
                                          decoder_spinning=not system.endswith("-nospin")))
    if system == "generate":
        import torch
        from transformers import MarianMTModel

        torch.set_num_threads(threads)
        model = MarianMTModel.from_pretrained(str(work / "marian")).eval()
        return lambda batch, beam: _generate(model, batch, beam)
    import ctranslate2

    compute = system.split("-", 1)[1]
    translator = ctranslate2.Translator(str(work / "ct2"), device="cpu", compute_type=compute,
                                        intra_threads=threads, inter_threads=1)
    return lambda batch, beam: translator.translate_batch(
        [[f"w{t}" if t > 1 else "</s>" for t in ids] for ids in batch], beam_size=beam,
        min_decoding_length=FORCED, max_decoding_length=FORCED, max_batch_size=len(batch))


def forced_ids(translator: Any) -> Callable[[list[list[int]], int], Any]:
    """This engine's ``Translator`` as a function (batch of source ids, beam) -> outputs,
    forced to FORCED tokens."""
    return lambda batch, beam: translator.translate_ids(batch, beam_size=beam, min_length=FORCED,
                                                        max_length=FORCED)


def timed_pass(translate: Callable[[list[Item], int], Any], inputs: list[Item],
               beam: int, batch_size: int) -> float:
    """Seconds to translate ``inputs`` in batches of ``batch_size``."""
    started = time.perf_counter()
    for start in range(0, len(inputs), batch_size):
        translate(inputs[start : start + batch_size], beam)
    return time.perf_counter() - started


def _generate(model: Any, batch: list[list[int]], beam: int) -> Any:
    import torch

    width = max(map(len, batch))
    pad = model.config.pad_token_id
    ids = torch.full((len(batch), width), pad)
    for row, seq in enumerate(batch):
        ids[row, : len(seq)] = torch.tensor(seq)
    with torch.no_grad():
        return model.generate(input_ids=ids, attention_mask=(ids != pad).long(), num_beams=beam,
                              min_new_tokens=FORCED, max_new_tokens=FORCED, do_sample=False)


def measure(system: str, work: Path, threads: int, repeats: int, quick: bool) -> list[dict]:
    """Tokens/s of each setting (median over repeats) in this process."""
    translate = runner(system, work, threads)
    data = sources(opus_shape(quick)["vocab"])
    rows = []
    for name, beam, batch_size in SETTINGS:
        inputs = data if batch_size > 1 else data[:8]
        translate(inputs[:2], beam)  # warm-up
        times = [timed_pass(translate, inputs, beam, batch_size) for _ in range(repeats)]
        rows.append({"system": system, "setting": f"{name} b{batch_size}", "threads": threads,
                     "tokens_per_s": round(len(inputs) * FORCED / statistics.median(times), 1),
                     "repeats": repeats})
    return [{**row, "peak_rss_mb": round(peak_rss_mb())} for row in rows]


def median_rows(measured: list[dict], rounds: int) -> list[dict]:
    """One row per system and setting: the median tokens/s over rounds (``tokens_per_s_all``
    keeps each round's), the highest peak memory."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in measured:
        groups.setdefault((row["system"], row["setting"]), []).append(row)
    return [{**rows[0], "tokens_per_s_all": [r["tokens_per_s"] for r in rows],
             "tokens_per_s": round(statistics.median(r["tokens_per_s"] for r in rows), 1),
             "rounds": rounds, "peak_rss_mb": max(r["peak_rss_mb"] for r in rows)}
            for rows in groups.values()]


def peak_rss_mb() -> float:
    """This process's peak resident memory. (Not ru_maxrss: Linux carries that over exec from
    the parent, which here held the exported model.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(argv: list[str] | None = None) -> int:
    """Prepare once, then run each system in a fresh subprocess; print and save JSON lines."""
    cli = argparse.ArgumentParser(prog="python -m bench.engines", description=__doc__)
    cli.add_argument("--work", type=Path, default=Path("runs/bench-engines"))
    cli.add_argument("--threads", type=int, default=2)
    cli.add_argument("--repeats", type=int, default=1, help="timed passes per round")
    cli.add_argument("--rounds", type=int, default=3,
                     help="rounds over all systems, taking turns (this shared machine drifts: "
                     "running one system after another credited the drift to the systems)")
    cli.add_argument("--quick", action="store_true", help="tiny model: checks the harness")
    cli.add_argument("--systems", default=",".join(SYSTEMS))
    cli.add_argument("--only", help=argparse.SUPPRESS)  # internal: run one system here
    cli.add_argument("--out", type=Path)
    args = cli.parse_args(argv)
    if args.only:
        for row in measure(args.only, args.work, args.threads, args.repeats, args.quick):
            print(json.dumps(row))
        return 0
    args.work.mkdir(parents=True, exist_ok=True)
    prepare(args.work, args.quick)
    measured: list[dict] = []
    for _ in range(args.rounds):
        for system in args.systems.split(","):
            command = [sys.executable, "-m", "bench.engines", "--only", system, "--work",
                       str(args.work), "--threads", str(args.threads), "--repeats",
                       str(args.repeats), *(["--quick"] if args.quick else [])]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            measured += [json.loads(line) for line in done.stdout.splitlines()
                         if line.startswith("{")]
    rows = median_rows(measured, args.rounds)
    for row in rows:
        print(json.dumps(row), flush=True)
    if args.out:
        args.out.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
