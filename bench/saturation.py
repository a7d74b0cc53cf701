"""``python -m bench.saturation``: request-level batches vs a saturated continuous decode loop,
in one process and without HTTP, with a cProfile of the loop.

The same test verses are translated at beam 4 as request-level batches of ``--inflight``
sentences (``Translator.translate``) and through a ``DecodeLoop`` that keeps ``--inflight``
requests running (a new one joins whenever one finishes), the two taking turns for
``--rounds`` rounds (order flipped each round). Prints one JSON line (median seconds of each,
throughput ratio of the medians and of each round, mean running rows and cache length of the
loop); with ``--profile``, the top functions of a further, profiled continuous run.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import random
import statistics
import sys
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from bench.data import load_test_split
from bench.engines import timed_pass
from inference import Translator
from inference.continuous import Arrival, DecodeLoop
from inference.options import DecodeOptions


def run_loop(translator: Translator, texts: list[str], inflight: int, beam: int,
             encoder: Executor | None = None, outputs: dict[int, str] | None = None
             ) -> tuple[float, dict[str, float]]:
    """Seconds to translate ``texts`` keeping ``inflight`` requests in the loop, and the mean
    running rows and cache columns (what the decoder attends over) seen after each step. With
    ``encoder`` (a thread), requests are encoded during the step before they join
    (``DecodeLoop.step_and_admit``, as the service does), else before their first step.
    ``outputs``, when given, receives each text's translation by index."""
    options = DecodeOptions(beam_size=beam)
    loop = DecodeLoop(translator)
    rows, cache = [], []
    started = time.perf_counter()
    joining = [Arrival(key, [texts[key]], options) for key in range(inflight)]
    sent, done = inflight, 0
    while done < len(texts):
        if encoder is None:
            loop.admit(joining)
            finished = loop.step()
        else:
            finished = loop.step_and_admit(joining, encoder)
        done += len(finished)
        if outputs is not None:
            outputs.update((key, result[0].text) for key, result in finished
                           if not isinstance(result, Exception))
        for search in loop.searches.values():
            if search.state is not None and search.state.cache_mask is not None:
                rows.append(search.state.cache_mask.shape[0])
                cache.append(search.state.cache_mask.shape[1])
        joining = [Arrival(key, [texts[key]], options)
                   for key in range(sent, min(sent + len(finished), len(texts)))]
        sent += len(joining)
    seconds = time.perf_counter() - started
    return seconds, {"mean_rows": float(np.mean(rows or [0])),
                     "mean_cache_columns": float(np.mean(cache or [0]))}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    cli = argparse.ArgumentParser(prog="python -m bench.saturation", description=__doc__)
    cli.add_argument("--bundle", type=Path, default=Path("models/transformer-en-fr"))
    cli.add_argument("--data", type=Path, default=Path("data/en-fr/test.jsonl"))
    cli.add_argument("--inflight", type=int, default=48)
    cli.add_argument("--sentences", type=int, default=240)
    cli.add_argument("--beam", type=int, default=4)
    cli.add_argument("--threads", type=int, default=2)
    cli.add_argument("--rounds", type=int, default=2, help="turns of each mode")
    cli.add_argument("--no-overlap", action="store_true",
                     help="encode joining requests before their first step, not during the "
                     "step before it")
    cli.add_argument("--io-binding", action="store_true",
                     help="keep the decoder state in ONNX Runtime values between steps, as on "
                     "a GPU")
    cli.add_argument("--profile", action="store_true",
                     help="then profile a second continuous run (cProfile, top functions)")
    return cli.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    examples = load_test_split(args.data)
    if examples is None:
        return 2
    verses = [e.src for e in examples if e.src_version == "k"]
    random.Random(0).shuffle(verses)
    texts = verses[: args.sentences]
    translator = Translator.load(args.bundle, threads=args.threads,
                                 io_binding=args.io_binding or None)
    translator.translate(texts[:8], beam_size=args.beam)
    inflight = min(args.inflight, len(texts))
    encoder = None if args.no_overlap else ThreadPoolExecutor(1)
    seconds: dict[str, list[float]] = {"request": [], "continuous": []}
    shape: dict[str, float] = {}
    for index in range(args.rounds):
        for mode in ("request", "continuous") if index % 2 == 0 else ("continuous", "request"):
            if mode == "request":
                seconds[mode].append(timed_pass(
                    lambda batch, beam: translator.translate(batch, beam_size=beam), texts,
                    args.beam, inflight))
            else:
                spent, shape = run_loop(translator, texts, inflight, args.beam, encoder)
                seconds[mode].append(spent)
    print(json.dumps(report(seconds, shape)), flush=True)
    if args.profile:  # a second run: the profiler's overhead must not enter the timing
        profile = cProfile.Profile()
        profile.enable()
        run_loop(translator, texts, inflight, args.beam, encoder)
        profile.disable()
        pstats.Stats(profile, stream=sys.stdout).sort_stats("tottime").print_stats(15)
    return 0


def report(seconds: dict[str, list[float]], shape: dict[str, float]) -> dict[str, object]:
    """Medians of both modes, the throughput ratio overall and per round, the loop's shape."""
    request_s, continuous_s = (round(statistics.median(seconds[m]), 5)
                               for m in ("request", "continuous"))
    return {"request_s": request_s, "continuous_s": continuous_s,
            "continuous_over_request_throughput": round(request_s / continuous_s, 2),
            "round_ratios": [round(r / c, 2) for r, c in zip(seconds["request"],
                                                             seconds["continuous"], strict=True)],
            **{k: round(v, 1) for k, v in shape.items()}}


if __name__ == "__main__":
    sys.exit(main())
