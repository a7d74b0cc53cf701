"""``python -m bench.mixed_options``: greedy and beam-4 rows decoded together, as one decoder
call per option set (what the continuous decode loop does) or as one merged call.

For N test sentences it builds the decoder state of N greedy rows and 4N beam rows from one
encoding, then times decoder steps (ms per step, median over repeats) either as two calls or
as one call over the concatenated rows. Prints one JSON line per N.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from bench.data import load_test_split
from inference import Translator
from inference.batching import pad_batch
from inference.kv_cache import KVCache
from inference.onnx_decoder import OnnxModel


def ms_per_step(model: OnnxModel, base: KVCache, groups: list[np.ndarray], start_id: int,
                steps: int, repeats: int) -> float:
    """Median milliseconds of one step over all ``groups`` (row indices into ``base``), one
    decoder call per group."""
    states = [model.reorder(base.copy(), rows) for rows in groups]
    times = []
    for _ in range(repeats):
        current = [state.copy() for state in states]  # steps write into in-place caches
        tokens = [np.full(len(rows), start_id, np.int64) for rows in groups]
        started = time.perf_counter()
        for _ in range(steps):
            for index, state in enumerate(current):
                found, current[index] = model.step_top_k(tokens[index], state, 8)
                tokens[index] = found.ids[:, 0]
        times.append((time.perf_counter() - started) / steps)
    return 1000 * statistics.median(times)


def measure(translator: Translator, sentences: list[str], steps: int, repeats: int) -> dict:
    """Two calls vs one merged call for these sentences, greedy + beam 4."""
    special = translator.manifest.special_tokens
    ids, mask = pad_batch([translator.tokenizer(text)["input_ids"] for text in sentences],
                          special["pad"])
    base = translator.model.encode(ids, mask)
    greedy, beam = np.arange(len(ids)), np.repeat(np.arange(len(ids)), 4)
    args = (special["decoder_start"], steps, repeats)
    two = round(ms_per_step(translator.model, base, [greedy, beam], *args), 3)
    one = round(ms_per_step(translator.model, base, [np.concatenate([greedy, beam])], *args), 3)
    return {"sentences": len(ids), "two_calls_ms_per_step": two,  # the ratio is of these
            "one_call_ms_per_step": one, "two_over_one": round(two / one, 2)}


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(prog="python -m bench.mixed_options", description=__doc__)
    cli.add_argument("--bundle", type=Path, default=Path("models/transformer-en-fr"))
    cli.add_argument("--data", type=Path, default=Path("data/en-fr/test.jsonl"))
    cli.add_argument("--sentences", default="2,8,32", help="values of N")
    cli.add_argument("--steps", type=int, default=12)
    cli.add_argument("--repeats", type=int, default=5)
    args = cli.parse_args(argv)
    examples = load_test_split(args.data)
    if examples is None:
        return 2
    texts = [example.src for example in examples]
    translator = Translator.load(args.bundle, threads=2)
    for count in (int(n) for n in args.sentences.split(",")):
        print(json.dumps(measure(translator, texts[:count], args.steps, args.repeats)),
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
