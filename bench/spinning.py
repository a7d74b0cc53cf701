"""``python -m bench.spinning``: the decoder's intra-op threads spinning on vs off, same process.

Translates the same test sentences one at a time (median ms) and as one batch (seconds) with
each shipped bundle, greedy and beam 4, alternating translators loaded with
``decoder_spinning=True`` (the engine's default; the encoder's threads always sleep) and
``False`` (no session spins).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

from inference import Translator
from training.data import read_examples


def measure(bundle: Path, sentences: list[str], beam: int, *, spin: bool) -> dict[str, float]:
    translator = Translator.load(bundle, decoder_spinning=spin)
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
            for name in args.bundles.split(","):
                for beam in (1, 4):
                    row = {"round": round_, "spin": spin, "bundle": name, "beam": beam,
                           **measure(args.models / name, sentences, beam, spin=spin)}
                    print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
