"""``python -m bench.spinning``: ONNX Runtime intra-op thread spinning on vs off, same process.

Translates the same test sentences one at a time (median ms) and as one batch (seconds) with
each shipped bundle, greedy and beam 4, alternating sessions created with spinning allowed in
every session (ONNX Runtime's default) and in none (``allow_spinning=0``; the engine's own
default, the decoder alone spinning, is measured by ``bench.engines``' ``-nospin`` systems).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import onnxruntime as ort

import service.inference.session as session
from service.inference import Translator
from training.data import read_examples

ENGINE_OPTIONS = session.session_options


def every_session(spin: bool) -> Callable[..., ort.SessionOptions]:
    """``session_options`` with spinning forced to ``spin`` in every session, encoder and
    decoder alike (whatever the engine asks for)."""

    def options(threads: int | None, spinning: bool = False) -> ort.SessionOptions:
        return ENGINE_OPTIONS(threads, spin)

    return options


def measure(bundle: Path, sentences: list[str], beam: int) -> dict[str, float]:
    translator = Translator.load(bundle)
    translator.translate(sentences[:2], beam_size=beam)
    times = []
    for sentence in sentences:
        started = time.perf_counter()
        translator.translate([sentence], beam_size=beam)
        times.append(time.perf_counter() - started)
    started = time.perf_counter()
    translator.translate(sentences, beam_size=beam)
    return {"batch1_median_ms": round(1000 * statistics.median(times), 1),
            "batch_s": round(time.perf_counter() - started, 3)}


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(prog="python -m bench.spinning", description=__doc__)
    cli.add_argument("--models", type=Path, default=Path("models"))
    cli.add_argument("--bundles", default="transformer-en-fr,lstm-en-fr")
    cli.add_argument("--data", type=Path, default=Path("data/en-fr/test.jsonl"))
    cli.add_argument("--sentences", type=int, default=20)
    cli.add_argument("--rounds", type=int, default=2)
    args = cli.parse_args(argv)
    verses = [e.src for e in read_examples(args.data) if e.src_version == "k"]
    sentences = random.Random(0).sample(verses, min(args.sentences, len(verses)))
    for round_ in range(args.rounds):
        for spin in (True, False):
            session.session_options = every_session(spin)
            for name in args.bundles.split(","):
                for beam in (1, 4):
                    row = {"round": round_, "spin": spin, "bundle": name, "beam": beam,
                           **measure(args.models / name, sentences, beam)}
                    print(json.dumps(row), flush=True)
    session.session_options = ENGINE_OPTIONS
    return 0


if __name__ == "__main__":
    sys.exit(main())
