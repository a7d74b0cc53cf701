"""``python -m bench.batch_mates [BUNDLE ...] [--count 128]``: does a sentence's translation
depend on the sentences decoded beside it?

Each bundle translates a fixed sample of test verses twice, all in one call and each alone, greedy
and beam 4, and counts the verses whose text differs. A float32 bundle gives the same text
either way; a dynamic-int8 bundle quantizes each matrix product's input with one scale per call
(ONNX Runtime's ``DynamicQuantizeLinear``), so its rows can change with their batch. Prints one
JSON line per bundle and beam.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import onnxruntime

from bench.data import sample_verses
from bench.engines import print_rows
from inference import Translator

BUNDLES = ["models/transformer-en-fr", "models/transformer-en-fr/int8",
           "models/lstm-en-fr", "models/lstm-en-fr/int8"]


def differing(bundle: Path, verses: list[str], beam: int, threads: int) -> int:
    """How many of ``verses`` translate differently alone than all in one call."""
    translator = Translator.load(bundle, threads=threads)
    together = [t.text for t in translator.translate(verses, beam_size=beam)]
    alone = [translator.translate([verse], beam_size=beam)[0].text for verse in verses]
    return sum(a != b for a, b in zip(together, alone, strict=True))


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    cli = argparse.ArgumentParser(prog="python -m bench.batch_mates", description=__doc__)
    cli.add_argument("bundles", nargs="*", type=Path, default=[Path(b) for b in BUNDLES])
    cli.add_argument("--count", type=int, default=128, help="test verses (a fixed sample)")
    cli.add_argument("--threads", type=int, default=1)
    cli.add_argument("--data", type=Path, default=Path("data/en-fr/test.jsonl"))
    cli.add_argument("--out", type=Path, help="also write the JSON lines here")
    args = cli.parse_args(argv)
    verses = sample_verses(args.data, args.count)
    if verses is None:
        return 2
    rows = [{"bundle": str(bundle), "beam": beam, "verses": len(verses),
             "differ": differing(bundle, verses, beam, args.threads),
             "onnxruntime": onnxruntime.__version__}
            for bundle in args.bundles for beam in (1, 4)]
    print_rows(rows, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
