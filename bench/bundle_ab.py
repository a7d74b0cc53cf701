"""``python -m bench.bundle_ab BUNDLE BUNDLE [...] [--settings 4x64,1x64] [--rounds 3]
[--model m2m100-256k]``: several bundles of the same model (e.g. before and after an export
change) in one process, taking turns on setting 1's inputs (``bench.engines``: 64 source
sentences of 10-40 tokens, every output forced to 32 tokens, the ``--model``'s target prefix
first). Prints one JSON line per bundle and setting: the median tokens/s over rounds and the
ratio to the first bundle.

One process and interleaved rounds (each bundle first in turn) put the bundles under the same
machine drift, so small differences (5-15 %) are measurable here where separate runs are not.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from bench.engines import FORCED, forced_ids, parse_settings, print_rows, rotated, timed_pass
from bench.random_models import MODELS, OPUS, RandomModel
from inference import Translator


def compare(bundles: list[Path], settings: list[tuple[int, int]], rounds: int, threads: int,
            count: int, model: RandomModel = OPUS) -> list[dict]:
    """Median tokens/s of each bundle and setting over ``rounds`` interleaved rounds, on the
    sources and target prefix of the bench ``model`` the bundles were exported from."""
    # The first translator a process loads runs 5-9 % slower at batch 1 than later loads of the
    # same bundle: a throwaway first load, kept alive so that its memory is not reused, puts
    # every measured bundle on the same footing.
    throwaway = Translator.load(bundles[0], threads=threads, max_batch_tokens=1 << 20)
    loaded = [Translator.load(path, threads=threads, max_batch_tokens=1 << 20)
              for path in bundles]
    vocab = loaded[0].manifest.vocab_size
    data = model.sources(vocab, count)
    runners = {path: forced_ids(translator, model.target_prefix(vocab))
               for path, translator in zip(bundles, loaded, strict=True)}
    rows = []
    for beam, batch in settings:
        inputs = data if batch > 1 else data[:8]
        for translate in runners.values():  # warm-up
            translate(inputs[:2], beam)
        speeds: dict[Path, list[float]] = {path: [] for path in bundles}
        for turn in range(rounds):
            for path, translate in rotated(list(runners.items()), turn):
                speeds[path].append(len(inputs) * FORCED / timed_pass(translate, inputs, beam,
                                                                      batch))
        first = statistics.median(speeds[bundles[0]])
        for path in bundles:
            median = statistics.median(speeds[path])
            rows.append({"bundle": str(path), "setting": f"beam{beam} b{batch}",
                         "tokens_per_s": round(median, 1), "ratio": round(median / first, 3),
                         "tokens_per_s_all": [round(v, 1) for v in speeds[path]],
                         "threads": threads})
    del throwaway  # (alive until here)
    return rows


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    cli = argparse.ArgumentParser(prog="python -m bench.bundle_ab", description=__doc__)
    cli.add_argument("bundles", type=Path, nargs="+", help="the first one is the baseline")
    cli.add_argument("--settings", default="4x64,1x64", help="BEAMxBATCH, comma-separated")
    cli.add_argument("--rounds", type=int, default=3)
    cli.add_argument("--threads", type=int, default=2)
    cli.add_argument("--sentences", type=int, default=64)
    cli.add_argument("--model", choices=sorted(MODELS), default=OPUS.name,
                     help="the bench.engines model the bundles were exported from")
    cli.add_argument("--out", type=Path)
    args = cli.parse_args(argv)
    rows = compare(args.bundles, parse_settings(args.settings), args.rounds, args.threads,
                   args.sentences, MODELS[args.model])
    print_rows(rows, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
